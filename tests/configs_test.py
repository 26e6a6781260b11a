"""Every shipped config builds, and one training step (and an evaluation) runs at tiny size.

Configs that nothing runs go stale; this keeps each one honest. Only sizes shrink here: each
config's own choices (norm, upsampling, head, loss, optimizer, schedule, resize policy, input
range, split) are what runs.
"""

import ast
import glob
import importlib
import json
import os
import pathlib

import fake_isic  # tests/fake_isic.py
import pytest

from unet_jax import config_checks, metric_logging, train

CONFIG_NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob('configs/*.py')
                      if not p.endswith('__init__.py'))
SIZE = 32


def _plain(value):
  return tuple(value) if isinstance(value, list) else value


def test_presets_state_only_what_they_change():
  """Each preset sets only fields whose value differs from its parent config's (read from its
  source), so a preset reads as the list of its choices; a restated default would hide which."""
  restated = []
  for name in CONFIG_NAMES:
    tree = ast.parse(pathlib.Path(f'configs/{name}.py').read_text(encoding='utf-8'))
    parents = [n.names[0].name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and n.module == 'configs']
    if not parents:
      continue
    parent = importlib.import_module(f'configs.{parents[0]}').get_config()
    child = importlib.import_module(f'configs.{name}').get_config()
    for node in ast.walk(tree):
      if not (isinstance(node, ast.Assign) and ast.unparse(node.targets[0]).startswith('config.')):
        continue
      field = ast.unparse(node.targets[0])[len('config.'):]
      old, value = parent, child  # The values the configs end with, whatever computed them.
      for part in field.split('.'):
        old, value = old[part], value[part]
      if _plain(value) == _plain(old):
        restated.append(f'{name}: {field} = {value!r}')
  assert restated == []
  assert {'default', 'quickstart', 'seed', 'isic2018', 'isic_folder',
          'isic_folder_tiny'} <= set(CONFIG_NAMES)


@pytest.fixture(scope='module')
def fake_data(tmp_path_factory):
  """A fake ISIC archive, unpacked (for 'folder' configs) and built as TFDS (for 'isic')."""
  info = fake_isic.make_fake_isic(str(tmp_path_factory.mktemp('manual')),
                                  counts={'Training': 10, 'Validation': 4, 'Test': 4})
  builder = fake_isic.prepare_fake_tfds(str(tmp_path_factory.mktemp('tfds')), SIZE, info)
  return info['root'], str(builder.data_dir_root)


def shrink(config, folder: str, tfds_dir: str):
  """The same recipe at a size that runs in seconds on a CPU."""
  config.data.image_size = SIZE
  config.data.synthetic_size = SIZE
  config.data.num_examples = 24
  config.data.dir = folder
  config.data.tfds_data_dir = tfds_dir
  config.model.depth = min(config.model.depth, 2)
  config.model.base_width = 4
  config.model.dropout_levels = tuple(lvl for lvl in config.model.dropout_levels
                                      if lvl <= config.model.depth)
  config.batch_size = config.eval.batch_size = 8
  config.num_train_steps = 1
  config.optim.warmup_steps = min(config.optim.warmup_steps, 1)
  return config


# The CPU-scale recipes are isic_folder's model and data path at other sizes and optimizer
# settings (the paper's cpu scale trains them for real); the shipped recipes' structures are
# each trained below, and the CPU ones are checked without compiling.
CPU_RECIPES = ('isic_folder_cpu', 'seed_cpu')


@pytest.mark.parametrize('name', CPU_RECIPES)
def test_cpu_recipes_pass_the_config_checks_on_two_cores(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  config.data.dir = 'photos'
  config_checks.check(config, 2)  # Every field's rule, as main runs it before compiling.


@pytest.mark.parametrize('name', [n for n in CONFIG_NAMES if n not in CPU_RECIPES])
def test_config_trains_one_step(name, fake_data, tmp_path):
  config = importlib.import_module(f'configs.{name}').get_config()
  assert config.is_locked is False  # main.py locks it after command-line overrides.
  workdir = str(tmp_path / name)
  final = train.train_and_evaluate(shrink(config, *fake_data), workdir)
  assert 0.0 <= final['threshold_jaccard'] <= 1.0 and final['pooled_loss'] > 0
  rows = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert rows[0]['step'] == 1 and rows[0]['train_loss'] > 0
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['loss'] == config.loss


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_every_preset_reads_back_from_the_config_json_a_run_of_it_writes(name, tmp_path):
  """`--config RUN` (unet_jax/config_from_run.py) gives back the config a run of each preset
  recorded, value for value and type for type (config.json holds tuples as lists, None as null)."""
  from unet_jax import config_from_run, run_config

  config = importlib.import_module(f'configs.{name}').get_config()
  run_config.write(config, str(tmp_path))
  read = config_from_run.get_config(run_config.path(str(tmp_path)))
  assert read.to_dict() == config.to_dict()
