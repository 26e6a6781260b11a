"""Tests for unet_jax.input_pipeline on tiny synthetic data and a tiny ISIC-layout folder."""

import collections
import itertools
import os
import shutil
import subprocess
import sys

import fake_isic  # tests/fake_isic.py; pytest puts tests/ on sys.path.
import numpy as np
import pytest
import tensorflow as tf

from configs import default
from unet_jax import (
  evaluation,
  folds,
  input_pipeline,
  isic2018,
  isic_source,
  photos,
  resize_policy,
  synthetic,
)

SIZE = 32
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**data):
  config = default.get_config()
  config.data.image_size = SIZE
  config.data.synthetic_size = 40  # Not SIZE, so the resize path runs.
  config.data.num_examples = 20
  config.data.num_folds = 3  # 13 train, 7 validate.
  config.batch_size = 4
  config.eval.batch_size = 4
  for name, value in data.items():
    setattr(config.data, name, value)
  return config


def _take(iterator, n):
  return list(itertools.islice(iterator, n))


def _train(config, n, **kwargs):
  kwargs.setdefault('process_index', 0)
  kwargs.setdefault('process_count', 1)
  return _take(input_pipeline.train_batches(config, **kwargs), n)


def _eval(config, split='val', **kwargs):
  kwargs.setdefault('process_index', 0)
  kwargs.setdefault('process_count', 1)
  return list(input_pipeline.eval_batches(config, split, **kwargs))


def _assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _valid_images(batches):
  """The real (unpadded) images of an eval pass, in order."""
  return np.concatenate([b['image'][b['valid'] > 0] for b in batches])


# ---- training batches ---------------------------------------------------------------------


def test_train_batches_are_raw_uint8():
  """Augmentation and normalization happen in the train step (unet_jax.augment), not here."""
  (batch,) = _train(_config(normalize='imagenet'), 1)
  assert batch['image'].shape == (4, SIZE, SIZE, 3) and batch['image'].dtype == np.uint8
  assert batch['mask'].shape == (4, SIZE, SIZE, 1) and batch['mask'].dtype == np.uint8
  assert batch['image'].max() - batch['image'].min() > 64  # Raw pixels, not all one value.
  assert set(np.unique(batch['mask'])) == {0, 1}


def test_train_is_deterministic_and_reshuffles_each_epoch():
  config = _config()
  a, b = _train(config, 5), _train(config, 5)
  for x, y in zip(a, b, strict=True):
    _assert_batches_equal(x, y)
  assert not np.array_equal(a[0]['image'], a[3]['image'])  # steps_per_epoch = 13 // 4 = 3.
  other = _config()
  other.seed = 1
  assert not np.array_equal(a[0]['image'], _train(other, 1)[0]['image'])


@pytest.mark.parametrize('cache', [True, False])
def test_resume_matches_uninterrupted_run(cache):
  config = _config(cache=cache)
  reference = _train(config, 8)  # 3 steps per epoch: covers 2 epoch boundaries.
  for k in (1, 2, 3, 6):
    resumed = _train(config, 2, start_step=k)
    _assert_batches_equal(resumed[0], reference[k])
    _assert_batches_equal(resumed[1], reference[k + 1])


def test_cache_does_not_change_batches():
  _assert_batches_equal(_train(_config(cache=True), 3)[2], _train(_config(cache=False), 3)[2])


def test_each_epoch_visits_every_example_once():
  config = _config(num_examples=12, normalize='none')  # 3 folds: 8 train.
  epoch = np.concatenate([b['image'] for b in _train(config, 2)])  # 8 // 4 = 2 steps.
  everything = _valid_images(_eval(config, 'train'))
  assert sorted(x.astype(np.float32).tobytes() for x in epoch) == sorted(
    x.tobytes() for x in everything
  )


# A script that leaves its iterators open as it ends, as a notebook's last cell may.
_LEFT_OPEN = """
from configs import default
from unet_jax import input_pipeline
config = default.get_config()
config.data.image_size, config.data.synthetic_size, config.data.num_examples = 32, 40, 20
config.batch_size = config.eval.batch_size = 4
train = input_pipeline.train_batches(config)
val = input_pipeline.eval_batches(config, 'val')
print(next(train)['image'].shape, next(val)['image'].shape)
"""


