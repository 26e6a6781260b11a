"""The one place that maps a scale to its data, its two recipes and its run sizes.

  smoke  synthetic data, tiny runs: a few minutes on 2 CPU cores (a test runs it)
  cpu    the 49-photo sample in ../shared/data/isic_sample, configs/seed_cpu.py against
         configs/isic_folder_cpu.py: at most 3 hours on 2 CPU cores in all
  full   ISIC 2018 Task 1 on a GPU host, configs/seed.py against configs/isic2018.py (only
         `--dry-run` here: it has not been run at full scale)

Every recipe is a base config plus overrides; the seed's recipe at a scale is ours with the
seed's choices (`configs.seed_cpu.SEED_CHOICES`), so that the ablation (experiments/paper/
tables.py) can undo them one at a time.
"""

import dataclasses
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.normpath(os.path.join(REPO, '..', 'shared', 'data', 'isic_sample'))

# The smoke scale's runs: the quickstart U-Net shrunk to run in seconds.
_SMOKE = {
  'data.image_size': 32, 'data.synthetic_size': 40, 'data.num_examples': 50,
  'model.depth': 2, 'model.base_width': 8, 'batch_size': 8, 'num_train_steps': 30,
  'log_every_steps': 10, 'checkpoint_every_steps': 30, 'max_checkpoints_to_keep': 1,
  'optim.warmup_steps': 5, 'optim.lr': 3e-3, 'eval.batch_size': 10, 'eval.every_steps': 15,
  'eval.pooled_every_steps': 15, 'inference.tta': 'dihedral',
  'inference.largest_component': True, 'inference.fill_holes': True,
}


@dataclasses.dataclass(frozen=True)
class Scale:
  """What a scale runs.

  Attributes:
    name: 'smoke', 'cpu' or 'full'.
    ours: our recipe's base config (a preset name or a file).
    common: overrides every run of the scale gets (its data, its run size).
    table1_folds: the folds of Table 1 (5-fold cross-validation: 0..4).
    ablation_folds: the folds of Table 2 (may be fewer; the report says so).
    parallel: runs at once (each on its share of the cores or GPUs).
    data: what the report says the data is.
  """

  name: str
  ours: str
  common: dict
  table1_folds: tuple[int, ...]
  ablation_folds: tuple[int, ...]
  parallel: int
  data: str


SCALES = {
  'smoke': Scale('smoke', 'quickstart', {**_SMOKE, 'data.num_folds': 5}, (0, 1), (0,), 2,
                 '50 synthetic images at 40 px (5 folds of 10)'),
  'cpu': Scale('cpu', 'isic_folder_cpu', {'data.dir': SAMPLE, 'data.num_folds': 5},
               (0, 1, 2, 3, 4), (0, 1, 2), 2,
               'the 49 ISIC photos of ../shared/data/isic_sample (5 folds of 9-10 photos)'),
  'full': Scale('full', 'isic2018', {'data.num_folds': 5}, (0, 1, 2, 3, 4), (0, 1, 2, 3, 4), 1,
                'ISIC 2018 Task 1, 2594 training photos (5 folds of 519)'),
}


def seed_overrides(scale: Scale) -> dict:
  """The seed's choices on top of our recipe at this scale."""
  from configs import seed_cpu

  depth = _config(scale, {}).model.depth
  return {**seed_cpu.SEED_CHOICES, 'model.dropout_levels': seed_cpu.seed_levels(depth)}


def _config(scale: Scale, overrides: dict):
  """Our recipe's config at this scale with `overrides` (for reading its values)."""
  import importlib

  from unet_jax import config_files

  path = config_files.resolve(scale.ours)
  spec = importlib.util.spec_from_file_location('paper_recipe', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.update_from_flattened_dict({**scale.common, **overrides})
  return config


def ours_value(scale: Scale, field: str):
  """The value our recipe at this scale gives `field`."""
  node = _config(scale, {})
  for part in field.split('.'):
    node = node[part]
  return tuple(node) if isinstance(node, list) else node
