"""Deterministic GPU kernels, so that a run's numbers (and an exact resume) repeat on a GPU.

What holds where:
  * CPU: a run is bit-for-bit repeatable, and a run stopped and resumed ends with the parameters
    of an uninterrupted one (tests/train_test.py, tests/faults_test.py). XLA:CPU's kernels are
    deterministic; nothing needs setting.
  * GPU: some XLA:GPU kernels (scatter-adds, some reductions and convolution algorithms chosen by
    autotuning) are not, so two identical steps can differ in the last bits. With
    `config.deterministic = True`, `python -m unet_jax.main` sets XLA's
    `--xla_gpu_deterministic_ops=true` before JAX starts, which picks deterministic kernels (at
    some cost in speed). Measured on an H200 (2026-11-30, the GPU check script
    experiments/gpu_check.sh): two identical steps of the seed's model are then bit-identical,
    at 0.60x the speed (experiments/results/benchmark_gpu.md), so it is off by default.

The flag must be in XLA_FLAGS before JAX initializes its backend, so it cannot be switched on
from inside a running process; `check` says so when a run asks for it too late.
"""

import os

FLAG = '--xla_gpu_deterministic_ops=true'


def set_xla_flags() -> None:
  """Adds the flag to XLA_FLAGS (call before JAX initializes its backend)."""
  flags = os.environ.get('XLA_FLAGS', '')
  if FLAG not in flags.split():
    os.environ['XLA_FLAGS'] = f'{flags} {FLAG}'.strip()


def check(deterministic: bool, backend: str) -> None:
  """Raises if `config.deterministic` asks for deterministic GPU kernels that are not on."""
  if deterministic and backend == 'gpu' and FLAG not in os.environ.get('XLA_FLAGS', '').split():
    raise ValueError(
      'config.deterministic=True needs XLA_FLAGS to hold ' + FLAG + ' before JAX starts: run '
      'through python -m unet_jax.main (which sets it), or export it yourself.')
