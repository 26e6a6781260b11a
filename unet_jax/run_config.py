"""A run's config on disk: `<workdir>/config.json`, written when a run starts, read by every tool.

Fields move between versions of this code. A resumed run, `evaluate` or `predict` that finds a
config.json written before a move stops with an error naming the field's new place, instead of
silently running with a default where the run had its own value.

A run resumed from a checkpoint under another config (a changed learning rate, a config file
edited or updated since) would be neither config's run, while its config.json and summary named
only the new one; so a change of what the run trains is refused, naming the fields. What does not
change the trained parameters may change on resume (`MAY_CHANGE_ON_RESUME`: where the data lives
and where the run it started from is, how often the run logs, checkpoints and validates, how its
probabilities become masks, how the step is placed on the devices).
"""

import json
import os

import ml_collections

from unet_jax import cli, results

# Old dotted name -> new dotted name (None: removed, nothing replaces it).
RENAMED_FIELDS = {
  'eval_every_steps': 'eval.pooled_every_steps',
  'eval_batch_size': 'eval.batch_size',
  'data.shuffle_buffer': None,
  'data.num_train': 'data.num_examples',  # Synthetic train/val: a k-fold split of num_examples.
  'data.num_val': 'data.num_examples',
}


# Dotted fields (a trailing '.': a whole group) a resumed run may change. `init_from.workdir`
# is read only by a run without a checkpoint (what it started from stays in its summary.json):
# a run and its source moved together resume where they are now.
MAY_CHANGE_ON_RESUME = (
  'log_every_steps', 'checkpoint_every_steps', 'max_checkpoints_to_keep', 'profile_steps',
  'data.dir', 'data.tfds_data_dir', 'init_from.workdir', 'data.cache', 'eval.every_steps',
  'eval.pooled_every_steps', 'eval.batch_size', 'eval.metrics', 'inference.', 'parallelism',
  'deterministic')


def may_change(field: str) -> bool:
  """Whether a resume may change `field` (dotted): `MAY_CHANGE_ON_RESUME` names it or its group."""
  return any(field == f or (f.endswith('.') and field.startswith(f))
             for f in MAY_CHANGE_ON_RESUME)


def leaves(tree: dict, prefix: str = '') -> dict:
  """A config tree (config.json's) as {dotted field: value}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(leaves(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


def _flat_keys(tree: dict) -> set[str]:
  """Every dotted field of a config tree, and every group above one."""
  keys = set()
  for field in leaves(tree):
    parts = field.split('.')
    keys.update('.'.join(parts[:i]) for i in range(1, len(parts) + 1))
  return keys


def check_renamed(tree: dict, path: str) -> None:
  """Raises ValueError if the config read from `path` uses a field that has moved."""
  stale = sorted(_flat_keys(tree) & set(RENAMED_FIELDS))
  if not stale:
    return
  moves = '; '.join(
    f'{old} is now {RENAMED_FIELDS[old]}' if RENAMED_FIELDS[old] else f'{old} was removed'
    for old in stale)
  raise ValueError(
    f'{path} was written by an older version of unet_jax: {moves}. Edit it to the new names '
    '(keeping the run\'s values) and run again, or start a new workdir.')


# Paths that config.json records absolute: where the data is, and the run this one starts from.
INIT_FROM = 'init_from.workdir'  # The run a run starts from (`unet_jax.init_from`).
DATA_PATH_FIELDS = ('data.dir', 'data.tfds_data_dir', INIT_FROM)


def with_absolute_data_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with its data paths (`DATA_PATH_FIELDS`) absolute, as config.json records them, so
  that the run's `evaluate`, `predict`, figures and a resume find its data from any current
  folder (a SLURM job's, a notebook's), not only the one the run started in. A copy where one
  was relative; a path with an unexpanded '~' is left as it is, to be refused with its fix."""
  made = {}
  for field in DATA_PATH_FIELDS:
    group, name = field.split('.')
    value = config.get(group, {}).get(name)
    if value and (absolute := absolute_data_path(value)) != value:
      made[group, name] = absolute
  if not made:
    return config
  config = config.copy_and_resolve_references()
  for (group, name), absolute in made.items():
    config[group][name] = absolute
  return config


