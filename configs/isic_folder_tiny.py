"""A CPU-sized run of configs/isic_folder.py: 64 px, a small U-Net, a few hundred steps.

Sized to train on a small folder of real images (e.g. 50) on 2 CPU cores in a few minutes: a
check that real data flows from files to a learning model, not a competitive result.
`--config.data.dir=PATH` as in configs/isic_folder.py.
"""

from configs import isic_folder


def get_config():
  config = isic_folder.get_config()
  config.data.image_size = 64

  config.model.depth = 3
  config.model.base_width = 16
  config.model.dropout_rate = 0.0
  config.model.dropout_levels = ()

  config.optim.lr = 3e-3
  config.optim.warmup_steps = 30
  config.batch_size = 8
  config.num_train_steps = 300
  config.log_every_steps = 25
  config.eval.every_steps = 100
  config.eval.pooled_every_steps = 100
  config.checkpoint_every_steps = 100
  config.max_checkpoints_to_keep = 1
  config.precision = 'float32'
  # Plain thresholding: a data-path check, scored against the official scorer as it predicts
  # (experiments/isic_sample_scoring.sh), not the recipe's 8-view inference.
  config.inference.tta = 'none'
  config.inference.largest_component = False
  config.inference.fill_holes = False
  return config
