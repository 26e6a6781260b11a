"""What a sweep's SLURM job runs: the training command as a child process that checkpoints on the
job's end-of-time (or preemption) signal, after which the job requeues itself and resumes.

submitit runs the submitted callable in its own Python process in the job, with its handler on
SIGUSR2 (the signal SLURM sends `--signal=USR2@120`, two minutes before the time limit, and on
preemption). For a callable without a `checkpoint` method that handler gives up on the job, and
submitit's `CommandFunction` then SIGKILLs its child: the training, told by the same signal to
stop and checkpoint, would be killed in the middle of its save. `TrainingJob.checkpoint` is
submitit's hook instead: it passes the signal on to the training (SLURM usually signals it
directly too: a second one changes nothing), waits for it to checkpoint and exit, and returns
itself, which submitit requeues (`scontrol requeue`; at most `slurm_max_num_timeout` times after
a timeout, 3 by default). The requeued job runs the same command, which resumes from the
checkpoint. Nothing of ours but the command, its folder and a few environment changes is
pickled.

The training runs in the job's own environment (sbatch exports the submitting shell's, and SLURM
adds the job's: its id, nodes, tasks and GPUs, which `--jax_distributed` and
CUDA_VISIBLE_DEVICES need), with only the changes the launcher asks for applied to it.

The training's output goes where the job's does: submitit's logs, `<folder>/<job>_0_log.err`.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

STOPPED_STATUS = 75  # unet_jax.preemption.EXIT_STOPPED (not imported: it imports JAX).
IN_USE_STATUS = 73  # unet_jax.workdir_lock.EXIT_IN_USE.
# How long `checkpoint` waits for the training to finish its step, save and exit: SLURM signals
# 120 s before the time limit, and kills what is left at it.
STOP_WAIT_S = 100


class TrainingJob:
  """`python -m unet_jax.main ...` as a submitit job that checkpoints and requeues on SIGUSR2."""

  def __init__(self, command: list[str], cwd: str, env_changes: dict[str, str | None]):
    """`env_changes`: variables to set in the job's environment, or to remove (None)."""
    self.command, self.cwd, self.env_changes = list(command), cwd, dict(env_changes)
    self._process, self._status = None, None

  def __getstate__(self):  # Pickled by submitit: the command, never a running process.
    return {'command': self.command, 'cwd': self.cwd, 'env_changes': self.env_changes}

  def environment(self) -> dict[str, str]:
    """The job's environment (SLURM's variables of this job included) with the changes."""
    env = dict(os.environ)
    for name, value in self.env_changes.items():
      if value is None:
        env.pop(name, None)
      else:
        env[name] = value
    return env

  def __setstate__(self, state):
    self.__init__(**state)

  def __call__(self) -> int:
    """Runs the training to its end; its exit status, 0 or 75 (stopped: launch again to resume)
    or 73 (another process trains the run). Any other status fails the job."""
    self._process = subprocess.Popen(self.command, cwd=self.cwd, env=self.environment())
    # A thread waits for it, so that the main thread, where submitit's signal handler (and so
    # `checkpoint`) runs, never holds the lock of Popen.wait that `checkpoint` would need.
    threading.Thread(target=self._wait, daemon=True).start()
    while self._status is None:
      time.sleep(0.5)
    if self._status == IN_USE_STATUS:
      print('slurm_job: another process trains this run; this job leaves it to it.',
            file=sys.stderr, flush=True)
    elif self._status not in (0, STOPPED_STATUS):
      raise RuntimeError(f'The training exited with status {self._status} (its output is above): '
                         + ' '.join(self.command))
    return self._status

  def _wait(self):
    self._status = self._process.wait()

  def checkpoint(self) -> 'object | None':
    """submitit's hook on SIGUSR2: stops the training cleanly (it checkpoints), then returns the
    job to requeue; None (no requeue) if the training had already ended."""
    from submitit.helpers import DelayedSubmission

    if self._process is not None and self._status is None:
      print(f'slurm_job: SIGUSR2: the training (pid {self._process.pid}) checkpoints and stops; '
            'the job is requeued and resumes it.', file=sys.stderr, flush=True)
      with contextlib.suppress(ProcessLookupError):
        os.kill(self._process.pid, signal.SIGUSR2)
      deadline = time.monotonic() + STOP_WAIT_S
      while self._status is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if self._status == 0:
      return None
    return DelayedSubmission(TrainingJob(self.command, self.cwd, self.env_changes))
