"""Quickstart: a small U-Net on the built-in synthetic data, sized for 2 CPU cores.

`make demo` trains this in a few minutes and reaches validation Dice >= 0.90 on held-out
synthetic images (README: measured figures).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.image_size = 64
  config.data.synthetic_size = 96
  config.data.num_examples = 1280  # 5 folds: 1024 train, 256 validation.

  config.model.depth = 3
  config.model.base_width = 16
  config.model.dropout_rate = 0.0
  config.model.dropout_levels = ()

  config.optim.lr = 3e-3
  config.optim.warmup_steps = 50
  config.num_train_steps = 600
  config.eval.batch_size = 32
  config.eval.every_steps = 200
  config.eval.pooled_every_steps = 200
  config.checkpoint_every_steps = 200
  config.max_checkpoints_to_keep = 2
  config.precision = 'float32'
  return config
