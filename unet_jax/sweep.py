r"""Launch a sweep of runs, locally or on SLURM, resume it, and see where it stands.

  python -m unet_jax.sweep launch SWEEP --root DIR [--parallel N] [--executor local|slurm]
      [--set KEY=VALUE ...] [--retry-failed] [--dry-run] [--slurm-partition P --slurm-time MIN
      --slurm-gpus-per-node G --slurm-cpus-per-task C --slurm-mem-gb M --slurm-nodes K
      --slurm-param KEY=VALUE --slurm-array] [--wait]
  python -m unet_jax.sweep status --root DIR
  python -m unet_jax.sweep cancel --root DIR     (its SLURM jobs: each run checkpoints and stops)

SWEEP is a sweep file with `get_sweep(arg)`, `experiments/sweeps/NAME.py[:ARG]` (the `file:arg`
form of ml_collections configs), or NAME alone for a shipped one. `get_sweep` returns
{'config': base config (a preset name or a file), 'overrides': {...} for every run (optional),
'runs': [{...}, ...]}, the runs built with `unet_jax.hyper` (product, zip_, chain), e.g.
"configs x seeds x folds" in one line. Each run's name comes from its own overrides
(`hyper.run_name`): short, readable, stable (or from a 'name' key in the run's dict). An
override that names no field of its run's base config is an error before anything starts,
naming the run, the field and the nearest real ones. --dry-run prints the runs' commands and
writes nothing (no folder, no sweep.json).

A run may start from another run of the same sweep (fine-tuning, progressive resizing: see
experiments/sweeps/progressive.py): its `init_from.workdir` is that run's name, e.g.
{'name': 'ft-fold=0', 'init_from.workdir': 'pre-fold=0'}, and means `DIR/pre-fold=0`. It starts
once that run has finished: locally the launcher waits for it (also while another process
trains it, one a killed launcher left running); on SLURM its job waits for the other's
(`--dependency=afterok`). If that run fails, it is not started (nor are the runs that
start from it) until the failed one is launched again with --retry-failed and finishes. Runs
that start from each other in a circle are an error at load.

`launch` gives every run a workdir `DIR/<name>` and keeps a manifest, `DIR/sweep.json` (each
run's name, overrides, a hash of them, state, error). It is idempotent: launched again, it skips
finished runs (their summary.json says so), resumes unfinished ones from their checkpoints, and
retries failed ones only with --retry-failed. A sweep file changed under an existing run name is
an error that names the run. A failing run is recorded with its error and never stops the
others. SIGTERM or SIGINT to the launcher stops its runs cleanly (each checkpoints; exit status
75) and launching again resumes them. One launcher per DIR (a second is refused), and one
training per run: a run another process still trains (one a killed launcher left running) is
reported, not started twice, and the launcher exits with status 75. `status` asks each run's lock
whether its training process is alive: a run recorded as running whose process is gone (killed,
its node lost) shows as 'interrupted' (launch again to resume it), one whose SLURM job is still
queued as 'pending (SLURM job N)'. Failed runs are listed under the table, each with the last
line of its error and where its whole output is (its log.txt, or its SLURM job's log).

Executors:
  local  N runs at once, each its own `python -m unet_jax.main` process, log in DIR/<name>/log.txt.
         On a GPU host each run gets its own GPUs (CUDA_VISIBLE_DEVICES: the host's GPUs split
         evenly over the N runs); otherwise the CPU cores are split: each run is pinned to its
         share (CPU affinity) and its thread pools sized to it. XLA_FLAGS' simulated device count
         (set by test suites) is not passed on. A progress line reports runs done, running,
         failed and an ETA.
  slurm  one SLURM job per run (or one job array: --slurm-array) through submitit, each job
         running the training command as a subprocess in the job's own environment
         (`unet_jax.slurm.TrainingJob`: only the command, its folder and a few environment
         changes are pickled). A run of several nodes is one process per node with all its
         GPUs, `--jax_distributed` finding the coordinator from SLURM's environment. Jobs get
         SIGUSR2 2 minutes before their time limit (and on preemption), on which the run
         checkpoints and stops and the job requeues itself, to resume from that checkpoint
         (after a time limit at most 3 times, submitit's max_num_timeout; then launch again).
         Launching again never submits a run twice: a run whose job SLURM still holds (queued
         or running; asked with `squeue`) is left to it. A job that ended before its
         run did is asked about in SLURM's accounting (`sacct`): FAILED or OUT_OF_MEMORY makes
         the run failed (a new job would fail the same way; --retry-failed), any other end
         (cancelled, timed out, preempted, node lost) leaves it to resume. The training's
         output is in submitit's log, DIR/slurm/<job>/<job>_0_log.err. --wait waits for the
         jobs (the tests use submitit's local executor).

`status` prints a table: run, state, step / total, best validation metric, wall time.

Exit status of `launch`: 0 every run finished; 1 an error, or failed runs, now or before
(listed with their errors and logs; --retry-failed launches them again), or runs not started
for a failed run they start from; 75 runs not ended yet (submitted to SLURM
without --wait, stopped by a signal, or left to the process or SLURM job that has them): launch
again later. So `launch ... && compare ...` compares only a sweep that has ended.
"""

import argparse
import ast
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from unet_jax import cli, config_files, hyper, results, run_config, slurm, workdir_lock

MANIFEST = 'sweep.json'
INIT_FROM = run_config.INIT_FROM
# The state `LocalLauncher.launch` gives a run it did not start for its source (`Run.after`).
NOT_STARTED = 'not started'
LOG = 'log.txt'
STOPPED_STATUS = slurm.STOPPED_STATUS  # unet_jax.preemption.EXIT_STOPPED, without JAX.
_SWEEPS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'experiments', 'sweeps')