def test_iterators_left_open_at_the_interpreters_end_close_quietly():
  done = subprocess.run([sys.executable, '-c', _LEFT_OPEN], cwd=REPO, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout == '(4, 32, 32, 3) (4, 32, 32, 3)\n'
  assert 'Exception ignored' not in done.stderr and 'Error' not in done.stderr, done.stderr


def test_train_errors():
  with pytest.raises(ValueError, match='fewer than one batch'):
    _train(_config(num_examples=5), 1)  # 3 train.
  config = _config()
  config.batch_size = 5
  with pytest.raises(ValueError, match=r'config\.batch_size'):
    _train(config, 1, process_index=0, process_count=2)
  with pytest.raises(ValueError, match=r'config\.data\.source'):
    _train(_config(source='tfds'), 1)


# ---- evaluation batches -------------------------------------------------------------------


def test_eval_pads_last_batch_and_marks_it_invalid():
  batches = _eval(_config())  # 7 examples, batches of 4.
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[0]['valid'], [1, 1, 1, 1])
  np.testing.assert_array_equal(batches[1]['valid'], [1, 1, 1, 0])
  last = batches[1]
  assert last['image'].shape == (4, SIZE, SIZE, 3) and last['valid'].dtype == np.int32
  assert not last['image'][3].any() and not last['mask'][3].any()
  assert last['image'][2].any()
  # Deterministic, unaugmented, and held out from training (different images).
  _assert_batches_equal(batches[0], _eval(_config())[0])
  train_images = _valid_images(_eval(_config(), 'train'))
  assert not {x.tobytes() for x in train_images} & {x.tobytes() for x in _valid_images(batches)}


def test_processes_split_examples_disjointly_and_stay_in_lockstep():
  config = _config()
  single = _valid_images(_eval(config))
  per_process = [_eval(config, process_index=p, process_count=2) for p in range(2)]
  assert len(per_process[0]) == len(per_process[1]) == 2  # ceil(ceil(7 / 2) / 2).
  for batches in per_process:
    assert all(b['image'].shape[0] == 2 for b in batches)
  assert [int(sum(b['valid'].sum() for b in bs)) for bs in per_process] == [3, 4]
  union = np.concatenate([_valid_images(bs) for bs in per_process])
  np.testing.assert_array_equal(union, single)  # Disjoint, complete, in order.


def test_more_processes_than_examples_still_lockstep():
  per_process = [_eval(_config(num_examples=9), process_index=p, process_count=4)  # 3 val.
                 for p in range(4)]
  assert {len(bs) for bs in per_process} == {1}
  assert sum(b['valid'].sum() for bs in per_process for b in bs) == 3


def test_training_slices_per_process_are_disjoint_and_cover_the_split():
  """Two processes over one epoch: 13 training examples, 6 per process (13 // 2), batches of 2
  per process (global 4): 12 distinct examples, all from the training split."""
  config = _config(normalize='none')
  epochs = [np.concatenate([b['image'] for b in _train(config, 3, process_index=p,
                                                          process_count=2)]) for p in range(2)]
  seen = [{x.astype(np.float32).tobytes() for x in epoch} for epoch in epochs]
  assert [len(s) for s in seen] == [6, 6] and not seen[0] & seen[1]
  everything = {x.tobytes() for x in _valid_images(_eval(config, 'train'))}
  assert len(everything) == 13 and seen[0] | seen[1] <= everything


def test_num_examples():
  assert input_pipeline.num_examples(_config(), 'train') == 13
  assert input_pipeline.num_examples(_config(), 'val') == 7
  with pytest.raises(ValueError, match='split'):
    input_pipeline.num_examples(_config(), 'tests')


# ---- folder source ------------------------------------------------------------------------


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('isic'))
  synthetic.write_folder(root, num=10, seed=0, sizes=((40, 56), (48, 48), (36, 30)))
  return root


