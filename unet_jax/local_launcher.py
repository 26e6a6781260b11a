"""The local executor of a sweep: N runs at once as subprocesses of this process, each its own
`python -m unet_jax.main` with its share of the GPUs or CPU cores and its log in
`ROOT/<name>/log.txt`; a run that starts from another waits for it; a signal stops them all,
each checkpointed."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from unet_jax import cli, results, sweep_runs, workdir_lock

# The state `LocalLauncher.launch` gives a run it did not start for its source (`Run.after`).
NOT_STARTED = 'not started'


class Interrupted(Exception):
  """A local launcher stopped by SIGTERM or SIGINT (its runs stopped, each checkpointed; those
  not started yet left pending): what called it launches nothing more and ends with
  `sweep_runs.STOPPED_STATUS`. `states`: {name: state} of the runs that ended, as
  `LocalLauncher.launch` returns them. Without it, a command that launches several sweeps in turn
  (`experiments.paper`) went on to the next one after the signal."""

  def __init__(self, signal_name: str, states: dict[str, str]):
    super().__init__(f'stopped by {signal_name}')
    self.signal_name, self.states = signal_name, states


def _gpus() -> list[str]:
  visible = os.environ.get('CUDA_VISIBLE_DEVICES')
  if visible is not None:
    return [g for g in visible.split(',') if g.strip()]
  try:
    out = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=30,
                         check=False).stdout
  except (FileNotFoundError, subprocess.TimeoutExpired):
    return []
  return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith('GPU ')]


def local_slots(parallel: int) -> list[tuple[list[int] | None, list[str] | None]]:
  """(CPU cores, GPUs) of each of `parallel` runs at once here: the GPUs split evenly between
  them, or without GPUs the cores (shared round-robin when there are fewer than runs). More runs
  than GPUs is an error: the runs past the GPUs got none and trained on the CPU."""
  gpus = _gpus()
  if gpus:
    if parallel > len(gpus):
      raise ValueError(
          f'--parallel {parallel} is more runs at once than the {len(gpus)} GPU(s) here '
          f'({",".join(gpus)}): each run needs GPUs of its own (JAX takes most of a GPU\'s '
          f'memory); use --parallel {len(gpus)} or fewer.')
    share = len(gpus) // parallel
    return [(None, gpus[i * share:(i + 1) * share]) for i in range(parallel)]
  cores = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else \
      list(range(os.cpu_count() or 1))
  share = max(1, len(cores) // parallel)
  return [(cores[(i * share) % len(cores):][:share] or cores, None) for i in range(parallel)]


class LocalLauncher:
  """N runs at once as subprocesses, each with its own devices; stops them all on a signal."""

  def __init__(self, root: str, parallel: int, stream=None, slots=None,
               elsewhere: frozenset[str] = frozenset()):
    """`slots`: `local_slots(parallel)`, where the caller has it already (it asks nvidia-smi).
    `elsewhere`: runs of the sweep that another process trains (a killed launcher's), which
    runs to launch may start from: waited for until their lock is released."""
    self.root, self.parallel, self.elsewhere = root, max(1, parallel), elsewhere
    self.stream = stream or sys.stderr
    self.stop_requested = False
    self.stopped_by = None  # The name of the signal that stopped it.
    self.slots = slots or local_slots(self.parallel)

  def _start(self, run: sweep_runs.Run, slot):
    cores, gpus = slot
    workdir = os.path.join(self.root, run.name)
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, sweep_runs.LOG)
    log = open(log_path, 'a', encoding='utf-8')  # noqa: SIM115 (closed when the run ends)
    log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} {" ".join(run.command(workdir))}\n')
    log.flush()
    env = sweep_runs.child_env(os.environ, len(cores) if cores else None, gpus)
    affinity = (lambda: os.sched_setaffinity(0, cores)) if cores and hasattr(
        os, 'sched_setaffinity') else None
    process = subprocess.Popen(run.command(workdir), stdout=log, stderr=subprocess.STDOUT,
                               env=env, preexec_fn=affinity, start_new_session=True)
    return process, log

  def launch(self, runs: Sequence[sweep_runs.Run], manifest: dict) -> dict:
    """Runs `runs` to their ends and returns {name: state}; raises `Interrupted` (with the
    states) once a signal has stopped them. A run that starts from another of `runs` or of
    `elsewhere` (`after`) starts once that one has finished; if it ends otherwise, it is not
    started (nor are the runs that start from it): its state is NOT_STARTED if that one failed,
    'pending' if it was stopped or killed (launched again, it resumes, and then this one); its
    manifest entry stays as it was. Other sources were checked before
    (`sweep.blocked_by_sources`)."""
    pending, running, states = list(runs), {}, {}
    launched = {run.name for run in runs}
    free = list(range(self.parallel))
    # When each running run started, and whether it resumed; how long each run trained from its
    # start to its end in this launch took (a run's whole length: the ETA's pending runs).
    started_at, resumed, durations = {}, set(), []
    old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    printed_at, last_counts = 0.0, None
    told = set()  # Runs said to wait for another process's.
    try:
      while pending or running:
        waiting = {r.name for r in pending}
        sources = {r.name: self._source(r, states, launched, waiting, running) for r in pending}
        for run in [r for r in pending if sources[r.name] not in ('ready', 'wait')]:
          pending.remove(run)  # Its source ended otherwise (or was not started itself).
          # For a failure; a source stopped or killed resumes when launched again, and then it.
          states[run.name] = NOT_STARTED if sources[run.name] in ('failed', NOT_STARTED) \
              else 'pending'
          self.stream.write(f'sweep: {run.name} not started: it starts from {run.after}, which '
                            + (f'ended {sources[run.name]}' if sources[run.name] != NOT_STARTED
                               else 'was not started') + '.\n')
        for run in [r for r in pending if r.waits_for in self.elsewhere and r.name not in told]:
          told.add(run.name)
          self.stream.write(f'sweep: {run.name} waits for {run.after}, which another process '
                            'trains (its log.txt says which).\n')
        while free and not self.stop_requested and (run := next(
            (r for r in pending if sources[r.name] == 'ready'), None)):
          pending.remove(run)
          slot = free.pop(0)
          if results.has_checkpoint(os.path.join(self.root, run.name)):
            resumed.add(run.name)
          running[run.name] = (run, slot, *self._start(run, self.slots[slot]))
          started_at[run.name] = time.perf_counter()
          manifest['runs'][run.name]['state'] = 'running'
          for key in ('job_id', 'cluster'):  # Launched here now, not as an earlier SLURM job.
            manifest['runs'][run.name].pop(key, None)
          sweep_runs.write_manifest(self.root, manifest)
        if self.stop_requested:
          pending = []
          for _, _, process, _ in running.values():
            if process.poll() is None:
              process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        for name in list(running):
          run, slot, process, log = running[name]
          status = process.poll()
          if status is None:
            continue
          log.close()
          del running[name]
          free.append(slot)
          state = sweep_runs.run_state(self.root, name)
          if status == 0 and state == 'finished' and name not in resumed:
            durations.append(time.perf_counter() - started_at[name])
          if status == 0 and state == 'finished':
            entry = {'state': 'finished', 'error': None}
          elif status == sweep_runs.STOPPED_STATUS or (self.stop_requested and state != 'failed'):
            entry = {'state': 'stopped', 'error': None}
          elif status == workdir_lock.EXIT_IN_USE:  # E.g. left running by a killed launcher.
            entry = {'state': 'running', 'error': None}
            self.stream.write(f'sweep: {name} is being trained by another process (its '
                              f'{sweep_runs.LOG} says which); not started again.\n')
          else:
            entry = {'state': 'failed', 'error': f'exit status {status}: ' +
                     sweep_runs.log_tail(os.path.join(self.root, name, sweep_runs.LOG))}
          states[name] = entry['state']
          manifest['runs'][name].update(entry)
          sweep_runs.write_manifest(self.root, manifest)
        now = time.perf_counter()
        line = (len(states), len(running), len(pending))
        if line != last_counts or now - printed_at > 60 or not (pending or running):
          printed_at, last_counts = now, line
          held = sum(sources.get(r.name) == 'wait' for r in pending)
          self._progress(states, len(runs), {n: started_at[n] for n in running},
                         [r.name for r in pending], durations, held)
    finally:
      for s, handler in old.items():
        signal.signal(s, handler)
    if self.stopped_by:
      raise Interrupted(self.stopped_by, states)
    return states

  def _source(self, run: sweep_runs.Run, states: dict, launched: set, waiting: set,
              running: dict) -> str:
    """Where the run it waits for stands: 'ready' (none, or it has finished), 'wait', or how it
    ended otherwise."""
    source = run.waits_for
    if not source:
      return 'ready'
    if source in launched:
      if source in running or source in waiting:
        return 'wait'
      ended = states.get(source)
    elif source in self.elsewhere:
      if workdir_lock.training_alive(os.path.join(self.root, source)):
        return 'wait'
      # Killed: its summary says what it last wrote.
      ended = sweep_runs.run_state(self.root, source)
      ended = 'interrupted' if ended in ('running', 'pending') else ended
    else:
      return 'ready'  # Finished before this launch (`sweep.blocked_by_sources`).
    return 'ready' if ended == 'finished' else ended

  def _on_signal(self, signum, frame):
    if not self.stop_requested:
      self.stopped_by = signal.Signals(signum).name
      self.stream.write(f'\nsweep: {self.stopped_by}: stopping the runs (each '
                        'checkpoints); launch again to resume.\n')
    self.stop_requested = True

  def _progress(self, states, total, running: dict, pending: list[str], durations, held=0):
    """The progress line. `running`: {name: when it started (perf_counter)}; `pending`: the
    names of the runs waiting; `durations`: the seconds of the runs that trained from their
    start to their end; `held`: how many of the `pending` wait for the run they start from."""
    done = sum(s == 'finished' for s in states.values())
    failed = sum(s == 'failed' for s in states.values())
    eta = self._eta(running, pending, durations) if running or pending else ''
    held_text = (f' ({held} for the run it starts from)' if held == 1 else
                 f' ({held} for the runs they start from)' if held else '')
    self.stream.write(f'sweep: {done}/{total} finished, {len(running)} running, {failed} failed, '
                      f'{len(pending)} waiting{held_text}{eta}\n')
    self.stream.flush()

  def _eta(self, running: dict, pending: list[str], durations: list[float]) -> str:
    """', ETA H:MM:SS' of the sweep, or '' before anything tells it. The time left of a run that
    has trained (running, or waiting to resume) is read from its files
    (`sweep_runs.running_progress`: its steps and its validations still due); one that has not
    takes as long as the runs that trained from start to end took on average, or before any has,
    as the running runs will have taken (their wall time and time left). The runs share the
    `parallel` slots: the ETA is their work over the slots, and at least the longest running
    run's time left. 'at least' where validations not timed yet are not counted."""
    now, untimed = time.perf_counter(), 0

    def read(name: str) -> tuple[float, float] | None:
      """(wall time, seconds left) of a run that has trained, from its files."""
      nonlocal untimed
      workdir = os.path.join(self.root, name)
      try:
        summary = results.read_run_summary(workdir)
      except (OSError, ValueError):  # Not ours to judge here: `status` says what it is.
        summary = None
      progress = sweep_runs.running_progress(workdir, summary) if summary else None
      if not (progress and progress[2]):
        return None
      _, wall, (seconds, passes) = progress
      untimed += passes
      return wall, seconds

    known = {name: read(name) for name in [*running, *pending]}
    totals = [known[name][0] + known[name][1] for name in running if known[name]]
    per_run = (sum(durations) / len(durations) if durations else
               sum(totals) / len(totals) if totals else None)
    if per_run is None and not all(known.values()):
      return ''
    lefts = [known[name][1] if known[name] else max(0.0, per_run - (now - started))
             for name, started in running.items()]
    queued = [known[name][1] if known[name] else per_run for name in pending]
    seconds = max([(sum(lefts) + sum(queued)) / self.parallel, *lefts])
    return f', ETA {"at least " if untimed else ""}{cli.clock(seconds)}'