class Interrupted(Exception):
  """A local launcher stopped by SIGTERM or SIGINT (its runs stopped, each checkpointed; those
  not started yet left pending): what called it launches nothing more and ends with
  STOPPED_STATUS. `states`: {name: state} of the runs that ended, as `LocalLauncher.launch`
  returns them. Without it, a command that launches several sweeps in turn
  (`experiments.paper`) went on to the next one after the signal."""

  def __init__(self, signal_name: str, states: dict[str, str]):
    super().__init__(f'stopped by {signal_name}')
    self.signal_name, self.states = signal_name, states


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  config: str  # The base config file (resolved path, with ':arg' if any).
  overrides: dict  # Every override of the run: the sweep's common ones, then its own.
  # The run of the same sweep it starts from (its `init_from.workdir` names it): it starts once
  # that one has finished, and its command gives that run's workdir under the sweep's root.
  after: str | None = None
  # It has a checkpoint of its own (`mark_resumes`): it resumes from it and reads no source.
  resumes: bool = False

  @property
  def waits_for(self) -> str | None:
    """The run of the sweep it must wait for: `after`, unless it resumes."""
    return None if self.resumes else self.after

  @property
  def hash(self) -> str:
    text = json.dumps({'config': os.path.basename(self.config), 'overrides': self.overrides},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]

  def command(self, workdir: str, extra: Sequence[str] = ()) -> list[str]:
    overrides = dict(self.overrides)
    if self.after:  # Its workdir `ROOT/<name>` beside this one's, wherever the root is.
      overrides[INIT_FROM] = os.path.join(os.path.dirname(workdir), self.after)
    return [sys.executable, '-m', 'unet_jax.main', '--config', self.config, '--workdir', workdir,
            *(f'--config.{k}={_command_value(v)}' for k, v in overrides.items()), *extra]


def _command_value(value) -> str:
  if isinstance(value, (tuple, list)):
    return '(' + ''.join(f'{_command_value(v)}, ' for v in value) + ')'
  return str(value)


def sweep_path(spec: str) -> tuple[str, str | None]:
  """(file, arg) of a sweep spec 'path.py[:arg]' or 'name[:arg]' (experiments/sweeps/name.py)."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    named = os.path.join(_SWEEPS_DIR, path if path.endswith('.py') else f'{path}.py')
    if not os.path.isfile(named):
      shipped = sorted(n[:-3] for n in os.listdir(_SWEEPS_DIR) if n.endswith('.py')
                       and not n.startswith('_')) if os.path.isdir(_SWEEPS_DIR) else []
      raise FileNotFoundError(f'Sweep {spec!r}: no such file; shipped sweeps: {shipped}.')
    path = named
  return path, arg or None


def parse_sets(items: Sequence[str]) -> dict:
  """--set KEY=VALUE items as overrides (VALUE read as a Python literal where it is one)."""
  overrides = {}
  for item in items:
    key, sep, text = item.partition('=')
    if not sep:
      raise ValueError(f'--set {item!r}: expected KEY=VALUE, e.g. data.dir=../shared/data.')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    if isinstance(value, str) and (meant := cli.unexpanded_home(value)):  # Each run gets it so.
      raise ValueError(f"--set {item!r}: the shell leaves a '~' after '=' as it is; give "
                       f'{key}={meant}.')
    key = hyper.normalize_key(key)
    if key in run_config.DATA_PATH_FIELDS and isinstance(value, str):
      # From here: launching again from elsewhere changes nothing.
      value = run_config.absolute_data_path(value)
    overrides[key] = value
  return overrides


def load_sweep(spec: str, extra: dict | None = None) -> list[Run]:
  """The runs a sweep file declares, in order, with unique names; `extra` overrides (--set) go
  to every run, after the sweep's common ones and before the run's own."""
  path, arg = sweep_path(spec)
  module_spec = importlib.util.spec_from_file_location(
    f'sweep_{os.path.basename(path)[:-3]}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'{path} has no get_sweep(arg) function.')
  declared = module.get_sweep(arg) if arg is not None else module.get_sweep()
  for field in ('config', 'runs'):
    if field not in declared:
      raise ValueError(f"{path}: get_sweep() must return a dict with {field!r} "
                       "({'config': ..., 'runs': [...], 'overrides': {...}}).")
  common = {hyper.normalize_key(k): v for k, v in declared.get('overrides', {}).items()}
  common.update(extra or {})
  runs, seen = [], {}
  for declared_run in declared['runs']:
    overrides = {hyper.normalize_key(k): v for k, v in declared_run.items()}
    # A run's own 'config' shows in its name; 'name' sets the name outright.
    name = overrides.pop('name', None) or hyper.run_name(overrides)
    config = config_files.resolve(str(overrides.pop('config', declared['config'])),
                                  f'{path}: config')
    if name in seen:
      raise ValueError(f'{path}: two runs are both named {name!r} ({seen[name]} and '
                       f'{overrides}); make their overrides differ.')
    seen[name] = overrides
    runs.append(Run(name, config, {**common, **overrides}))
  check_fields(runs, path)
  return link_sources(runs, path)


def link_sources(runs: Sequence[Run], path: str) -> list[Run]:
  """`runs` with `after` set where a run's `init_from.workdir` is the name of another run of
  the sweep (`{'init_from.workdir': 'pre-fold=0'}`): a run that starts from its own run, or runs
  that start from each other in a circle, are an error naming them (none could start)."""
  names = {run.name for run in runs}
  linked = [dataclasses.replace(run, after=source) if isinstance(
      source := run.overrides.get(INIT_FROM), str) and source in names else run for run in runs]
  after = {run.name: run.after for run in linked}
  for run in linked:
    chain, name = [run.name], run.after
    while name:
      if name in chain:
        circle = ' -> '.join([*chain[chain.index(name):], name])
        raise ValueError(f'{path}: runs that start from each other (config.{INIT_FROM}) can '
                         f'never start: {circle}. Make one of them start from scratch '
                         f"({INIT_FROM}='') or from a run outside this sweep.")
      chain.append(name)
      name = after[name]
  return linked


def check_fields(runs: Sequence[Run], path: str) -> None:
  """Raises ValueError naming the run, the field and the nearest real ones if an override names
  no field of its base config: each run would fail at its start (on SLURM, after its wait in
  the queue)."""
  fields = {}
  for run in runs:
    if run.config not in fields:
      fields[run.config] = config_files.fields(run.config)
    for key in run.overrides:
      if key in fields[run.config]:
        continue
      raise ValueError(f'{path}: run {run.name!r} overrides {key!r}, which is no field of '
                       f'{os.path.basename(run.config)} '
                       f'({config_files.unknown_field_hint(key, fields[run.config])}). Fix it '
                       'in the sweep file, or in the --set that gives it.')


# ---------------------------------------------------------------------------------------------
# The manifest.


def read_manifest(root: str) -> dict:
  path = os.path.join(root, MANIFEST)
  if not os.path.exists(path):
    return {'runs': {}}
  return results.read_json(path)


def write_manifest(root: str, manifest: dict) -> None:
  results.write_json(os.path.join(root, MANIFEST), manifest)


def _what_it_trains(config: str, overrides: dict) -> str:
  """A run's config file and the overrides its parameters depend on, as JSON: not those a resume
  may change (`run_config.MAY_CHANGE_ON_RESUME`: where the data lives, how often the run logs,
  validates and checkpoints), which a sweep launched again may change as `main` allows. Which
  run it starts from stays (a resume may find it elsewhere, but a sweep names it by its run's
  name, wherever the root is: another name is another recipe)."""
  fixed = {k: v for k, v in overrides.items() if k == INIT_FROM or not run_config.may_change(k)}
  return json.dumps({'config': os.path.basename(config), 'overrides': fixed}, sort_keys=True,
                    default=str)


def _check_unchanged(manifest: dict, runs: Sequence[Run]) -> None:
  for run in runs:
    recorded = manifest['runs'].get(run.name)
    if recorded and (_what_it_trains(recorded.get('config', run.config), recorded['overrides'])
                     != _what_it_trains(run.config, run.overrides)):
      raise ValueError(
        f'Run {run.name!r} in {MANIFEST} was launched with other overrides '
        f'({recorded["overrides"]}); the sweep file now gives {run.overrides}. Use another '
        '--root, or rename the run by changing its overrides.')
    if recorded:  # The same run, maybe with its data elsewhere: recorded as launched now.
      recorded.update(overrides=run.overrides, hash=run.hash)


def run_state(root: str, name: str) -> str:
  """'finished', 'failed', 'stopped', 'running' (from summary.json) or 'pending' (none yet)."""
  summary = results.read_run_summary(os.path.join(root, name))
  return summary['state'] if summary else 'pending'


def run_log(root: str, name: str, entry: dict) -> str:
  """Where a run's output is: its last SLURM job's log, or the local launcher's log.txt."""
  return slurm.job_log(root, str(entry['job_id'])) if entry.get('job_id') else os.path.join(
      root, name, LOG)


