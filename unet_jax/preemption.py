"""Stopping a run cleanly on SIGTERM, SIGINT, SIGUSR1 or SIGUSR2, at a step all processes agree on.

Schedulers announce the end of a job with a signal: SIGTERM on preemption (SLURM, Kubernetes,
cloud spot instances), SIGUSR1 or SIGUSR2 some minutes before a time limit (SLURM's `--signal`;
submitit asks SLURM for SIGUSR2, and SLURM signals every process of the job, ours included),
SIGINT from a terminal. The training loop asks `should_stop(step)` after each step; when it says
yes, the loop checkpoints that step, marks summary.json 'stopped' and raises `Stopped`, and
`unet_jax.main` exits with status 75 (EX_TEMPFAIL: try again) after printing how to resume.

One process: the handlers set a flag; the step that is running finishes first. Several processes
(`jax.distributed`): each must stop at the same step, or the others would wait forever in the
next collective. JAX's preemption service does that: its notifier catches SIGTERM, tells the
coordinator, and `multihost_utils.reached_preemption_sync_point(step)` turns true on every process
at the same step. SIGUSR1, SIGUSR2 and SIGINT are forwarded to it as a SIGTERM to this process.
A second SIGINT stops at once (KeyboardInterrupt), as a user pressing Ctrl-C twice expects.
"""

import logging
import os
import signal
import threading

import jax

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: a temporary failure, the user is invited to retry.


class Stopped(Exception):
  """Not an error: the run stopped cleanly at `step` on a signal, its checkpoint written."""

  def __init__(self, step: int, reason: str):
    super().__init__(f'stopped at step {step} ({reason}); run the same command to resume')
    self.step, self.reason = step, reason


class StopSignals:
  """A context manager: while inside, the three signals ask the run to stop at a step boundary."""

  def __init__(self):
    self.received: str | None = None
    self._old = {}
    self._distributed = jax.process_count() > 1

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # Python delivers signals to the main thread only; nothing to install.
    for sig in SIGNALS:
      if self._distributed and sig == signal.SIGTERM:
        continue  # JAX's preemption notifier handles it (see the module docstring).
      self._old[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)
    self._old.clear()

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    if self.received and signum == signal.SIGINT:
      raise KeyboardInterrupt
    if self.received is None:
      self.received = name
      logging.warning('%s received: the run stops after the current step, checkpointed (a '
                      'second SIGINT stops at once).', name)
    if self._distributed:
      os.kill(os.getpid(), signal.SIGTERM)

  @property
  def reason(self) -> str:
    return self.received or 'SIGTERM'

  def should_stop(self, step: int) -> bool:
    """Whether to stop after `step`; the same answer on every process."""
    if not self._distributed:
      return self.received is not None
    from jax.experimental import multihost_utils

    try:
      return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # JAX's preemption service is off: signals kill the processes.
      return False
