"""A persistent XLA compilation cache, so a restarted run does not compile its steps again.

Compiling the train step is the first minute of every run on an accelerator (and several
seconds on CPU); with the cache, a restart after preemption, a resumed run or a second benchmark
process with the same shapes loads the executable from disk instead.
"""

import os

import jax


def enable_compilation_cache(path: str) -> str:
  """Caches every compiled executable under `path`; returns the absolute path used.

  JAX by default only caches compilations that took over a second and entries above a size
  threshold; both limits are lifted here so the small CPU programs of tests and quickstarts are
  cached too (their entries are small). Call before the first compilation: JAX initializes the
  cache once per process, so a later change of directory is not picked up.
  """
  path = os.path.abspath(os.path.expanduser(path))
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  # -1: no size limit, and no backend-specific override of it.
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  return path