def failed_job_error(root: str, job_id: str, queue: slurm.Queue) -> str | None:
  """The error to record for a job that ended before its run (or evaluation) did, if SLURM says
  it failed (slurm.FAILED_STATES): its end and its log's tail; None if it ended otherwise or
  sacct cannot tell."""
  end = queue.failed(job_id)
  if not end:
    return None
  tail = _tail(slurm.job_log(root, job_id))
  return f'SLURM job {job_id} ended {end[0]} (exit code {end[1]})' + (f':\n{tail}' if tail else
                                                                      '')


def last_line(error: str | None) -> str:
  """The last non-empty line of an error (a traceback's own message), or a note that there is
  none."""
  lines = [line.strip() for line in (error or '').splitlines() if line.strip()]
  return lines[-1] if lines else 'no error recorded'


def failure_line(root: str, name: str, entry: dict, error: str | None) -> str:
  """A failed run in a line: the last line of its error, and where its whole output is."""
  return f'{name}: {last_line(error)} (output: {run_log(root, name, entry)})'


def _submitted_job(entry: dict) -> str | None:
  """The SLURM job id of a run last submitted to SLURM (None once the run is recorded finished,
  failed or stopped, or launched locally since)."""
  if entry.get('state') in ('submitted', 'running') and entry.get('job_id') and entry.get(
      'cluster', 'slurm') == 'slurm':
    return str(entry['job_id'])
  return None


# ---------------------------------------------------------------------------------------------
# Executors.