def test_folder_source(folder):
  config = _config(source='folder', dir=folder, num_folds=5, fold=1)
  assert input_pipeline.num_examples(config, 'train') == 8
  assert input_pipeline.num_examples(config, 'val') == 2
  (batch,) = _train(config, 1)
  assert batch['image'].shape == (4, SIZE, SIZE, 3) and batch['mask'].shape == (4, SIZE, SIZE, 1)
  assert set(np.unique(batch['mask'])) == {0.0, 1.0}
  batches = _eval(config)
  assert len(batches) == 1
  np.testing.assert_array_equal(batches[0]['valid'], [1, 1, 0, 0])
  # Each mask is its own image's lesion (PNG is lossless): the written mask, resized to SIZE.
  sizes = {'ISIC_0000000': (40, 56), 'ISIC_0000001': (48, 48), 'ISIC_0000002': (36, 30)}
  ids = [f'ISIC_{k:07d}' for k in range(10)]
  val_ids = folds.kfold_split(ids, 5, 1, config.data.split_seed)[1]
  for ident, got in zip(val_ids, batches[0]['mask'], strict=False):
    k = int(ident[5:])
    _, mask = synthetic.make_example(0, k, *sizes[f'ISIC_{k % 3:07d}'])
    want = tf.image.resize(mask[..., None].astype(np.float32), [SIZE, SIZE], antialias=True)
    np.testing.assert_array_equal(got, (want.numpy() > 0.5).astype(np.float32))


def test_folder_missing_mask_names_the_file(folder, tmp_path):
  root = str(tmp_path)
  synthetic.write_folder(root, num=3, seed=0)
  missing = os.path.join(
    root, 'ISIC2018_Task1_Training_GroundTruth', 'ISIC_0000001_segmentation.png'
  )
  os.remove(missing)
  with pytest.raises(FileNotFoundError, match=r'ISIC_0000001_segmentation\.png') as error:
    input_pipeline.num_examples(_config(source='folder', dir=root, num_folds=2), 'train')
  assert 'ISIC_0000001.jpg' in str(error.value)


def test_the_hidden_files_a_copy_from_macos_leaves_are_not_examples(folder, tmp_path):
  """Copied from macOS to another file system, a folder gets an AppleDouble file `._<name>`
  beside each file, with no image in it. The folder source reads the copy as the original, as
  the TFDS builder, `evaluate` and `predict` do."""
  copy = str(tmp_path / 'copy')
  shutil.copytree(folder, copy)
  for parent, _, names in os.walk(copy):
    for name in names:
      with open(os.path.join(parent, '._' + name), 'wb') as f:
        f.write(b'\x00\x05\x16\x07' + bytes(78))  # AppleDouble's magic number, then nothing.
  original, copied = (_config(source='folder', dir=d, num_folds=5, fold=1) for d in (folder, copy))
  for split in ('train', 'val'):
    assert input_pipeline.folder_split(copied.data, split)[0] == input_pipeline.folder_split(
        original.data, split)[0]
  for a, b in zip(_train(original, 3) + _eval(original), _train(copied, 3) + _eval(copied),
                  strict=True):
    _assert_batches_equal(a, b)


def test_folder_errors_name_the_field(tmp_path):
  with pytest.raises(ValueError, match=r'config\.data\.dir'):
    input_pipeline.num_examples(_config(source='folder'), 'train')
  with pytest.raises(FileNotFoundError, match=r'config\.data\.dir'):
    input_pipeline.num_examples(_config(source='folder', dir=str(tmp_path / 'nope')), 'train')
  with pytest.raises(FileNotFoundError, match=r'\*\.jpg.*config\.data\.image_dir'):
    input_pipeline.num_examples(_config(source='folder', dir=str(tmp_path)), 'train')


# ---- resize policies ----------------------------------------------------------------------


@pytest.mark.parametrize('policy', ['stretch', 'pad', 'crop'])
@pytest.mark.parametrize('cache', [True, False])
def test_each_policy_on_a_folder(folder, policy, cache):
  """Shapes and binary masks under each policy, cached or not; what the pixels are is checked
  against an independent reference and against predict's path in tests/photos_test.py."""
  config = _config(source='folder', dir=folder, resize_policy=policy, cache=cache)
  (batch,) = _train(config, 1)
  assert batch['image'].shape == (4, SIZE, SIZE, 3) and batch['mask'].shape == (4, SIZE, SIZE, 1)
  assert set(np.unique(batch['mask'])) <= {0.0, 1.0}
  (val,) = _eval(config)
  assert val['image'].shape == (4, SIZE, SIZE, 3)
  other = _eval(_config(source='folder', dir=folder, resize_policy=policy, cache=not cache))[0]
  _assert_batches_equal(val, other)  # The cache changes nothing.


