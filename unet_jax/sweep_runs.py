"""What a sweep is: its runs, loaded from a sweep file (`get_sweep`), and its manifest,
`ROOT/sweep.json`, which records what each run was launched with and where it stands.

The launchers (`unet_jax.local_launcher`, `unet_jax.slurm_launcher`) and the commands of
`python -m unet_jax.sweep` share these; none of them imports JAX or TensorFlow when imported
(`sweep_checks` imports TensorFlow only to ask whether an ISIC dataset is prepared).
"""

import ast
import dataclasses
import datetime
import hashlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence

from unet_jax import cli, config_files, hyper, results, run_config, slurm

MANIFEST = 'sweep.json'
INIT_FROM = run_config.INIT_FROM
LOG = 'log.txt'
STOPPED_STATUS = slurm.STOPPED_STATUS  # unet_jax.preemption.EXIT_STOPPED, without JAX.
_SWEEPS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'experiments', 'sweeps')


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


def mark_resumes(root: str, runs: Sequence[Run]) -> list[Run]:
  """`runs`, those that start from a run of the sweep and have a checkpoint of their own marked
  `resumes`: a resume reads no source, so they wait for none (asked once, before the launch:
  only a run's own training writes its checkpoints)."""
  return [dataclasses.replace(run, resumes=True) if run.after and results.has_checkpoint(
      os.path.join(root, run.name)) else run for run in runs]


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


def check_unchanged(manifest: dict, runs: Sequence[Run]) -> None:
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


def last_line(error: str | None) -> str:
  """The last non-empty line of an error (a traceback's own message), or a note that there is
  none."""
  lines = [line.strip() for line in (error or '').splitlines() if line.strip()]
  return lines[-1] if lines else 'no error recorded'


def failure_line(root: str, name: str, entry: dict, error: str | None) -> str:
  """A failed run in a line: the last line of its error, and where its whole output is."""
  return f'{name}: {last_line(error)} (output: {run_log(root, name, entry)})'


def submitted_job(entry: dict) -> str | None:
  """The SLURM job id of a run last submitted to SLURM (None once the run is recorded finished,
  failed or stopped, or launched locally since)."""
  if entry.get('state') in ('submitted', 'running') and entry.get('job_id') and entry.get(
      'cluster', 'slurm') == 'slurm':
    return str(entry['job_id'])
  return None


def child_env(base: dict, threads: int | None, gpus: Sequence[str] | None) -> dict:
  """The environment of a run's training process, from `base`: without the simulated device
  count of XLA_FLAGS (a test suite's), TensorFlow's C++ logs quiet, its thread pools sized to
  `threads` cores and its GPUs `gpus` where given."""
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


def log_tail(path: str, lines: int = 15) -> str:
  """The last `lines` lines of a log, for a failed run's recorded error ('' if unreadable)."""
  try:
    with open(path, encoding='utf-8', errors='replace') as f:
      return ''.join(f.readlines()[-lines:]).strip()
  except OSError:
    return ''


def running_progress(workdir: str, summary: dict) -> tuple[int, float, tuple[float, int] | None]:
  """(step, wall time in seconds, time left) of a running run, read from its files (of a run
  waiting to resume, the time left alone means something). Its summary.json is written at its
  validations (hundreds of steps apart), its metrics.jsonl at every `log_every_steps`: the later
  of the two steps; the summary's wall time and the time since it was written;
  `results.time_left` at the latest training speed logged (a first step's compilation after a
  restart not counted), None before any speed is."""
  logged = results.last_training_log(workdir) or {}
  step = max(summary['step'], logged.get('step', 0))
  wall = summary.get('wall_time_s', 0)
  if summary.get('updated'):
    written = datetime.datetime.fromisoformat(summary['updated']).timestamp()
    wall += max(0.0, time.time() - written)
  per_second = logged.get('train_images_per_sec') or summary.get('train_images_per_sec')
  batch_size = (summary.get('config') or {}).get('batch_size')
  if not per_second or not batch_size:
    return step, wall, None
  # The validations due after `step`: one due at it is done or under way as the run is read.
  return step, wall, results.time_left(
      step, summary['num_train_steps'], batch_size / per_second,
      summary['config'].get('eval') or {}, summary.get('timing') or {}, first_unvalidated=step + 1)