def _child_env(base: dict, threads: int | None, gpus: Sequence[str] | None) -> dict:
  env = dict(base)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  if flags:
    env['XLA_FLAGS'] = ' '.join(flags)
  else:
    env.pop('XLA_FLAGS', None)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if threads:
    for name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS',
                 'TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS'):
      env[name] = str(threads)
  if gpus is not None:
    env['CUDA_VISIBLE_DEVICES'] = ','.join(gpus)
  return env


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


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, encoding='utf-8', errors='replace') as f:
      return ''.join(f.readlines()[-lines:]).strip()
  except OSError:
    return ''


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

  def _start(self, run: Run, slot):
    cores, gpus = slot
    workdir = os.path.join(self.root, run.name)
    os.makedirs(workdir, exist_ok=True)
    log = open(os.path.join(workdir, LOG), 'a', encoding='utf-8')  # noqa: SIM115 (closed at exit)
    log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} {" ".join(run.command(workdir))}\n')
    log.flush()
    env = _child_env(os.environ, len(cores) if cores else None, gpus)
    affinity = (lambda: os.sched_setaffinity(0, cores)) if cores and hasattr(
        os, 'sched_setaffinity') else None
    process = subprocess.Popen(run.command(workdir), stdout=log, stderr=subprocess.STDOUT,
                               env=env, preexec_fn=affinity, start_new_session=True)
    return process, log

  def launch(self, runs: Sequence[Run], manifest: dict) -> dict:
    """Runs `runs` to their ends and returns {name: state}; raises `Interrupted` (with the
    states) once a signal has stopped them. A run that starts from another of `runs` or of
    `elsewhere` (`after`) starts once that one has finished; if it ends otherwise, it is not
    started (nor are the runs that start from it): its state is NOT_STARTED if that one failed,
    'pending' if it was stopped or killed (launched again, it resumes, and then this one); its
    manifest entry stays as it was. Other sources were checked before (`blocked_by_sources`)."""
    pending, running, states = list(runs), {}, {}
    launched = {run.name for run in runs}
    free = list(range(self.parallel))
    started_at, durations = {}, []
    old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    last_line, last_counts = 0.0, None
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
          running[run.name] = (run, slot, *self._start(run, self.slots[slot]))
          started_at[run.name] = time.perf_counter()
          manifest['runs'][run.name]['state'] = 'running'
          for key in ('job_id', 'cluster'):  # Launched here now, not as an earlier SLURM job.
            manifest['runs'][run.name].pop(key, None)
          write_manifest(self.root, manifest)
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
          durations.append(time.perf_counter() - started_at[name])
          state = run_state(self.root, name)
          if status == 0 and state == 'finished':
            entry = {'state': 'finished', 'error': None}
          elif status == STOPPED_STATUS or (self.stop_requested and state != 'failed'):
            entry = {'state': 'stopped', 'error': None}
          elif status == workdir_lock.EXIT_IN_USE:  # E.g. left running by a killed launcher.
            entry = {'state': 'running', 'error': None}
            self.stream.write(f'sweep: {name} is being trained by another process (its '
                              f'{LOG} says which); not started again.\n')
          else:
            entry = {'state': 'failed', 'error': f'exit status {status}: ' +
                     _tail(os.path.join(self.root, name, LOG))}
          states[name] = entry['state']
          manifest['runs'][name].update(entry)
          write_manifest(self.root, manifest)
        now = time.perf_counter()
        line = (len(states), len(running), len(pending))
        if line != last_counts or now - last_line > 60 or not (pending or running):
          last_line, last_counts = now, line
          held = sum(sources.get(r.name) == 'wait' for r in pending)
          self._progress(states, len(runs), len(running), len(pending), durations, held)
    finally:
      for s, handler in old.items():
        signal.signal(s, handler)
    if self.stopped_by:
      raise Interrupted(self.stopped_by, states)
    return states

  def _source(self, run: Run, states: dict, launched: set, waiting: set, running: dict) -> str:
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
      ended = run_state(self.root, source)  # Killed: its summary says what it last wrote.
      ended = 'interrupted' if ended in ('running', 'pending') else ended
    else:
      return 'ready'  # Finished before this launch (`blocked_by_sources`).
    return 'ready' if ended == 'finished' else ended

  def _on_signal(self, signum, frame):
    if not self.stop_requested:
      self.stopped_by = signal.Signals(signum).name
      self.stream.write(f'\nsweep: {self.stopped_by}: stopping the runs (each '
                        'checkpoints); launch again to resume.\n')
    self.stop_requested = True

  def _progress(self, states, total, running, pending, durations, held=0):
    """The progress line; `held`: how many of the `pending` wait for the run they start from."""
    done = sum(s == 'finished' for s in states.values())
    failed = sum(s == 'failed' for s in states.values())
    eta = ''
    if durations and (running or pending):
      mean = sum(durations) / len(durations)
      eta = f', ETA {_clock(mean * (pending + running) / self.parallel)}'
    held_text = (f' ({held} for the run it starts from)' if held == 1 else
                 f' ({held} for the runs they start from)' if held else '')
    self.stream.write(f'sweep: {done}/{total} finished, {running} running, {failed} failed, '
                      f'{pending} waiting{held_text}{eta}\n')
    self.stream.flush()


def _clock(seconds: float) -> str:
  seconds = int(max(0, seconds))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def slurm_executor(root: str, args, *, name: str, nodes: int):
  """submitit's executor for jobs of `nodes` nodes with `args`' SLURM options, its logs in
  `root/slurm/<job>/` (`slurm.job_log`)."""
  import submitit

  executor = submitit.AutoExecutor(folder=os.path.join(root, 'slurm', '%j'),
                                   cluster=args.submitit_cluster)
  parameters = {'name': name, 'timeout_min': args.slurm_time, 'nodes': nodes,
                'tasks_per_node': 1, 'gpus_per_node': args.slurm_gpus_per_node,
                'cpus_per_task': args.slurm_cpus_per_task, 'mem_gb': args.slurm_mem_gb}
  if executor.cluster == 'slurm':
    parameters.update(slurm_partition=args.slurm_partition, slurm_signal_delay_s=120,
                      slurm_additional_parameters=slurm.params(args.slurm_param) or None)
  executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
  return executor


def job_env_changes() -> dict[str, str | None]:
  """What a job changes in its own environment (SLURM's variables of the job: its nodes, tasks
  and GPUs stay): what `_child_env` changes here, nothing else (`slurm.TrainingJob`)."""
  here, wanted = dict(os.environ), _child_env(os.environ, None, None)
  return {name: wanted.get(name) for name in {*here, *wanted}
          if here.get(name) != wanted.get(name)}


def submit_slurm(root: str, runs: Sequence[Run], manifest: dict, args) -> list:
  """Submits one job per run (or a job array) through submitit; returns the jobs.

  A run that starts from an unfinished run of the sweep (`Run.after`: submitted now, or in a job
  SLURM still holds) is a job of its own that SLURM starts once that run's job has ended well
  (`--dependency=afterok:JOB`; `--kill-on-invalid-dep=yes`: if it fails, SLURM cancels this
  one, and launching again reports it). submitit's local executor knows no dependencies: there,
  the launcher waits for the source's job before submitting the run."""
  executor = slurm_executor(root, args, name=os.path.basename(os.path.abspath(root)),
                            nodes=args.slurm_nodes)
  extra = ['--jax_distributed'] if args.slurm_nodes > 1 else []
  changes = job_env_changes()

  def function(run):
    return slurm.TrainingJob(run.command(os.path.join(root, run.name), extra), cwd=os.getcwd(),
                             env_changes=changes)

  def source(run):  # The unfinished run it waits for.
    waits_for = run.waits_for
    return waits_for if waits_for and manifest['runs'][waits_for].get('state') != 'finished' \
        else None

  independent = [run for run in runs if not source(run)]
  if args.slurm_array and independent:  # An empty batch is a warning of submitit's.
    with executor.batch():
      jobs = [executor.submit(function(run)) for run in independent]
  else:
    jobs = [executor.submit(function(run)) for run in independent]
  submitted = dict(zip((run.name for run in independent), jobs, strict=True))
  waiting, dropped = [run for run in runs if source(run)], set()
  while waiting:  # Sources first: a chain pre -> mid -> ft is submitted in that order.
    run = next(r for r in waiting if r.after not in {w.name for w in waiting})
    waiting.remove(run)
    job = submitted.get(run.after)
    if run.after in dropped:
      dropped.add(run.name)
    elif executor.cluster == 'slurm':
      after = job.job_id if job else _submitted_job(manifest['runs'][run.after])
      executor.update_parameters(slurm_additional_parameters={
          **slurm.params(args.slurm_param), 'dependency': f'afterok:{after}',
          'kill_on_invalid_dep': 'yes'})
      submitted[run.name] = executor.submit(function(run))
    elif job and (wait_for([job], label=f'sweep: {run.name} waits for {run.after}')
                  or run_state(root, run.after) != 'finished'):
      print(f'sweep: {run.name} not submitted: it starts from {run.after}, which did not '
            'finish.', flush=True)
      dropped.add(run.name)
    else:
      submitted[run.name] = executor.submit(function(run))
  for name, job in submitted.items():
    manifest['runs'][name].update(state='submitted', job_id=str(job.job_id),
                                  cluster=executor.cluster, error=None)
  write_manifest(root, manifest)
  return list(submitted.values())


