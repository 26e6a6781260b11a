"""Small helpers to declare the runs of a sweep, in the style of big_vision's `hyper` module.

A run is a dict of config overrides, `{'optim.lr': 3e-4, 'seed': 1}` (a leading 'config.' is
accepted and dropped). The helpers build lists of them:

  sweep('seed', [0, 1, 2])             -> [{'seed': 0}, {'seed': 1}, {'seed': 2}]
  fixed('loss', 'dice')                -> [{'loss': 'dice'}]
  product([a, b])                      -> every run of a merged with every run of b
  zip_([a, b])                         -> a[i] merged with b[i] (equal lengths)
  chain([a, b])                        -> the runs of a, then those of b

so "2 configs x 2 seeds" is `product([sweep('model.base_width', [8, 16]), sweep('seed', [0, 1])])`.
The special key 'config' names the run's base config file (a path or a preset name), for sweeps
that compare whole recipes.

`run_name(overrides)` makes each run's name from its overrides: short, readable, stable (the
same overrides always give the same name), and usable as a folder name.
"""

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

Run = dict[str, Any]


def normalize_key(key: str) -> str:
  """'config.optim.lr' -> 'optim.lr' (big_vision writes the prefix; our overrides do not)."""
  return key[len('config.'):] if key.startswith('config.') else key


def sweep(key: str, values: Iterable[Any]) -> list[Run]:
  return [{normalize_key(key): value} for value in values]


def fixed(key: str, value: Any) -> list[Run]:
  return [{normalize_key(key): value}]


def product(lists: Sequence[list[Run]]) -> list[Run]:
  runs = []
  for combination in itertools.product(*lists):
    merged = {}
    for part in combination:
      merged.update(part)
    runs.append(merged)
  return runs


def zip_(lists: Sequence[list[Run]]) -> list[Run]:
  lengths = {len(runs) for runs in lists}
  if len(lengths) > 1:
    raise ValueError(f'zip_ needs lists of equal length, got lengths {sorted(lengths)}.')
  return [dict(itertools.chain.from_iterable(part.items() for part in parts))
          for parts in zip(*lists, strict=True)]


def chain(lists: Sequence[list[Run]]) -> list[Run]:
  return [dict(run) for runs in lists for run in runs]


def format_value(value: Any) -> str:
  """A value as it appears in a run name and on the command line."""
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return ','.join(format_value(v) for v in value)
  return str(value)


def run_name(overrides: Run) -> str:
  """E.g. {'model.base_width': 16, 'seed': 1} -> 'base_width=16-seed=1'.

  Each key is shortened to its last component, or more where two keys would collide; values
  are kept as written; characters a folder name cannot hold become '_'. A base config
  ('config': 'configs/seed_cpu.py') shows as its file's stem.
  """
  if not overrides:
    return 'base'
  keys = list(overrides)
  depth = {k: 1 for k in keys}
  while True:
    short = {k: '.'.join(k.split('.')[-depth[k]:]) for k in keys}
    clashes = [k for k in keys if list(short.values()).count(short[k]) > 1]
    if not clashes:
      break
    for k in clashes:
      depth[k] += 1
  parts = []
  for key in keys:
    value = overrides[key]
    if key == 'config':
      parts.append(re.sub(r'\.py$', '', str(value).rsplit('/', 1)[-1]).replace(':', '='))
    else:
      parts.append(f'{short[key]}={format_value(value)}')
  return re.sub(r'[^A-Za-z0-9._=+,-]', '_', '-'.join(parts))