def absolute_data_path(path: str) -> str:
  """A local relative path made absolute; others as they are: absolute ones, URLs that tf.io.gfile
  and TFDS read (gs://bucket/isic), and a path with an unexpanded '~' (refused later)."""
  if not path or '://' in path or os.path.isabs(path) or cli.unexpanded_home(path):
    return path
  return os.path.abspath(path)


def path(workdir: str) -> str:
  return os.path.join(workdir, 'config.json')


def load(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run wrote into its workdir."""
  file = path(workdir)
  if not os.path.exists(file):
    runs = sorted(n for n in os.listdir(workdir) if os.path.exists(path(os.path.join(
        workdir, n)))) if os.path.isdir(workdir) else []
    if runs:  # A sweep's root (or any folder of runs), given for one of its runs.
      raise FileNotFoundError(
          f'{workdir!r} is a folder of {len(runs)} run{"s" * (len(runs) > 1)}, not a run: give '
          'one of them, e.g. '
          f'{os.path.join(workdir, runs[0])!r}.')
    raise FileNotFoundError(f'{file!r} does not exist: is {workdir!r} the workdir of a training '
                            f'run (python -m unet_jax.main --workdir ...)?{cli.home_hint(workdir)}')
  with open(file, encoding='utf-8') as f:
    tree = json.load(f)
  check_renamed(tree, file)
  return ml_collections.ConfigDict(tree)


def check_resume(config: ml_collections.ConfigDict, workdir: str, step: int | None,
                 log_warning=None) -> None:
  """Before a run goes on from its checkpoint of `step` (None: it has none, and starts over):
  raises ValueError if `config` changes a field of its config.json that the run's parameters
  depend on; logs the fields that differ and may (and, with no checkpoint, every one)."""
  file = path(workdir)
  if not os.path.exists(file):
    return
  old, new = stored_fields(file), _fields(config)
  changed = [k for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
  refused = [k for k in changed if not may_change(k)] if step is not None else []
  if refused:
    shown = '; '.join(f'{k}: {old[k]!r} there, {new[k]!r} now' for k in refused[:4])
    more = f' (and {len(refused) - 4} more)' if len(refused) > 4 else ''
    raise ValueError(
        f'{file}: this run was trained to step {step} under another config ({shown}{more}). '
        'Going on under this one would make a run that is neither. Use another --workdir for '
        'the new config, or run again with the values of config.json; to go on under the new '
        f'config anyway, delete {file}.')
  added = sorted(new.keys() - old.keys())
  if log_warning and (changed or added):
    log_warning(
        f'{file} differs from this config in {", ".join(changed + added)}'
        + (f' (not in {file}: fields added since the run started, at their defaults)'
           if added else '')
        + ('; none changes what the run trains' if step is not None else
           '; the run has no checkpoint and starts over') + ': writing the new one over it.')


def unchanged(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether `config` is the workdir's config.json field for field (False without a readable
  one): a run that finished under it has nothing left to do."""
  try:
    return stored_fields(path(workdir)) == _fields(config)
  except (OSError, ValueError):  # Missing, unreadable or stale: the full path says what is wrong.
    return False


def stored_fields(file: str) -> dict:
  """{dotted field: value} of a config.json (ValueError naming a field that has moved, or if it
  holds no JSON object; json.JSONDecodeError if it is no JSON)."""
  with open(file, encoding='utf-8') as f:
    tree = json.load(f)
  if not isinstance(tree, dict):
    raise ValueError(f'{file} holds no JSON object of config fields.')
  check_renamed(tree, file)
  return leaves(tree)


def _fields(config: ml_collections.ConfigDict) -> dict:
  """{dotted field: value} of a config as config.json holds it (tuples as lists)."""
  return leaves(json.loads(config.to_json_best_effort()))


def write(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config to config.json (atomically); see `check_resume` first."""
  results.write_atomic(path(workdir), config.to_json_best_effort(indent=2, sort_keys=True))
