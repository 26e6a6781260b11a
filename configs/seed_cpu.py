"""The seed notebook's choices at our CPU budget: configs/isic_folder_cpu.py (same data, size,
width, depth and steps) with the seed's raw 0-255 inputs, stretched images, no augmentation,
binary cross-entropy, Adam at a constant 1e-4 and dropout 0.5 on the two deepest levels, and no
test-time augmentation or post-processing. What the paper's CPU-scale report compares with ours.

`SEED_CHOICES` is the list of those choices, which the paper's ablation undoes one at a time.
"""

from configs import isic_folder_cpu

# The seed notebook's recipe choices, as config overrides (the seed's architecture otherwise).
SEED_CHOICES = {
  'data.normalize': 'none',
  'data.resize_policy': 'stretch',
  'augment.enabled': False,
  'loss': 'bce',
  'optim.name': 'adam',
  'optim.lr': 1e-4,
  'optim.eps': 1e-7,
  'optim.weight_decay': 0.0,
  'optim.grad_clip_norm': 0.0,
  'optim.schedule': 'constant',
  'model.dropout_rate': 0.5,
  'inference.tta': 'none',
  'inference.largest_component': False,
  'inference.fill_holes': False,
}


def seed_levels(depth: int) -> tuple[int, ...]:
  """The seed's dropout levels: the last encoder level and the bottleneck."""
  return (depth - 1, depth)


def get_config():
  config = isic_folder_cpu.get_config()
  config.update_from_flattened_dict(SEED_CHOICES)
  config.model.dropout_levels = seed_levels(config.model.depth)
  return config
