"""Where a config comes from: a file path, or a preset's name, from any working directory.

`resolve('quickstart')`, `resolve('configs/quickstart.py')` and `resolve('/abs/my.py:arg')` all
give the path of a `get_config()` file (with the `:arg` that ml_collections passes to
`get_config`). Preset names are the modules of the `configs` package, installed with unet_jax,
so `python -m unet_jax.main --config quickstart` works outside the repository too.
"""

import importlib.util
import os
import sys

PRESETS_PACKAGE = 'configs'


def presets() -> list[str]:
  """The names of the shipped presets."""
  spec = importlib.util.find_spec(PRESETS_PACKAGE)
  folder = os.path.dirname(spec.origin) if spec and spec.origin else None
  if not folder:
    return []
  return sorted(n[:-3] for n in os.listdir(folder) if n.endswith('.py') and n != '__init__.py')


def resolve(spec: str) -> str:
  """The file (with its ':arg', if any) that `spec` names; raises naming the presets if none."""
  path, sep, arg = spec.partition(':')
  if os.path.isfile(path):
    return os.path.abspath(path) + sep + arg
  name = os.path.splitext(os.path.basename(path))[0]
  # A bare name ('quickstart'), or configs/<name>.py asked for from another directory.
  if ('/' not in path or path == f'{PRESETS_PACKAGE}/{name}.py') and name in presets():
    found = importlib.util.find_spec(f'{PRESETS_PACKAGE}.{name}')
    if found and found.origin:
      return found.origin + sep + arg
  raise FileNotFoundError(
    f'--config {spec!r}: no such file, and not a preset. Presets: {", ".join(presets())} '
    '(by name, e.g. --config quickstart, or as configs/<name>.py).')


def resolve_argv(argv: list[str], flag: str = '--config') -> list[str]:
  """`argv` with the value of `flag` (`--config X` or `--config=X`) resolved by `resolve`, so
  that ml_collections' config flag, which wants a file, also takes a preset's name."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg == flag and i + 1 < len(out):
      out[i + 1] = resolve(out[i + 1])
    elif arg.startswith(flag + '='):
      out[i] = f'{flag}={resolve(arg[len(flag) + 1:])}'
  return out


def resolved_argv(argv: list[str]) -> list[str]:
  """`resolve_argv(argv)` for a command's start, which exits with the error's line if the config
  is neither a file nor a preset."""
  try:
    return resolve_argv(argv)
  except FileNotFoundError as error:
    sys.exit(f'Error: {error}')


def flag_help(what: str) -> str:
  """The --config flag's help: `what`, then the ways to name one and to override its fields."""
  return (f"{what}: a file with get_config() (FILE.py[:ARG]) or a preset's name "
          f'({", ".join(presets())}), from any directory; fields can be overridden with '
          '--config.<field>=<value>.')
