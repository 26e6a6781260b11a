"""Our recipe (configs/isic_folder.py) sized to train on about 50 photos in a few minutes on 2 CPU
cores: the recipe the paper's CPU-scale report puts against configs/seed_cpu.py.

64 px (photos decoded at libjpeg's 1/8 scale), a 3-level U-Net of width 16 (0.48M parameters),
batch 8 for 1500 steps (about 4 minutes on 2 cores), with the recipe's inference settings
(configs/isic2018.py: the 8 views of the training augmentation averaged, one lesion region
without holes). Chosen by
cross-validation on ../shared/data/isic_sample only (experiments/paper/cpu/report.md says how).
`--config.data.dir=PATH` as in configs/isic_folder.py.
"""

from configs import isic_folder


def get_config():
  config = isic_folder.get_config()
  config.data.image_size = 64

  config.model.depth = 3
  config.model.base_width = 16
  config.model.dropout_levels = (3,)  # The bottleneck only, at isic2018's 0.1.

  config.optim.lr = 3e-3
  config.optim.warmup_steps = 75
  config.batch_size = 8
  config.num_train_steps = 1500
  config.eval.every_steps = 500
  config.eval.pooled_every_steps = 100
  config.checkpoint_every_steps = 500
  config.max_checkpoints_to_keep = 1
  config.precision = 'float32'
  return config
