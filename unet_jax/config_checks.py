"""Every config field checked before anything is built or compiled, each error naming the field.

`check(config, num_devices)` runs at the start of `train.train_and_evaluate`: a wrong type, a value
out of range or outside a field's allowed set, a field no code reads (a typo in a config file of
your own), and the cross-field rules (the batch divides over the devices, the image size halves
`depth` times, the fold exists) all fail here, with the field, the value and what is allowed,
instead of minutes later inside a compile or a data pipeline. Command-line overrides of a wrong
type are caught earlier still, by ml_collections' parser.

`RULES` maps every field of configs/default.py to its check (tests/config_checks_test.py checks
that none is missing, and that each rule refuses a bad value).
"""

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from unet_jax import native_scoring


@dataclasses.dataclass(frozen=True)
class Rule:
  """A check of one field: `ok(value)`, what is allowed (for the message), and a bad example."""

  ok: Callable[[Any], bool]
  allowed: str
  bad: Any


def _int(low=None, high=None, bad=-1) -> Rule:
  def ok(v):
    return (isinstance(v, numbers.Integral) and not isinstance(v, bool)
            and (low is None or v >= low) and (high is None or v <= high))
  text = 'an integer' + (f' >= {low}' if low is not None else '') + (
      f' and <= {high}' if high is not None else '')
  return Rule(ok, text, bad)


def _float(low=None, high=None, *, low_open=False, high_open=False, bad=-1.0) -> Rule:
  def ok(v):
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
      return False
    if low is not None and (v < low or (low_open and v == low)):
      return False
    return not (high is not None and (v > high or (high_open and v == high)))
  left = '(' if low_open else '['
  right = ')' if high_open else ']'
  text = f'a number in {left}{low if low is not None else "-inf"}, ' \
         f'{high if high is not None else "inf"}{right}'
  return Rule(ok, text, bad)


def _one_of(choices: Sequence[str]) -> Rule:
  return Rule(lambda v: v in choices, f'one of {tuple(choices)}', 'bogus')


def _bool() -> Rule:
  return Rule(lambda v: isinstance(v, bool), 'True or False', 'yes')


def _str(nonempty: bool = False) -> Rule:
  return Rule(lambda v: isinstance(v, str) and (bool(v) or not nonempty),
              'a non-empty string' if nonempty else 'a string', 3)


def _tuple_of(check: Callable[[Any], bool], text: str, bad) -> Rule:
  return Rule(lambda v: isinstance(v, (tuple, list)) and all(check(x) for x in v),
              f'a tuple of {text}', bad)


def _rules() -> dict[str, Rule]:
  # Imported here: they import JAX or TensorFlow, which this module's importers may not need.
  from unet_jax import (
    checkpointing,
    inference,
    losses,
    metrics,
    models,
    normalization,
    optim,
    parallel,
    resize_policy,
  )

  positive = _int(1, bad=0)
  return {
    'seed': _int(0),
    'data.source': _one_of(('synthetic', 'folder', 'isic')),
    'data.image_size': _int(8, bad=4),
    'data.resize_policy': _one_of(resize_policy.POLICIES),
    'data.normalize': _one_of(normalization.MODES),
    'data.cache': _bool(),
    'data.num_examples': positive,
    'data.synthetic_size': _int(8, bad=2),
    'data.synthetic_seed': _int(0),
    'data.dir': _str(),
    'data.image_dir': _str(nonempty=True),
    'data.mask_dir': _str(nonempty=True),
    'data.image_ext': _str(nonempty=True),
    'data.mask_suffix': _str(nonempty=True),
    'data.tfds_data_dir': _str(),
    'data.val_split': _one_of(('kfold', 'validation')),
    'data.num_folds': _int(2, bad=1),
    'data.fold': _int(0),
    'data.split_seed': _int(0),
    'augment.enabled': _bool(),
    'augment.flip': _bool(),
    'augment.rot90': _bool(),
    'augment.min_scale': _float(0, 1, bad=1.5),
    'augment.brightness': _float(0, 1, bad=-0.1),
    'augment.contrast': _float(0, 1, bad=1.5),
    'augment.hue': _float(0, 0.5, bad=0.6),
    'model.depth': _int(1, 8, bad=0),
    'model.base_width': positive,
    'model.norm': _one_of(models.NORMS),
    'model.norm_position': _one_of(models.NORM_POSITIONS),
    'model.group_norm_groups': positive,
    'model.dropout_rate': _float(0, 1, high_open=True, bad=1.0),
    'model.dropout_levels': _tuple_of(lambda x: isinstance(x, int) and x >= 0,
                                      'levels >= 0', (-1,)),
    'model.upsample': _one_of(models.UPSAMPLES),
    'model.head': _one_of(models.HEADS),
    'loss': _one_of(losses.LOSSES),
    'init_from.workdir': _str(),
    'init_from.checkpoint': Rule(
        lambda v: isinstance(v, str) and (v in checkpointing.CHOICES or v.isdigit()),
        f'one of {checkpointing.CHOICES} or a step number', 'bogus'),
    'optim.name': _one_of(optim.OPTIMIZERS),
    'optim.lr': _float(0, low_open=True, bad=0.0),
    'optim.b1': _float(0, 1, high_open=True, bad=1.0),
    'optim.b2': _float(0, 1, high_open=True, bad=1.0),
    'optim.eps': _float(0, low_open=True, bad=0.0),
    'optim.momentum': _float(0, 1, high_open=True, bad=1.0),
    'optim.nesterov': _bool(),
    'optim.weight_decay': _float(0),
    'optim.grad_clip_norm': _float(0),
    'optim.schedule': _one_of(optim.SCHEDULES),
    'optim.warmup_steps': _int(0),
    'optim.end_lr_factor': _float(0, 1, bad=2.0),
    'optim.step_boundaries': _tuple_of(lambda x: isinstance(x, numbers.Real) and 0 < x < 1,
                                       'fractions in (0, 1)', (1.5,)),
    'optim.step_factor': _float(0, low_open=True, bad=0.0),
    'batch_size': positive,
    'num_train_steps': positive,
    'log_every_steps': positive,
    'checkpoint_every_steps': positive,
    'max_checkpoints_to_keep': positive,
    'profile_steps': _int(0),
    'eval.every_steps': _int(0),
    'eval.pooled_every_steps': _int(0),
    'eval.batch_size': positive,
    'eval.metrics': _tuple_of(lambda x: x in native_scoring.METRICS,
                              f'metric names from {native_scoring.METRICS}', ('dise',)),
    'eval.best_metric': _one_of((*native_scoring.METRICS,
                                 *(f'pooled_{m}' for m in metrics.RATIOS))),
    'eval.use_inference': _bool(),
    'inference.tta': _one_of(tuple(inference.TTA_VIEWS)),
    'inference.threshold': _float(0, 1, low_open=True, high_open=True, bad=1.0),
    'inference.largest_component': _bool(),
    'inference.fill_holes': _bool(),
    'precision': _one_of(parallel.PRECISIONS),
    'parallelism': _one_of(parallel.PARALLELISMS),
    'deterministic': _bool(),
  }


