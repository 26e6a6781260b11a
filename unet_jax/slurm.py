"""SLURM, as a sweep meets it: asking `squeue` and `sacct` about its jobs, cancelling them, and
`TrainingJob`, what each job runs.

The launcher side (`unet_jax.sweep`) submits through submitit and asks SLURM once per command
which jobs it still holds (`Queue`); a job it no longer lists has ended, and `sacct` says how.
Every call that cannot reach SLURM (not a cluster host, no accounting) answers None, so that the
sweep can say so and carry on.

`TrainingJob` is the callable each job runs: the training command as a child process that
checkpoints on the job's end-of-time (or preemption) signal, after which the job requeues itself
and resumes. submitit runs the callable in its own Python process in the job, with its handler on
SIGUSR2 (the signal SLURM sends `--signal=USR2@120`, two minutes before the time limit, and on
preemption). For a callable without a `checkpoint` method that handler gives up on the job, and
submitit's `CommandFunction` then SIGKILLs its child: the training, told by the same signal to
stop and checkpoint, would be killed in the middle of its save. `TrainingJob.checkpoint` is
submitit's hook instead: it passes the signal on to the training (SLURM usually signals it
directly too: a second one changes nothing), waits for it to checkpoint and exit, and returns a
new `TrainingJob`, which submitit requeues (`scontrol requeue`; at most `slurm_max_num_timeout`
times after a timeout, 3 by default). The requeued job runs the same command, which resumes from
the checkpoint. Nothing of ours but the command, its folder and a few environment changes is
pickled. `experiments.paper`'s evaluation job is one too: its command, stopped, leaves the
evaluations it finished, and run again does the others. The training runs in the job's own
environment (sbatch exports the submitting shell's, and SLURM adds the job's: its id, nodes,
tasks and GPUs, which `--jax_distributed` and CUDA_VISIBLE_DEVICES need), with only the changes
the launcher asks for applied to it. Its output goes where the job's does: submitit's logs,
`job_log(root, job_id)`.
"""

import contextlib
import getpass
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from unet_jax import workdir_lock

# SLURM's end states that are the run's own doing (its program failed, or outgrew its memory): a
# new job would end the same way, so the run is failed, launched again only with --retry-failed.
# Any other end (cancelled, timed out, preempted, its node lost) leaves it to resume.
FAILED_STATES = ('FAILED', 'OUT_OF_MEMORY')


def jobs() -> dict[str, str] | None:
  """{job id: state} of this user's jobs SLURM still holds (pending, running, completing, ...),
  one line per array element ('4242_3'); None where `squeue` cannot be asked (not a SLURM host).

  A job SLURM no longer lists has ended, however it ended: its run's summary.json says how far it
  got, and `job_end` how the job ended.
  """
  done = _run(['squeue', '--noheader', '--array', '--user', getpass.getuser(), '--format=%i|%T'])
  if done is None:
    return None
  return dict(line.strip().split('|', 1) for line in done.splitlines() if '|' in line)


def job_end(job_id: str) -> tuple[str, str] | None:
  """(state, exit code) of an ended job from SLURM's accounting (`sacct`), e.g. ('OUT_OF_MEMORY',
  '0:125'); None where it cannot tell (no accounting on the cluster, not a SLURM host)."""
  done = _run(['sacct', '--noheader', '--parsable2', '--jobs', job_id,
               '--format=JobID,State,ExitCode'])
  for line in (done or '').splitlines():
    fields = line.strip().split('|')
    if len(fields) >= 3 and fields[0] == job_id:  # The job, not its steps ('4242.batch').
      return fields[1].split(' ')[0], fields[2]  # 'CANCELLED by 1000' -> 'CANCELLED'.
  return None


def cancel(job_ids: Sequence[str]) -> None:
  """`scancel`s the jobs: each of their processes gets SIGTERM (a training stops at a step,
  checkpointed), then SIGKILL after the cluster's KillWait. Raises OSError if scancel fails."""
  try:
    done = subprocess.run(['scancel', *job_ids], capture_output=True, text=True, timeout=120,
                          check=False)
  except (OSError, subprocess.TimeoutExpired) as error:
    raise OSError(f'Cannot run scancel ({error}); the jobs: {" ".join(job_ids)}') from None
  if done.returncode:
    raise OSError(f'scancel failed ({done.stderr.strip() or done.returncode}); the jobs: '
                  + ' '.join(job_ids))


def _run(command: list[str]) -> str | None:
  """The standard output of a SLURM client command; None if it cannot run or fails."""
  try:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return None if done.returncode else done.stdout


def job_log(root: str, job_id: str) -> str:
  """submitit's log of a job's standard error (the training's output and traceback are there),
  for jobs submitted with the folder `root/slurm/%j`."""
  return os.path.join(root, 'slurm', job_id, f'{job_id}_0_log.err')


class Queue:
  """`jobs()`, asked the first time a run needs it (a sweep never submitted asks nothing), and
  `job_end()`, asked once per job: one command's view of SLURM."""

  def __init__(self):
    self._jobs, self.asked, self._ends = None, False, {}

  def state(self, job_id: str) -> str | None:
    """The job's state while SLURM holds it, '' once it has ended, None if it cannot be told."""
    if not self.asked:
      self._jobs, self.asked = jobs(), True
    if self._jobs is None:
      return None
    return self._jobs.get(job_id, '')

  def end(self, job_id: str) -> tuple[str, str] | None:
    """`job_end(job_id)`, asked once per job."""
    if job_id not in self._ends:
      self._ends[job_id] = job_end(job_id)
    return self._ends[job_id]

  def failed(self, job_id: str) -> tuple[str, str] | None:
    """`end(job_id)` if the job ended in one of FAILED_STATES, else None."""
    end = self.end(job_id)
    return end if end and end[0] in FAILED_STATES else None


def params(items: Sequence[str]) -> dict:
  """--slurm-param KEY=VALUE items as sbatch options ('exclusive' alone: a flag)."""
  options = {}
  for item in items:
    key, sep, value = item.partition('=')
    key = key.strip().lstrip('-').replace('-', '_')
    if not key:
      raise ValueError(f'--slurm-param {item!r}: expected KEY=VALUE (an sbatch option without '
                       'its dashes, e.g. account=myproject, qos=high, constraint=h100) or a '
                       'flag alone (exclusive).')
    options[key] = value if sep else True
  return options


STOPPED_STATUS = 75  # unet_jax.preemption.EXIT_STOPPED (not imported: it imports JAX).
# How long `checkpoint` waits for the training to finish its step, save and exit: SLURM signals
# 120 s before the time limit, and kills what is left at it.
STOP_WAIT_S = 100


class TrainingJob:
  """`python -m unet_jax.main ...` (or another command that resumes where it stopped) as a
  submitit job that checkpoints and requeues on SIGUSR2."""

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
    if self._status == workdir_lock.EXIT_IN_USE:
      print('TrainingJob: another process trains this run; this job leaves it to it.',
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
      print(f'TrainingJob: SIGUSR2: the training (pid {self._process.pid}) checkpoints and stops; '
            'the job is requeued and resumes it.', file=sys.stderr, flush=True)
      with contextlib.suppress(ProcessLookupError):
        os.kill(self._process.pid, signal.SIGUSR2)
      deadline = time.monotonic() + STOP_WAIT_S
      while self._status is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if self._status == 0:
      return None
    return DelayedSubmission(TrainingJob(self.command, self.cwd, self.env_changes))