# ---------------------------------------------------------------------------------------------
# Commands.


def plan(root: str, runs: Sequence[Run], *, retry_failed: bool = False, label: str = '',
         write: bool = True) -> tuple[list[Run], list[str], dict[str, str], dict]:
  """(runs to launch, names skipped, {name: who has it} of runs left to another process,
  manifest) for `runs` under `root`, the manifest written.

  Finished runs are skipped, failed ones unless `retry_failed`; a run whose training process is
  alive (its workdir lock is held: a killed launcher's run, a job running it) is left to it, and
  so is a run submitted to SLURM whose job SLURM still holds (queued: it holds no lock yet), so
  that launching again never submits a run twice. A run whose overrides changed under its name
  is an error. `write=False` (a dry run) reads and writes nothing: no folder, no manifest.
  """
  if write:
    os.makedirs(root, exist_ok=True)
  manifest = read_manifest(root)
  _check_unchanged(manifest, runs)
  if label:
    manifest['sweep'] = label
  to_launch, skipped, busy, queue = [], [], {}, slurm.Queue()
  for run in runs:
    state = run_state(root, run.name)
    entry = manifest['runs'].setdefault(run.name, {'overrides': run.overrides, 'hash': run.hash,
                                                   'config': run.config, 'error': None})
    recorded_failed = entry.get('state') == 'failed'
    job = _submitted_job(entry)
    job_state = queue.state(job) if job and state != 'finished' else None
    if job_state == '' and state in ('pending', 'running'):  # The job ended before the run.
      error = failed_job_error(root, job, queue)
      if error:
        entry.update(state='failed', error=error)
        recorded_failed = True
    if state == 'failed' and not entry.get('error'):  # E.g. failed in a SLURM job.
      entry['error'] = results.read_run_summary(os.path.join(root, run.name)).get('error')
    if state == 'finished':
      entry['state'] = 'finished'
      skipped.append(run.name)
    elif workdir_lock.training_alive(os.path.join(root, run.name)):
      if not job:  # A SLURM job's run stays recorded as submitted, its job id kept.
        entry['state'] = 'running'
      busy[run.name] = 'its training process is alive' + (f' (SLURM job {job})' if job else '')
    elif job_state:
      busy[run.name] = f'SLURM job {job}, {job_state.lower()}'
    elif (state == 'failed' or recorded_failed) and not retry_failed:
      entry['state'] = 'failed'
      skipped.append(run.name)
    else:
      if job and job_state is None:
        print(f'sweep: cannot ask SLURM (squeue) whether job {job} of {run.name} is still '
              'queued; submitting it again (if both start, the second stops at once: the '
              'workdir is locked).', file=sys.stderr, flush=True)
      to_launch.append(run)
  if write:
    write_manifest(root, manifest)
  return to_launch, skipped, busy, manifest


def busy_line(busy: dict[str, str]) -> str:
  """The launchers' line for the runs left to another process or job."""
  return (f'{len(busy)} left to the process or SLURM job that has them: '
          + '; '.join(f'{name} ({why})' for name, why in busy.items()) + '.')


def _resolved(runs: Sequence[Run]) -> list[tuple[Run, dict]]:
  """Each run with {dotted field: value} of its config: its base config's, then its overrides."""
  base = {}
  for run in runs:
    if run.config not in base:
      base[run.config] = config_files.values(run.config)
  return [(run, {**base[run.config], **run.overrides}) for run in runs]


def missing_data(runs: Sequence[Run]) -> dict[str, list[str]]:
  """{config.data.dir: names of the runs that read it} for the runs of the folder source whose
  data folder is not on this machine (relative paths from the current folder, where the runs
  start): launched, each would import TensorFlow and fail at its start, one by one."""
  missing = {}
  for run, fields in _resolved(runs):
    data_dir = str(fields.get('data.dir') or '')
    if (fields.get('data.source') != 'folder' or not data_dir or '://' in data_dir
        or os.path.isdir(data_dir)):
      continue  # No data.dir: the run's own config check names the field.
    missing.setdefault(data_dir, []).append(run.name)
  return missing


def missing_sources(root: str, runs: Sequence[Run]) -> dict[str, list[str]]:
  """{what is wrong with a config.init_from.workdir: names of the runs that start from it}, for
  runs that have not started (no checkpoint of their own: a resume needs no source): no run there
  (no config.json), or, to start from its final checkpoint (the default), a run that has not
  finished. Launched, each would fail at its start. A run of the same sweep as source is the
  launcher's to wait for (`blocked_by_sources`)."""
  missing = {}
  for run, fields in _resolved(runs):
    source = str(fields.get(INIT_FROM) or '')
    if not source or run.after or results.has_checkpoint(os.path.join(root, run.name)):
      continue
    if not os.path.isfile(run_config.path(source)):
      problem = f'no run (no config.json) at config.{INIT_FROM}={source!r}'
    elif fields.get('init_from.checkpoint', 'final') == 'final' and (
        state := (results.read_run_summary(source) or {}).get('state')) != 'finished':
      problem = (f'the run at config.{INIT_FROM}={source!r} has not finished (state '
                 f'{state or "not started"}), and init_from.checkpoint is final')
    else:
      continue
    missing.setdefault(problem, []).append(run.name)
  return missing


