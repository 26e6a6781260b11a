r"""Prints a config's U-Net layer by layer, with its totals, without training.

  python -m unet_jax.summary --config configs/seed.py   # or --config seed, a preset's name
  python -m unet_jax.summary --config configs/default.py --config.model.base_width=32

Shapes come from `jax.eval_shape`, so nothing is computed or allocated: the full-size model prints
in a second on any machine. The totals to compare with a Keras `model.summary()` are "trainable
parameters" (Keras' trainable params) and "BatchNorm statistics" (Keras' non-trainable params).
"""

import collections
import math
import sys

from absl import app, flags
from ml_collections import config_flags

from unet_jax import cli, config_files

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, config_files.flag_help('The config'),
                                lock_config=True)
flags.mark_flag_as_required('config')


def summarize(model_config, image_size: int) -> tuple[str, int, int]:
  """(table, trainable parameter count, BatchNorm statistic count) of the model at image_size."""
  import jax
  import jax.numpy as jnp

  from unet_jax import models

  model = models.create_model(model_config)
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)

  # One row per layer: the path of the module that owns the variables, top-level order kept.
  rows = collections.OrderedDict()
  for collection in ('params', 'batch_stats'):
    for path, leaf in jax.tree.flatten_with_path(variables.get(collection, {}))[0]:
      layer = '/'.join(str(p.key) for p in path[:-1])
      row = rows.setdefault(layer, {'shapes': [], 'params': 0, 'stats': 0})
      count = math.prod(leaf.shape)
      if collection == 'params':
        row['shapes'].append(f'{path[-1].key}{list(leaf.shape)}')
        row['params'] += count
      else:
        row['stats'] += count
  width = max(len(name) for name in rows) + 2
  rows = dict(sorted(rows.items(), key=lambda item: _forward_order(item[0])))
  lines = [f'{"layer":<{width}}{"parameters":>12}{"BN stats":>10}  shapes', '-' * (width + 60)]
  for name, row in rows.items():
    lines.append(f'{name:<{width}}{row["params"]:>12,}{row["stats"]:>10,}  '
                 + ' '.join(row['shapes']))
  params = models.count_params(variables['params'])
  stats = models.count_params(variables.get('batch_stats', {}))
  lines += ['-' * (width + 60),
            f'input {list(x.shape)} -> output {list(out.shape)} (logits)',
            f'trainable parameters: {params:,}',
            f'BatchNorm statistics (non-trainable): {stats:,}',
            f'total: {params + stats:,}']
  return '\n'.join(lines), params, stats


def _forward_order(layer: str):
  """Sort key putting layers in the order data flows: encoder down, decoder up, then the head."""
  top, _, sub = layer.partition('/')
  stage, _, part = top.partition('_')
  if stage.startswith('enc'):
    group = (0, int(stage[3:]))
  elif stage.startswith('dec'):
    group = (1, -int(stage[3:]))
  else:
    group = (2, 0)
  return group, part != 'up', part, sub != 'conv'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  table, _, _ = summarize(FLAGS.config.model, FLAGS.config.data.image_size)
  print(table)


if __name__ == '__main__':
  sys.argv = config_files.resolved_argv(sys.argv)  # --config seed: a preset by name.
  cli.run_absl(main, flags_parser=config_files.parse_flags)
