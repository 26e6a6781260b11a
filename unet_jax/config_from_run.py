"""A run's recorded config as a config file: `--config RUN_DIR` (or `RUN_DIR/config.json`).

`config_files.resolve` points ml_collections' config flag at this file with the run's
config.json as its argument, so every command that takes --config (training, `summary`, a sweep's
'config') takes a run too: `python -m unet_jax.main --config runs/ours-fold=0
--config.seed=1 --workdir runs/ours-fold=0-seed=1` trains that run's recipe again under another
seed, field for field, whichever file or overrides made it.

The run's values are laid over `configs/default.py`, which has every field, so each field keeps
its type (config.json holds tuples as lists) and overrides are checked as for any config. A field
this version has and the run's record lacks (added since) keeps its default. `config_files.resolve`
reads the file once before the flag does, so that a file that is no run's config is refused in
one line (ml_collections reports an error of `get_config` with its traceback).
"""

import json

import ml_collections

from unet_jax import run_config


def get_config(file: str) -> ml_collections.ConfigDict:
  from configs import default

  try:
    stored = run_config.stored_fields(file)
  except (OSError, json.JSONDecodeError) as error:
    raise ValueError(f'{file}: not a run\'s config.json ({error}).') from None
  config = default.get_config()
  known = run_config.leaves(config.to_dict())
  unknown = sorted(set(stored) - set(known))
  if not stored or unknown:
    what = f'{unknown[0]!r} is no config field' if unknown else 'it holds no config field'
    raise ValueError(f'{file}: {what}; give a run\'s folder or its config.json, '
                     'which `python -m unet_jax.main` writes.')
  try:
    config.update_from_flattened_dict({
        field: tuple(value) if isinstance(known[field], tuple) and isinstance(value, list)
        else value
        for field, value in stored.items()})
  except (TypeError, ValueError) as error:
    raise ValueError(f'{file}: {error}') from None
  return config