def unprepared_isic(runs: Sequence[Run]) -> dict[str, list[str]]:
  """{the command that prepares it: names of the runs that read it} for two or more runs of the
  ISIC source whose TFDS dataset is not prepared here. A run prepares it at its start (an hour,
  the archives downloaded), and runs started with it wait for it, holding their devices idle
  meanwhile; one alone prepares it for itself."""
  wanted = {}
  for run, fields in _resolved(runs):
    if fields.get('data.source') == 'isic':
      key = (str(fields.get('data.tfds_data_dir') or ''), int(fields['data.image_size']))
      wanted.setdefault(key, []).append(run.name)
  wanted = {key: names for key, names in wanted.items() if len(names) > 1}
  if not wanted:
    return {}
  from unet_jax import isic_source  # TensorFlow (seconds): only for runs that read ISIC.

  return {command: names for (data_dir, size), names in wanted.items()
          if (command := isic_source.unprepared(data_dir, size))}


def _names(names: Sequence[str]) -> str:
  return f'{len(names)} run(s): {", ".join(names[:3])}{", ..." * (len(names) > 3)}'


def check_data(root: str, runs: Sequence[Run], args) -> None:
  """Before any run starts: raises ValueError for runs that would fail at their start for want
  of their data or of the run they start from, or that would wait, idle, for one of them to
  prepare the ISIC dataset. On SLURM it warns instead (the nodes may see folders the launcher
  does not), and launches."""
  local = args.executor == 'local'
  problems = []
  missing = missing_data(runs)
  if missing:
    problems.append('Not a directory: ' + '; '.join(
        f'config.data.dir={path!r} ({_names(names)})' for path, names in missing.items())
        + '. Each of these runs would fail at its start; put the data there, or fix the path '
        'where it is given (the sweep file, --set data.dir=PATH, or for experiments.paper '
        'its scale: the CPU scale reads ../shared/data/isic_sample).')
  sources = missing_sources(root, runs)
  if sources:
    problems.append('Cannot start from: ' + '; '.join(
        f'{problem} ({_names(names)})' for problem, names in sources.items())
        + '. Each of these runs would fail at its start; launch (and finish) the sweep of the '
        'runs they start from first, or fix the path.')
  at_once = not local or args.parallel > 1
  for command, names in (unprepared_isic(runs) if at_once else {}).items():
    problems.append(f'The ISIC 2018 dataset these runs read is not prepared ({_names(names)}): '
                    'the first would prepare it at its start (an hour, the archives '
                    'downloaded) while the others wait for it, holding their devices idle. '
                    f'Prepare it once first: {command}')
  if problems and local:
    raise ValueError(' '.join(problems))
  for problem in problems:
    print(f'sweep: warning, as seen from this machine: {problem}', file=sys.stderr, flush=True)


def run_or_submit(root: str, runs: Sequence[Run], manifest: dict, args, slots=None,
                  elsewhere: frozenset[str] = frozenset()) -> dict[str, str] | None:
  """Runs `runs` here (`args.executor` 'local', `args.parallel` at once, on `slots` if given:
  see `local_slots`; runs that start from one of `elsewhere`, which another process trains,
  wait for it) and returns {name: state} (raises `Interrupted` if a signal stopped them);
  or submits them to SLURM, prints the job ids, and returns their states once they have ended
  with `args.wait`, None without it (the next launch finds them: see `plan`)."""
  check_data(root, runs, args)
  if args.executor == 'local':
    return LocalLauncher(root, args.parallel, slots=slots, elsewhere=elsewhere).launch(
        runs, manifest)
  jobs = submit_slurm(root, runs, manifest, args)
  print(f'Submitted {len(jobs)} job(s): {", ".join(str(j.job_id) for j in jobs)}.', flush=True)
  if not args.wait:
    return None
  wait_for(jobs)
  states = {run.name: run_state(root, run.name) for run in runs}
  for name, state in states.items():
    manifest['runs'][name]['state'] = state
  write_manifest(root, manifest)
  return states


def wait_for(jobs: Sequence, every_s: float = 60.0, poll_s: float = 5.0,
             label: str = 'sweep') -> None:
  """Waits for submitit jobs to end, with a progress line at the start and every `every_s`."""
  started, last = time.perf_counter(), None
  while True:
    ended = sum(job.done() for job in jobs)
    now = time.perf_counter()
    if ended == len(jobs):
      return
    if last is None or now - last >= every_s:
      last = now
      print(f'{label}: waiting for the jobs: {ended}/{len(jobs)} ended '
            f'({_clock(now - started)} so far).', flush=True)
    time.sleep(poll_s)


def add_executor_arguments(parser: argparse.ArgumentParser, parallel_default: int | None = 1):
  """Where runs go: the options `sweep launch` and `experiments.paper` share."""
  parser.add_argument('--parallel', type=int, default=parallel_default,
                      help='local: runs at once, each on its share of the GPUs or CPU cores'
                      + ('' if parallel_default else " (default: the scale's)") + '.')
  parser.add_argument('--executor', choices=('local', 'slurm'), default='local',
                      help='local: subprocesses here; slurm: one job per run through submitit.')
  parser.add_argument('--retry-failed', action='store_true', help='Launch failed runs again.')
  parser.add_argument('--slurm-partition', default=None,
                      help="slurm: the partition (default: the cluster's default).")
  parser.add_argument('--slurm-time', type=int, default=240, help='Minutes per job.')
  parser.add_argument('--slurm-gpus-per-node', type=int, default=None,
                      help='slurm: GPUs per node of each run (default: none asked).')
  parser.add_argument('--slurm-cpus-per-task', type=int, default=None,
                      help="slurm: CPU cores of each run's process, one per node; its input "
                      "pipeline and validation use them (default: the cluster's, often 1).")
  parser.add_argument('--slurm-mem-gb', type=int, default=None,
                      help="slurm: host memory per node, in GB (default: the cluster's).")
  parser.add_argument('--slurm-param', action='append', default=[], metavar='KEY=VALUE',
                      help='slurm: any other sbatch option, without its dashes (repeatable): '
                      'account=myproject, qos=high, constraint=h100, exclusive.')
  parser.add_argument('--slurm-nodes', type=int, default=1,
                      help='Nodes per run (>1: one process per node, --jax_distributed).')
  parser.add_argument('--slurm-array', action='store_true', help='One job array for all runs.')
  parser.add_argument('--submitit-cluster', default='slurm', choices=('slurm', 'local', 'debug'),
                      help="submitit's executor: 'slurm', or 'local' to run the jobs here.")
  parser.add_argument('--wait', action='store_true',
                      help='slurm: wait for the jobs to end (otherwise launch again once they '
                      'have: jobs SLURM still holds are not submitted twice).')


