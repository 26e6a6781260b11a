"""What a sweep's runs need before any of them starts: their data folders, the runs they start
from, a prepared ISIC dataset. Without these checks each run would fail (or wait, its devices
idle) at its start, one by one, and on SLURM only after its wait in the queue."""

import os
import sys
from collections.abc import Sequence

from unet_jax import config_files, results, run_config, sweep_runs


def _resolved(runs: Sequence[sweep_runs.Run]) -> list[tuple[sweep_runs.Run, dict]]:
  """Each run with {dotted field: value} of its config: its base config's, then its overrides."""
  base = {}
  for run in runs:
    if run.config not in base:
      base[run.config] = config_files.values(run.config)
  return [(run, {**base[run.config], **run.overrides}) for run in runs]


def missing_data(runs: Sequence[sweep_runs.Run]) -> dict[str, list[str]]:
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


def missing_sources(root: str, runs: Sequence[sweep_runs.Run]) -> dict[str, list[str]]:
  """{what is wrong with a config.init_from.workdir: names of the runs that start from it}, for
  runs that have not started (no checkpoint of their own: a resume needs no source): no run there
  (no config.json), or, to start from its final checkpoint (the default), a run that has not
  finished. Launched, each would fail at its start. A run of the same sweep as source is the
  launcher's to wait for (`sweep.blocked_by_sources`)."""
  missing = {}
  for run, fields in _resolved(runs):
    source = str(fields.get(sweep_runs.INIT_FROM) or '')
    if not source or run.after or results.has_checkpoint(os.path.join(root, run.name)):
      continue
    if not os.path.isfile(run_config.path(source)):
      problem = f'no run (no config.json) at config.{sweep_runs.INIT_FROM}={source!r}'
    elif fields.get('init_from.checkpoint', 'final') == 'final' and (
        state := (results.read_run_summary(source) or {}).get('state')) != 'finished':
      problem = (f'the run at config.{sweep_runs.INIT_FROM}={source!r} has not finished (state '
                 f'{state or "not started"}), and init_from.checkpoint is final')
    else:
      continue
    missing.setdefault(problem, []).append(run.name)
  return missing


def unprepared_isic(runs: Sequence[sweep_runs.Run]) -> dict[str, list[str]]:
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


def check_data(root: str, runs: Sequence[sweep_runs.Run], args) -> None:
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