def test_pad_policy_pads_with_zeros(folder):
  config = _config(source='folder', dir=folder, resize_policy='pad', normalize='none', num_folds=2)
  images = _valid_images(_eval(config, 'train'))
  # 40x56 and 36x30 photos: a band of zero rows (landscape) or columns (portrait) at the edge.
  assert any(not x[0].any() and not x[-1].any() for x in images)
  assert any(not x[:, 0].any() and not x[:, -1].any() for x in images)


def test_crop_policy_training_crops_vary_and_resume(folder):
  config = _config(source='folder', dir=folder, resize_policy='crop')
  reference = _train(config, 6)  # 8 train examples, 2 steps an epoch.
  _assert_batches_equal(_train(config, 1, start_step=4)[0], reference[4])
  # Same examples in epochs 0 and 1 (other order), but at least one crop moved.
  epoch0 = np.concatenate([b['image'] for b in reference[:2]])
  epoch1 = np.concatenate([b['image'] for b in reference[2:4]])
  assert {x.tobytes() for x in epoch0} != {x.tobytes() for x in epoch1}


def test_unknown_normalize_mode_is_caught_before_any_data_is_read():
  with pytest.raises(ValueError, match=r'config\.data\.normalize'):
    _train(_config(normalize='standard'), 1)


def test_unknown_policy_names_the_field():
  with pytest.raises(ValueError, match=r'config\.data\.resize_policy'):
    _train(_config(resize_policy='squash'), 1)


# ---- isic source (TFDS) -------------------------------------------------------------------


@pytest.fixture(scope='module')
def isic(tmp_path_factory):
  """A prepared `isic2018_task1/<SIZE>` from a fake archive: 6 train, 2 validation, 2 test."""
  info = fake_isic.make_fake_isic(str(tmp_path_factory.mktemp('manual')), zipped=False)
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  fake_isic.prepare_fake_tfds(data_dir, SIZE, info)
  return data_dir, info


def _isic_config(data_dir, **data):
  config = _config(source='isic', tfds_data_dir=data_dir, **data)
  return config


def _expected(info, ids, policy):
  """What the pooled validation must yield: what `predict` gives the model for the archive's
  original JPEG ('crop': the central window of its canvas), the one preprocessing path."""
  images = []
  for ident in ids:
    part = next(p for p, split in fake_isic.PARTS.items() if ident in info['ids'][split])
    path = os.path.join(info['root'], isic2018.input_name(part), f'{ident}.jpg')
    image, native = photos.read_photo(path, SIZE)
    tiles, placement = resize_policy.model_inputs(image, SIZE, policy, native)
    if policy == 'crop':
      canvas = np.zeros((placement.resized_height, placement.resized_width, 3), np.float32)
      for tile, (top, left) in zip(tiles, placement.offsets, strict=True):
        canvas[top:top + SIZE, left:left + SIZE] = tile
      top, left = (canvas.shape[0] - SIZE) // 2, (canvas.shape[1] - SIZE) // 2
      tiles = canvas[None, top:top + SIZE, left:left + SIZE]
    images.append(tiles[0])
  return np.stack(images)


def test_every_dataset_we_iterate_runs_without_tf_datas_autotuning_model(isic, monkeypatch):
  """`input_pipeline.tf_data_options` on each: deleting an iterator waits for its autotuning
  thread, up to a minute once the iterator has run a while (a run's end waited 36-54 s)."""
  iterated = []

  def recording(original):
    def iterate(self):
      iterated.append(self.options())
      return original(self)
    return iterate

  for method in ('__iter__', 'as_numpy_iterator'):
    monkeypatch.setattr(tf.data.Dataset, method, recording(getattr(tf.data.Dataset, method)))
  monkeypatch.setattr(isic_source, '_IDS', {})  # Read the ids again, not from an earlier test.
  monkeypatch.setattr(input_pipeline, '_CACHE', collections.OrderedDict())  # Nothing cached.
  for config in (_config(cache=True), _config(cache=False), _isic_config(isic[0])):
    _train(config, 1)
    _eval(config)
    list(evaluation.iter_split(config, 'val'))
  assert len(iterated) >= 9
  assert all(o.autotune.enabled is False and o.deterministic for o in iterated), [
      (o.autotune.enabled, o.deterministic) for o in iterated]


