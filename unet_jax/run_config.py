"""A run's config on disk: `<workdir>/config.json`, written when a run starts, read by every tool.

Fields move between versions of this code. A resumed run, `evaluate` or `predict` that finds a
config.json written before a move stops with an error naming the field's new place, instead of
silently running with a default where the run had its own value.
"""

import json
import os

import ml_collections

# Old dotted name -> new dotted name (None: removed, nothing replaces it).
RENAMED_FIELDS = {
  'eval_every_steps': 'eval.pooled_every_steps',
  'eval_batch_size': 'eval.batch_size',
  'data.shuffle_buffer': None,
  'data.num_train': 'data.num_examples',  # Synthetic train/val: a k-fold split of num_examples.
  'data.num_val': 'data.num_examples',
}


def _flat_keys(tree: dict, prefix: str = '') -> set[str]:
  keys = set()
  for key, value in tree.items():
    name = prefix + key
    keys.add(name)
    if isinstance(value, dict):
      keys |= _flat_keys(value, name + '.')
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


def path(workdir: str) -> str:
  return os.path.join(workdir, 'config.json')


def load(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run wrote into its workdir."""
  file = path(workdir)
  if not os.path.exists(file):
    raise FileNotFoundError(f'{file!r} does not exist: is {workdir!r} the workdir of a training '
                            'run (python -m unet_jax.main --workdir ...)?')
  with open(file, encoding='utf-8') as f:
    tree = json.load(f)
  check_renamed(tree, file)
  return ml_collections.ConfigDict(tree)


def write(config: ml_collections.ConfigDict, workdir: str, *, log_warning=None) -> None:
  """Writes the resolved config to config.json (atomically).

  A resumed run's earlier config.json is checked for moved fields first; if it differs from
  this config, `log_warning(message)` is called before it is replaced.
  """
  file = path(workdir)
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if os.path.exists(file):
    with open(file, encoding='utf-8') as f:
      old = f.read()
    check_renamed(json.loads(old), file)
    if old != text and log_warning:
      log_warning(f'The config differs from the one in {file}, which this run resumes; writing '
                  'the new one over it.')
  tmp = file + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, file)
