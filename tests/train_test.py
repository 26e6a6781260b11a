"""The training loop end to end at tiny size: outputs, learning, checkpoints, exact resume."""

import json
import os

import jax
import numpy as np
import pytest

from configs import quickstart
from unet_jax import checkpointing, metric_logging, models, optim, train
from unet_jax import train_step as ts


def tiny_config(**overrides):
  config = quickstart.get_config()
  config.data.image_size = 32
  config.data.synthetic_size = 48
  config.data.num_train = 64
  config.data.num_val = 20  # Not a multiple of the eval batch: the last batch is padded.
  config.model.depth = 2
  config.model.base_width = 8
  config.batch_size = 16
  config.eval_batch_size = 16
  config.num_train_steps = 30
  config.log_every_steps = 5
  config.eval_every_steps = 15
  config.checkpoint_every_steps = 10
  config.optim.warmup_steps = 5
  config.update_from_flattened_dict(overrides)
  return config


def test_train_and_evaluate_writes_everything_and_learns(tmp_path):
  workdir = str(tmp_path / 'run')
  final = train.train_and_evaluate(tiny_config(), workdir)

  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['base_width'] == 8
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['20', '30']  # Keeps 2.
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))

  rows = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  train_rows = [r for r in rows if 'train_loss' in r]
  assert [r['step'] for r in train_rows] == [5, 10, 15, 20, 25, 30]
  assert {'train_images_per_sec', 'train_data_wait_fraction', 'train_lr'} <= set(train_rows[-1])
  assert train_rows[-1]['train_loss'] < 0.8 * train_rows[0]['train_loss']  # It learns.
  val_rows = [r for r in rows if 'val_dice' in r]
  assert [r['step'] for r in val_rows] == [15, 30]
  assert val_rows[-1]['val_dice'] == pytest.approx(final['dice'])
  assert set(final) == {'loss', 'dice', 'jaccard', 'accuracy', 'sensitivity', 'specificity'}


def _final_params(workdir):
  manager = checkpointing.create_manager(os.path.join(workdir, 'checkpoints'), every_steps=1,
                                         max_to_keep=5)
  config = tiny_config()
  model = models.create_model(config.model)
  target = ts.create_train_state(model, optim.create_optimizer(config.optim, 30),
                                 jax.random.key(0), config.data.image_size)
  state, step = checkpointing.restore_latest(manager, target)
  manager.close()
  return state, step


def test_resume_continues_exactly_where_it_stopped(tmp_path):
  """A run stopped at step 10 and started again ends with the same parameters as one that ran
  straight through: the data order, augmentation and dropout keys all follow the step."""
  straight, interrupted = str(tmp_path / 'straight'), str(tmp_path / 'interrupted')
  config = tiny_config(num_train_steps=20,
                       **{'model.dropout_rate': 0.5, 'model.dropout_levels': (2,)})
  train.train_and_evaluate(config, straight)
  train.train_and_evaluate(config, interrupted, stop_after_step=10)  # As if pre-empted.
  assert _final_params(interrupted)[1] == 10
  train.train_and_evaluate(config, interrupted)

  resumed, step = _final_params(interrupted)
  reference, _ = _final_params(straight)
  assert step == 20
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference.params), strict=True):
    np.testing.assert_array_equal(a, b)


def test_a_finished_run_is_not_trained_again(tmp_path):
  # Also the pmap path end to end (train_step_test checks its step against shard_map's).
  workdir = str(tmp_path / 'run')
  config = tiny_config(num_train_steps=10, eval_every_steps=10, parallelism='pmap')
  first = train.train_and_evaluate(config, workdir)
  rows_before = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  again = train.train_and_evaluate(config, workdir)
  rows_after = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert again == pytest.approx(first)
  assert not [r for r in rows_after[len(rows_before):] if 'train_loss' in r]


def test_config_errors_come_before_compiling(tmp_path):
  with pytest.raises(ValueError, match='config.batch_size=12'):
    train.train_and_evaluate(tiny_config(batch_size=12), str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='config.data.image_size=30'):
    train.train_and_evaluate(tiny_config(**{'data.image_size': 30}), str(tmp_path / 'b'))
  assert not os.path.exists(tmp_path / 'a' / 'checkpoints')