@pytest.mark.parametrize('policy', ['stretch', 'pad', 'crop'])
def test_isic_kfold_splits_and_policies(isic, policy):
  data_dir, info = isic
  config = _isic_config(data_dir, resize_policy=policy, normalize='none', num_folds=3, fold=1)
  train_ids, val_ids = folds.kfold_split(info['ids']['train'], 3, 1, 0)
  assert input_pipeline.num_examples(config, 'train') == len(train_ids) == 4
  assert input_pipeline.num_examples(config, 'val') == len(val_ids) == 2
  np.testing.assert_array_equal(_valid_images(_eval(config)), _expected(info, val_ids, policy))
  np.testing.assert_array_equal(
    _valid_images(_eval(config, 'test')), _expected(info, info['ids']['test'], policy)
  )
  (batch,) = _train(config, 1)
  assert batch['image'].shape == (4, SIZE, SIZE, 3) and set(np.unique(batch['mask'])) <= {0, 1}
  if policy != 'crop':  # One epoch = the 4 training examples, in some order.
    want = _expected(info, train_ids, policy)
    assert sorted(x.astype(np.float32).tobytes() for x in batch['image']) == sorted(x.tobytes() for x in want)


def test_isic_official_validation_split(isic):
  data_dir, info = isic
  config = _isic_config(data_dir, val_split='validation', normalize='none')
  assert input_pipeline.num_examples(config, 'train') == 6
  assert input_pipeline.num_examples(config, 'val') == 2
  np.testing.assert_array_equal(
    _valid_images(_eval(config)), _expected(info, info['ids']['validation'], 'stretch')
  )
  with pytest.raises(ValueError, match=r'config\.data\.val_split'):
    input_pipeline.num_examples(_isic_config(data_dir, val_split='official'), 'val')


def test_isic_processes_split_disjointly(isic):
  data_dir, info = isic
  config = _isic_config(data_dir, normalize='none', val_split='validation')
  per_process = [_eval(config, 'train', process_index=p, process_count=2) for p in range(2)]
  union = np.concatenate([_valid_images(bs) for bs in per_process])
  np.testing.assert_array_equal(union, _expected(info, info['ids']['train'], 'stretch'))


def test_test_split_needs_isic():
  with pytest.raises(ValueError, match=r"split='test'.*config\.data\.source='isic'"):
    input_pipeline.num_examples(_config(), 'test')


# ---- synthetic source as data -----------------------------------------------------------------


def test_synthetic_validation_is_fixed_by_the_data_seed_not_the_run_seed():
  from unet_jax import evaluation

  runs = [_config(), _config()]
  runs[1].seed = 7  # Another run seed: other init, order, augmentation; the same data.
  np.testing.assert_array_equal(_valid_images(_eval(runs[0])), _valid_images(_eval(runs[1])))
  assert evaluation.split_ids(runs[0], 'val') == evaluation.split_ids(runs[1], 'val')
  other_data = _config(synthetic_seed=1)
  assert not np.array_equal(_valid_images(_eval(runs[0])), _valid_images(_eval(other_data)))


def test_synthetic_folds_partition_the_examples_like_a_folder():
  seen = []
  for fold in range(3):
    config = _config(fold=fold)
    val = input_pipeline.synthetic_indices(config.data, 'val')
    train = input_pipeline.synthetic_indices(config.data, 'train')
    assert sorted(val + train) == list(range(20)) and not set(val) & set(train)
    seen += val
    # The pipeline's validation images are those examples, drawn at synthetic_size and resized.
    want = [synthetic.make_example(0, k, 40, 40)[0] for k in val]
    got = _valid_images(_eval(_config(fold=fold, normalize='none', resize_policy='stretch')))
    assert len(got) == len(want)
    for image, source in zip(got, want, strict=True):
      ref = tf.image.resize(source.astype(np.float32), [SIZE, SIZE], antialias=True).numpy()
      assert np.abs(image - np.round(ref)).max() <= 1
  assert sorted(seen) == list(range(20))
