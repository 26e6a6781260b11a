"""Where a config comes from: a file path, or a preset's name, from any working directory; and
which fields it has, for commands that take overrides of them.

`resolve('quickstart')`, `resolve('configs/quickstart.py')` and `resolve('/abs/my.py:arg')` all
give the path of a `get_config()` file (with the `:arg` that ml_collections passes to
`get_config`); so do a run's folder and its config.json (`unet_jax/config_from_run.py`). Preset
names are the modules of the `configs` package, installed with unet_jax, so
`python -m unet_jax.main --config quickstart` works outside the repository too.
"""

import difflib
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


def resolve(spec: str, what: str = '--config') -> str:
  """The file (with its ':arg', if any) that `spec` names; raises naming `what` (where `spec`
  was given) and the presets if none."""
  recorded = os.path.join(spec, 'config.json') if os.path.isdir(spec) else spec
  if recorded.endswith('.json') and os.path.isfile(recorded):  # A run: its recorded config.
    from unet_jax import config_from_run

    try:  # Read once here, so that a file that is no run's config is refused in one line.
      config_from_run.get_config(recorded)
    except ValueError as error:
      raise ValueError(f'{what}: {error}') from None
    return f'{config_from_run.__file__}:{os.path.abspath(recorded)}'
  if os.path.isdir(spec):
    runs = sorted(n for n in os.listdir(spec)
                  if os.path.isfile(os.path.join(spec, n, 'config.json')))
    raise FileNotFoundError(
      f'{what} {spec!r}: a folder without a config.json, so not a run\'s; '
      + (f'it holds {len(runs)} run{"s" * (len(runs) > 1)}: give one, e.g. '
         f'{os.path.join(spec, runs[0])!r}.' if runs
         else 'give a run\'s folder, a get_config() file or a preset '
              f'({", ".join(presets())}).'))
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
    f'{what} {spec!r}: no such file, and not a preset. Presets: {", ".join(presets())} '
    f'(by name, e.g. {what + " quickstart" if what.startswith("--") else "quickstart"}, or as '
    'configs/<name>.py).')


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
  except (FileNotFoundError, ValueError) as error:
    sys.exit(f'Error: {error}')


def flag_help(what: str) -> str:
  """The --config flag's help: `what`, then the ways to name one and to override its fields."""
  return (f"{what}: a file with get_config() (FILE.py[:ARG]), a preset's name "
          f'({", ".join(presets())}), from any directory, or a run\'s folder (the config it '
          'recorded); fields can be overridden with --config.<field>=<value>.')


def values(spec: str) -> dict:
  """{dotted field: value} of a `get_config()` file ('file.py[:arg]'), as the training reads it."""
  from unet_jax import run_config

  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('unet_jax_config_fields', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  tree = (module.get_config(arg) if arg else module.get_config()).to_dict()
  return run_config.leaves(tree)


def fields(spec: str) -> set[str]:
  """Every dotted field of a `get_config()` file ('file.py[:arg]'), as the training reads it."""
  return set(values(spec))


def is_field(key: str, known: set[str]) -> bool:
  """Whether `key` is a field of `known` or a group of them ('optim')."""
  return key in known or any(k.startswith(key + '.') for k in known)


def unknown_field_hint(key: str, known: set[str]) -> str:
  """What to say of an override naming no field: its new name if it moved, else the nearest."""
  from unet_jax import run_config

  moved = run_config.RENAMED_FIELDS.get(key, '')
  near = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
  return (f'it is now {moved!r}' if moved else 'it was removed' if moved is None else
          f'did you mean {" or ".join(map(repr, near))}?' if near else
          'see configs/default.py for every field')


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (app.run's `flags_parser`), where a `--config.<field>` naming no field of
  the config is one line naming it and the nearest fields, exit status 1 (ml_collections raises
  a KeyError from inside absl, which printed 40 lines of chained tracebacks)."""
  from absl import app

  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError):
    spec = _config_argument(argv)
    known = fields(spec) if spec else set()
    for arg in argv:
      key = arg[len('--config.'):].split('=', 1)[0] if arg.startswith('--config.') else ''
      if known and key and not is_field(key, known):
        sys.exit(f'Error: {arg}: {key!r} is no field of {os.path.basename(spec)} '
                 f'({unknown_field_hint(key, known)}).')
    raise  # Not an override's: a config file's own error, with its traceback.


def _config_argument(argv: list[str]) -> str | None:
  """The value of --config in `argv` (resolved by `resolved_argv`)."""
  for i, arg in enumerate(argv):
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
    if arg.startswith('--config='):
      return arg[len('--config='):]
  return None