def check_executor_arguments(args) -> list | None:
  """Raises ValueError naming the option if a count is below 1, a --slurm-param is malformed or
  --parallel asks for more runs than there are GPUs here, before anything is loaded, written or
  submitted. Returns the local runs' `local_slots` (None for SLURM or a dry run)."""
  for option in ('parallel', 'slurm_time', 'slurm_nodes', 'slurm_gpus_per_node',
                 'slurm_cpus_per_task', 'slurm_mem_gb'):
    value = getattr(args, option)
    if value is not None and value < 1:
      raise ValueError(f'--{option.replace("_", "-")}={value} must be a whole number >= 1.')
  slurm.params(args.slurm_param)
  if args.executor == 'local' and args.parallel and not getattr(args, 'dry_run', False):
    return local_slots(args.parallel)
  return None


def launch(args) -> int:
  slots = check_executor_arguments(args)
  cli.check_can_be_folder(args.root, '--root')
  runs = load_sweep(args.sweep, parse_sets(args.set))
  root = os.path.abspath(args.root)
  with launcher_lock(root, f'python -m unet_jax.sweep status --root {args.root}', args.dry_run):
    return _launch(args, runs, root, slots)


def launcher_lock(root: str, status_command: str, dry_run: bool = False):
  """Held while launching runs under `root`: a second launcher would start the same runs again
  and race on sweep.json; it is refused, pointed at `status_command`. A dry run, which reads
  only, takes none (and makes no folder)."""
  if dry_run:
    return contextlib.nullcontext()
  os.makedirs(root, exist_ok=True)
  return workdir_lock.exclusive(
      root, 'launcher', in_use=f'Another launcher is running the runs in {root!r}',
      fix=f'`{status_command}` shows their progress; launch again once it has ended (a '
          'launcher that ended, however it ended, holds no lock).')


def blocked_by_sources(runs: Sequence[Run], manifest: dict, busy: dict[str, str],
                       slurm_dependencies: bool = False,
                       elsewhere: frozenset[str] = frozenset()) -> dict[str, str]:
  """{name: why} of the runs among `runs` (those to launch) that cannot start in this launch for
  their source, a run of the sweep (`Run.waits_for`) that is neither finished nor among `runs`:
  failed (and not retried), or trained by another process or job; and of the runs that start
  from them. A source in `elsewhere` (trained by another process here) is no reason: the local
  launcher waits for it. With `slurm_dependencies`, neither is a source in a SLURM job that
  SLURM still holds: the run's job waits for that one (`submit_slurm`)."""
  launched, blocked = {run.name for run in runs}, {}
  while True:
    new = {}
    for run in runs:
      source = run.waits_for
      if (not source or run.name in blocked or source in launched - blocked.keys()
          or source in elsewhere):
        continue
      entry = manifest['runs'][source]
      if source in blocked:
        new[run.name] = f'it starts from {source}, which cannot start either'
      elif entry.get('state') == 'finished':
        continue
      elif source in busy:
        if slurm_dependencies and _submitted_job(entry):
          continue
        new[run.name] = (f'it starts from {source}, which another process or job trains; '
                         'launch again once it has finished')
      else:
        new[run.name] = (f'it starts from {source}, which '
                         + ('failed; fix that, then launch again with --retry-failed'
                            if entry.get('state') == 'failed' else 'has not finished'))
    if not new:
      return blocked
    blocked.update(new)


def mark_resumes(root: str, runs: Sequence[Run]) -> list[Run]:
  """`runs`, those that start from a run of the sweep and have a checkpoint of their own marked
  `resumes`: a resume reads no source, so they wait for none (asked once, before the launch:
  only a run's own training writes its checkpoints)."""
  return [dataclasses.replace(run, resumes=True) if run.after and results.has_checkpoint(
      os.path.join(root, run.name)) else run for run in runs]


def _launch(args, runs: Sequence[Run], root: str, slots=None) -> int:
  to_launch, skipped, busy, manifest = plan(root, runs, retry_failed=args.retry_failed,
                                            label=args.sweep, write=not args.dry_run)
  to_launch = mark_resumes(root, to_launch)
  # Sources another process trains here (a killed launcher's runs): the local launcher waits.
  elsewhere = frozenset(
      name for name in {run.waits_for for run in to_launch} & busy.keys()
      if args.executor == 'local' and workdir_lock.training_alive(os.path.join(root, name)))
  blocked = blocked_by_sources(to_launch, manifest, busy, slurm_dependencies=(
      args.executor == 'slurm' and args.submitit_cluster == 'slurm'), elsewhere=elsewhere)
  to_launch = [run for run in to_launch if run.name not in blocked]
  print(f'sweep {args.sweep}: {len(runs)} runs; {len(to_launch)} to launch, '
        f'{len(skipped)} skipped ({", ".join(skipped) or "none"}).', flush=True)
  if busy:
    print(busy_line(busy), flush=True)
  if blocked:
    print(f'{len(blocked)} not started: '
          + '; '.join(f'{name} ({why})' for name, why in blocked.items()) + '.', flush=True)
  if args.dry_run:
    for run in to_launch:
      print(' '.join(run.command(os.path.join(root, run.name))))
    return 0
  failed_before = any(manifest['runs'][name]['state'] == 'failed' for name in skipped)
  if not to_launch:
    if busy:
      return STOPPED_STATUS
    if failed_before:
      print(status_table(root), flush=True)  # Lists the failed runs, their errors and logs.
      return 1
    return 0
  try:
    states = run_or_submit(root, to_launch, manifest, args, slots, elsewhere)
  except Interrupted as stopped:  # Stopped runs say 'stopped': the status is 75 below.
    states = {**{run.name: 'pending' for run in to_launch}, **stopped.states}
  if states is None:  # Submitted: not ended yet (`status` follows them; launch again after).
    print(f'Follow them with `python -m unet_jax.sweep status --root {args.root}`; launch '
          'again once they have ended (jobs SLURM holds are not submitted twice).', flush=True)
    return STOPPED_STATUS
  print(status_table(root), flush=True)
  busy = {name: why for name, why in busy.items() if run_state(root, name) != 'finished'}
  if busy or any(s in ('stopped', 'running', 'pending') for s in states.values()):
    return STOPPED_STATUS  # Not all ended: launching again goes on.
  # Failed now or before (skipped), or not started for a source that failed.
  return 1 if failed_before or blocked or {'failed', NOT_STARTED} & {*states.values()} else 0