_RULES: dict[str, Rule] | None = None


def rules() -> dict[str, Rule]:
  global _RULES
  if _RULES is None:
    _RULES = _rules()
  return _RULES


def flat_fields(config: ml_collections.ConfigDict | dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(flat_fields(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def check(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Raises ValueError naming the first wrong field (and the fix), or returns."""
  fields = flat_fields(config)
  known = rules()
  unknown = sorted(set(fields) - set(known))
  if unknown:
    raise ValueError(f'config.{unknown[0]} is not a field unet_jax reads (a typo?). The fields '
                     'are those of configs/default.py.')
  missing = sorted(set(known) - set(fields))
  if missing:
    raise ValueError(f'config.{missing[0]} is missing; configs build on configs/default.py '
                     '(config = default.get_config(), then set what differs).')
  for field, rule in known.items():
    if not rule.ok(fields[field]):
      raise ValueError(f'config.{field}={fields[field]!r} must be {rule.allowed}.')
  _check_together(config, num_devices)


def _check_together(config: ml_collections.ConfigDict, num_devices: int | None) -> None:
  from unet_jax import parallel

  if num_devices:
    parallel.check_batch_divides(config.batch_size, num_devices, 'config.batch_size')
    parallel.check_batch_divides(config.eval.batch_size, num_devices, 'config.eval.batch_size')
  factor = 2**config.model.depth
  if config.data.image_size % factor:
    raise ValueError(f'config.data.image_size={config.data.image_size} must be a multiple of '
                     f'2**config.model.depth = {factor} (each of the {config.model.depth} '
                     'poolings halves it); e.g. '
                     f'{factor * max(1, round(config.data.image_size / factor))}.')
  if config.data.fold >= config.data.num_folds:
    raise ValueError(f'config.data.fold={config.data.fold} must be < config.data.num_folds='
                     f'{config.data.num_folds}.')
  if any(level > config.model.depth for level in config.model.dropout_levels):
    raise ValueError(f'config.model.dropout_levels={tuple(config.model.dropout_levels)} has '
                     f'a level above config.model.depth={config.model.depth} (levels are 0 = '
                     'top .. depth = bottleneck).')
  if config.model.norm == 'group' and config.model.base_width % config.model.group_norm_groups:
    raise ValueError(f'config.model.group_norm_groups={config.model.group_norm_groups} must '
                     f'divide config.model.base_width={config.model.base_width}.')
  if config.data.source == 'folder' and not config.data.dir:
    raise ValueError("config.data.source='folder' needs config.data.dir: the folder that holds "
                     f'{config.data.image_dir!r} and {config.data.mask_dir!r}.')
