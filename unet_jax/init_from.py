"""`config.init_from`: a run that starts from another run's parameters instead of a random init.

Fine-tuning a model on other data, or progressive resizing (the U-Net is fully convolutional: a
run at 128 x 128 starts one at 224 x 224), start from a trained run's checkpoint. The source is
read through its own config.json (`config_from_run`), so its checkpoint is restored into the
structure its run trained (its optimizer may differ from this run's); only its parameters and
BatchNorm statistics are taken, after checking that every shape fits this run's model. The
optimizer state, the schedule and the step start afresh.

Loaded only when the workdir has no checkpoint yet (a resume goes on from its own, and needs the
source no more), and before the workdir is made: a wrong source leaves nothing behind. What was
taken (the source, which checkpoint, its step) goes to summary.json under `init_from`, with how
many of this run's validation images the source trained on: a run of fold 0 started from a run
of fold 3 validates on photos its start has seen, and `compare` names it under its table.
"""

import os

import jax
import ml_collections
from absl import logging

from unet_jax import (
  checkpointing,
  cli,
  config_from_run,
  evaluation,
  inference,
  models,
  optim,
  run_config,
)
from unet_jax import train_step as ts

FIELD = 'config.init_from.workdir'


def load(config: ml_collections.ConfigDict, workdir: str) -> tuple[dict, dict] | None:
  """({'params', 'batch_stats'}, provenance) from `config.init_from` for a run in `workdir`;
  None without a source. Training calls it only for a run that has no checkpoint yet.

  Raises ValueError naming the field and the fix: no run at the source, no such checkpoint, a
  model that does not fit.
  """
  source = config.init_from.workdir
  if not source:
    return None
  cli.refuse_unexpanded_home(source, f'{FIELD}={source!r}')
  source = os.path.abspath(source)
  where = f'{FIELD}={source!r}'
  if os.path.abspath(workdir) == source:
    raise ValueError(f'{where} is this run\'s own workdir; give the workdir of the run to start '
                     'from (a resume needs no init_from: it goes on from its own checkpoint).')
  config_file = run_config.path(source)
  if not os.path.isfile(config_file):
    raise ValueError(f'{where}: no run there (no config.json); give the workdir of a run that '
                     '`python -m unet_jax.main` trained.')
  source_config = config_from_run.get_config(config_file)
  try:
    variables, step = inference.restore_variables(
        source_config, source, config.init_from.checkpoint, 'config.init_from.checkpoint')
  except (FileNotFoundError, ValueError) as error:
    raise ValueError(f'{where}: {error}') from None
  _check_fits(config, source_config, variables, step, where)
  seen = val_images_in_source_training(config, source_config)
  if seen:
    logging.warning(
        '%s trained on %d of this run\'s validation images (its data.fold=%d of %d, this '
        'run\'s %d): this run\'s validation scores are optimistic (compare says so). Start from '
        'the source\'s run of the same fold for a fair one.', where, seen, source_config.data.fold,
        source_config.data.num_folds, config.data.fold)
  return variables, {'workdir': source, 'checkpoint': config.init_from.checkpoint, 'step': step,
                     'val_images_in_source_training': seen}


def val_images_in_source_training(config: ml_collections.ConfigDict,
                                  source_config: ml_collections.ConfigDict) -> int | None:
  """How many of this run's validation images the source trained on (a fold's photos are the
  training photos of every other fold's run): by id, of the same data; None where the source's
  data is not here to tell."""
  a, b = config.data, source_config.data
  if (a.source == 'synthetic') != (b.source == 'synthetic'):
    return 0  # Synthetic ids name generated images, not photos.
  if a.source == 'synthetic' and (a.synthetic_seed, a.synthetic_size) != (
      b.synthetic_seed, b.synthetic_size):
    return 0  # The same ids, other images.
  validated = evaluation.split_ids_here(config, 'val')
  trained = evaluation.split_ids_here(source_config, 'train')
  if validated is None or trained is None:
    return None
  return len(set(validated) & set(trained))


def _check_fits(config, source_config, variables: dict, step: int, where: str) -> None:
  """Raises ValueError where a parameter or statistic of the source is missing from this run's
  model, or has another shape, naming it and the model fields the two configs differ in."""
  model = models.create_model(config.model)
  optimizer = optim.create_optimizer(config.optim, config.num_train_steps)
  target = ts.abstract_train_state(model, optimizer, config.data.image_size)
  wanted = {name: leaf.shape for kind in ('params', 'batch_stats')
            for name, leaf in _named_leaves(kind, getattr(target, kind))}
  given = {name: leaf.shape for kind in ('params', 'batch_stats')
           for name, leaf in _named_leaves(kind, variables[kind])}
  problems = [f'{name} is {given.get(name, "missing")} there and {wanted.get(name, "missing")} '
              'here' for name in dict.fromkeys([*wanted, *given])  # Parameters first.
              if given.get(name) != wanted.get(name)]
  if not problems:
    return
  ours = run_config.leaves(config.model.to_dict())
  theirs = run_config.leaves(source_config.model.to_dict())
  differ = [f'model.{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here'
            for k in sorted(ours.keys() | theirs.keys()) if ours.get(k) != theirs.get(k)]
  raise ValueError(
      f'{where}: its checkpoint of step {step} does not fit this config\'s model '
      f'({"; ".join(problems[:2])}{f"; and {len(problems) - 2} more" * (len(problems) > 2)}). '
      'The models differ in '
      f'{", ".join(differ) if differ else "no config.model field (another version of the code?)"}'
      '; start from a run of the same model.')


def _named_leaves(kind: str, tree) -> list[tuple[str, jax.ShapeDtypeStruct]]:
  return [('/'.join((kind, *checkpointing.path_names(path))), leaf)
          for path, leaf in jax.tree.flatten_with_path(tree)[0]]