def status_table(root: str) -> str:
  """A table of the sweep's runs: state, step / total, best validation metric, wall time."""
  manifest = read_manifest(root)
  queue = slurm.Queue()
  lines = ['| run | state | step | best | wall time |', '|---|---|---|---|---|']
  failed = []
  for name, entry in manifest['runs'].items():
    summary = results.read_run_summary(os.path.join(root, name))
    state = _live_state(root, name, summary['state'] if summary else entry.get('state', 'pending'),
                        entry, queue)
    if summary:
      best = summary.get('best')
      best_text = (f'{summary["selection"]["metric"]} {best["value"]:.4f} (step {best["step"]})'
                   if best else '-')
      lines.append(f'| {name} | {state} | {summary["step"]}/{summary["num_train_steps"]} | '
                   f'{best_text} | {_clock(summary.get("wall_time_s", 0))} |')
    else:
      source = entry.get('overrides', {}).get(INIT_FROM)
      if state == 'pending' and isinstance(source, str) and source in manifest['runs']:
        state = (f'pending (starts from {source}, which failed: --retry-failed launches it)'
                 if manifest['runs'][source].get('state') == 'failed' else
                 f'pending (starts from {source} once it has finished)')
      lines.append(f'| {name} | {state} | - | - | - |')
    if state.startswith('failed'):
      job = _submitted_job(entry)
      error = (entry.get('error') or (summary or {}).get('error')
               or (job and failed_job_error(root, job, queue)))
      failed.append(failure_line(root, name, entry, error))
  if failed:
    lines += ['', f'Failed ({len(failed)}; fix the cause, then launch again with --retry-failed):',
              *(f'- {line}' for line in failed)]
  return '\n'.join(lines)


def _live_state(root: str, name: str, recorded: str, entry: dict, queue: slurm.Queue) -> str:
  """The recorded state, corrected by the run's lock and its SLURM job: a run whose training
  process holds its workdir is running whatever was recorded last; a run whose SLURM job is
  still queued says so ('pending (SLURM job 4242)'); one whose job ended before the run did is
  'failed (SLURM job 4242, out_of_memory)' if SLURM's accounting says the job failed, otherwise,
  like a run recorded running whose process is gone (killed, its node lost), 'interrupted'.
  Where neither can be asked, the record."""
  alive = workdir_lock.training_alive(os.path.join(root, name))
  if alive:
    return 'running'
  job = _submitted_job(entry) if recorded != 'finished' else None
  job_state = queue.state(job) if job else None
  if job_state:
    return f'{job_state.lower()} (SLURM job {job})'
  if job_state == '' and recorded in ('running', 'submitted', 'pending') and (
      end := queue.failed(job)):
    return f'failed (SLURM job {job}, {end[0].lower()})'
  if alive is False and (recorded == 'running' or (recorded == 'submitted' and job_state == '')):
    return 'interrupted'
  return recorded


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m unet_jax.sweep',
                                   description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 2)[2])
  commands = parser.add_subparsers(dest='command', required=True)
  start = commands.add_parser('launch', help='Launch (or resume) the runs of a sweep.')
  start.add_argument('sweep', help='experiments/sweeps/NAME.py[:ARG], or NAME[:ARG].')
  start.add_argument('--root', required=True, help='Folder for the runs and sweep.json.')
  start.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                     help='A config override for every run, e.g. --set data.dir=PATH '
                     '(repeatable; part of each run\'s recorded overrides).')
  start.add_argument('--dry-run', action='store_true',
                     help='Print the commands of the runs it would launch; writes nothing.')
  add_executor_arguments(start)
  show = commands.add_parser('status', help='Print the state of a sweep\'s runs.')
  show.add_argument('--root', required=True)
  stop = commands.add_parser('cancel', help="Cancel the SLURM jobs of a sweep's runs (each run "
                             'checkpoints on the SIGTERM; launch again to resume them).')
  stop.add_argument('--root', required=True)
  args = parser.parse_args(argv)
  if args.command == 'launch':
    return launch(args)
  root = os.path.abspath(args.root)
  if not os.path.isfile(os.path.join(root, MANIFEST)):
    raise FileNotFoundError(
        f'{args.root!r} holds no {MANIFEST}: no sweep was launched there. Give the --root a '
        '`python -m unet_jax.sweep launch` was given (a single run: its summary.json).')
  if args.command == 'cancel':
    return cancel(root)
  print(status_table(root))
  return 0


def cancel(root: str) -> int:
  """`scancel`s the jobs of the runs last submitted to SLURM that SLURM still holds; each
  training gets SIGTERM and stops at a step, checkpointed (its summary says 'stopped'), so
  launching again resumes it. A local launcher is stopped with SIGTERM to it instead."""
  submitted = {name: job for name, entry in read_manifest(root)['runs'].items()
               if (job := _submitted_job(entry))}
  jobs = slurm.jobs() if submitted else {}
  if jobs is None:
    raise OSError('Cannot ask SLURM (squeue) which jobs it holds: run this on a host of the '
                  'cluster the sweep was submitted to.')
  held = {name: job for name, job in submitted.items() if job in jobs}
  if not held:
    print(f'No SLURM job of {root} is queued or running: nothing to cancel.')
    return 0
  slurm.cancel(list(held.values()))
  print(f'Cancelled {len(held)} SLURM job(s): '
        + ', '.join(f'{name} ({job})' for name, job in held.items())
        + '. Each run checkpoints as it stops; launch again to resume them.')
  return 0


if __name__ == '__main__':
  sys.exit(cli.short_errors(main)())
