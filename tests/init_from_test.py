"""`config.init_from`: a run that starts from another run's parameters and BatchNorm statistics.

The reference for what it starts from is the source run itself: its own native validation of its
final step, image by image, which the new run's validation before any step must equal (the same
parameters and statistics give the same masks; a random init would not).
"""

import os
import shutil

import pytest
from train_test import tiny_config  # tests/train_test.py; pytest puts tests/ on sys.path.

from unet_jax import results, train


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  """A finished tiny run (10 steps, validated at the end): the run others start from."""
  workdir = str(tmp_path_factory.mktemp('source') / 'source')
  train.train_and_evaluate(tiny_config(num_train_steps=10), workdir)
  return workdir


def test_a_run_starts_from_the_sources_parameters_and_resumes_without_it(source, tmp_path):
  # Before its first step, the new run validates exactly as the source did at its last.
  start = str(tmp_path / 'start')
  config = tiny_config(**{'init_from.workdir': source, 'num_train_steps': 6})
  train.train_and_evaluate(config, start, stop_after_step=0)
  ours = results.read_per_image_csv(os.path.join(start, results.validation_csv(0)))
  theirs = results.read_per_image_csv(os.path.join(source, results.validation_csv(10)))
  assert ours == theirs
  random_init = str(tmp_path / 'random')
  train.train_and_evaluate(tiny_config(num_train_steps=6), random_init, stop_after_step=0)
  assert results.read_per_image_csv(os.path.join(random_init, results.validation_csv(0))) != ours
  assert results.read_run_summary(start)['init_from'] == {
      'workdir': source, 'checkpoint': 'final', 'step': 10, 'val_images_in_source_training': 0}
  assert results.read_run_summary(random_init)['init_from'] is None

  # At another image size (fully convolutional), from the best checkpoint, through a relative
  # path (recorded absolute); stopped, the source moved away, resumed from its own checkpoint.
  resized = str(tmp_path / 'resized')
  config = tiny_config(**{'init_from.workdir': os.path.relpath(source),
                          'init_from.checkpoint': 'best', 'data.image_size': 48,
                          'num_train_steps': 4, 'eval.every_steps': 0})
  train.train_and_evaluate(config, resized, stop_after_step=2)
  best = results.read_run_summary(source)['best']['step']
  recorded = results.read_json(os.path.join(resized, 'config.json'))['init_from']
  assert recorded == {'workdir': source, 'checkpoint': 'best'}
  moved = shutil.move(source, source + '_moved')
  try:
    train.train_and_evaluate(config.copy_and_resolve_references(), resized)
  finally:
    shutil.move(moved, source)
  summary = results.read_run_summary(resized)
  assert summary['state'] == 'finished' and summary['step'] == 4
  assert summary['init_from'] == {'workdir': source, 'checkpoint': 'best', 'step': best,
                                  'val_images_in_source_training': 0}


def test_a_run_of_another_fold_than_its_source_is_told_its_validation_is_optimistic(
    source, tmp_path, caplog):
  """The source trained on folds 1-3 of 4 (80 images): a run of fold 1 started from it validates
  on 20 photos its start has seen. Warned, and recorded for compare to name."""
  workdir = str(tmp_path / 'fold1')
  config = tiny_config(**{'init_from.workdir': source, 'data.fold': 1})
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(config, workdir, stop_after_step=0)
  assert results.read_run_summary(workdir)['init_from']['val_images_in_source_training'] == 20
  assert any("trained on 20 of this run's validation images (its data.fold=0 of 4, this run's "
             "1): this run's validation scores are optimistic" in r.getMessage()
             for r in caplog.records), [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize('overrides, message', [
    ({'init_from.workdir': '{tmp}'}, r"config.init_from.workdir='{tmp}': no run there \(no "
                                     r'config.json\)'),
    ({'init_from.checkpoint': '30'}, r"config.init_from.workdir='{source}': No checkpoint of "
                                     r'step 30 in .*; it holds steps \[10\]'),
    ({'model.base_width': 4}, r"config.init_from.workdir='{source}': its checkpoint of step 10 "
                              r"does not fit this config's model \(params/.* is \(.*\) there and "
                              r'\(.*\) here.*\). The models differ in model.base_width: 8 '
                              r'there, 4 here; start from a run of the same model.'),
])
def test_a_source_that_cannot_start_the_run_is_refused_before_its_workdir_exists(
    source, tmp_path, overrides, message):
  fields = {'init_from.workdir': source, **overrides}
  fields['init_from.workdir'] = fields['init_from.workdir'].format(tmp=tmp_path)
  workdir = str(tmp_path / 'run')
  with pytest.raises(ValueError, match=message.format(tmp=tmp_path, source=source)):
    train.train_and_evaluate(tiny_config(**fields), workdir)
  assert not os.path.exists(workdir)


def test_a_run_and_its_source_moved_together_resume_where_they_are_now(source, tmp_path):
  """A sweep's root moved (or copied to another disk): the run's command now names its source
  where it is, which its config.json does not; a resume, which reads no source, goes on (it was
  refused as trained under another config), and its summary keeps what it started from."""
  root = tmp_path / 'root'
  shutil.copytree(source, root / 'pre')
  overrides = {'num_train_steps': 4, 'eval.every_steps': 0}
  train.train_and_evaluate(tiny_config(**overrides, **{'init_from.workdir': str(root / 'pre')}),
                           str(root / 'ft'), stop_after_step=2)
  moved = tmp_path / 'moved'
  shutil.move(root, moved)
  train.train_and_evaluate(tiny_config(**overrides, **{'init_from.workdir': str(moved / 'pre')}),
                           str(moved / 'ft'))
  summary = results.read_run_summary(str(moved / 'ft'))
  assert summary['state'] == 'finished' and summary['step'] == 4
  assert summary['init_from']['workdir'] == str(root / 'pre')
  recorded = results.read_json(str(moved / 'ft' / 'config.json'))['init_from']['workdir']
  assert recorded == str(moved / 'pre')
