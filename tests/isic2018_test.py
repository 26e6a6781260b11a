"""Tests for the ISIC 2018 Task 1 TFDS builder on tiny fake archives (tests/fake_isic.py)."""

import logging
import os
import re
import shutil
import subprocess
import sys

import fake_isic  # tests/fake_isic.py; pytest puts tests/ on sys.path.
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import unet_jax
from unet_jax import augment, isic2018, photos, synthetic

SIZE = 24


def _read(builder, split):
  return {x['id'].decode(): x for x in tfds.as_numpy(builder.as_dataset(split=split))}


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """A fake archive (zipped) and the dataset built from it; shared by the read-only tests."""
  root = str(tmp_path_factory.mktemp('manual'))
  info = fake_isic.make_fake_isic(root, zipped=True)
  builder = fake_isic.prepare_fake_tfds(str(tmp_path_factory.mktemp('tfds')), SIZE, info)
  return info, builder


def test_registered_on_import_without_tensorflow():
  assert isic2018.NAME in tfds.list_builders()
  builder_cls = tfds.builder_cls(isic2018.NAME)
  assert builder_cls is isic2018.Isic2018Task1
  assert '224' in [c.name for c in builder_cls.BUILDER_CONFIGS]
  assert unet_jax.isic2018 is isic2018
  # Fresh interpreters: the package imports neither TensorFlow nor TFDS (half a second, for
  # commands that need neither); its builder module registers the builder, TensorFlow still
  # not imported (TFDS imports it later: to list its builders, to read a dataset).
  loaded = "print(sorted({'tensorflow', 'tensorflow_datasets'} & set(sys.modules)))"
  for code, printed in (
      (f'import sys, unet_jax; {loaded}', '[]'),
      (f'import sys, unet_jax.isic2018; {loaded}; import tensorflow_datasets as tfds; '
       "print('isic2018_task1' in tfds.list_builders())", "['tensorflow_datasets']\nTrue")):
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == printed, done.stdout + done.stderr


def test_archives_and_official_counts():
  assert isic2018.EXPECTED_COUNTS == {'train': 2594, 'validation': 100, 'test': 1000}
  assert isic2018.Isic2018Task1.EXPECTED_COUNTS == isic2018.EXPECTED_COUNTS
  assert set(isic2018.ARCHIVES) == {
    'ISIC2018_Task1-2_Training_Input',
    'ISIC2018_Task1-2_Validation_Input',
    'ISIC2018_Task1-2_Test_Input',
    'ISIC2018_Task1_Training_GroundTruth',
    'ISIC2018_Task1_Validation_GroundTruth',
    'ISIC2018_Task1_Test_GroundTruth',
  }
  for name in isic2018.ARCHIVES:
    assert f'{name}.zip' in isic2018.Isic2018Task1.MANUAL_DOWNLOAD_INSTRUCTIONS


@pytest.mark.parametrize(
  ('height', 'width', 'size', 'ratio'),
  [(2848, 4288, 256, 8), (2848, 4288, 384, 4), (768, 1024, 256, 2), (767, 1024, 384, 2),
   (766, 1024, 384, 1), (1020, 1024, 256, 2), (1024, 1021, 256, 4), (100, 50, 64, 1)],
)
def test_jpeg_ratio_keeps_short_side_at_least_size(height, width, size, ratio):
  assert photos.jpeg_ratio(height, width, size) == ratio
  assert -(-min(height, width) // ratio) >= size or ratio == 1


def test_jpeg_ratio_matches_libjpeg_output(tmp_path):
  image, _ = synthetic.make_example(0, 0, 100, 75)
  path = str(tmp_path / 'photo.jpg')
  tf.io.write_file(path, tf.io.encode_jpeg(image))
  for size, shape in ((10, (13, 10)), (12, (25, 19)), (19, (25, 19)), (20, (50, 38)), (40, None),
                      (None, None)):
    decoded, original = photos.read_photo(path, size)
    assert original == (100, 75)
    assert decoded.shape[:2] == (shape or (100, 75))  # ceil(side / ratio), short side >= size.
    # libjpeg's own scaled decode, asked for directly: the same pixels.
    ratio = {None: 1, (13, 10): 8, (25, 19): 4, (50, 38): 2}[shape]
    direct = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, ratio=ratio).numpy()
    np.testing.assert_array_equal(decoded, direct)


def test_splits_ids_and_sizes(prepared):
  info, builder = prepared
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
    'train': 6, 'validation': 2, 'test': 2
  }
  ratios = set()
  for split, ids in info['ids'].items():
    examples = _read(builder, split)
    assert sorted(examples) == ids
    for ident, x in examples.items():
      height, width = info['sizes'][ident]
      assert (x['height'], x['width']) == (height, width)
      ratio = photos.jpeg_ratio(height, width, SIZE)  # The stored image is libjpeg's decode.
      target = (-(-height // ratio), -(-width // ratio))
      ratios.add(ratio)
      assert min(target) >= SIZE
      assert x['image'].shape == (*target, 3) and x['mask'].shape == (*target, 1)
      assert set(np.unique(x['mask'])) <= {0, 255}
  assert ratios == {1, 2}  # Both paths: decoded whole, and at libjpeg's half scale.


def test_examples_match_the_source_files(prepared):
  info, builder = prepared
  for ident, x in _read(builder, 'train').items():
    k = int(ident[5:])
    image, mask = synthetic.make_example(fake_isic.SEED, k, *info['sizes'][ident])
    # The native mask is the ground truth PNG, exactly (0/255).
    np.testing.assert_array_equal(x['mask_native'][..., 0], mask * 255)
    # The stored mask is the native one resized (area kept) to the stored size.
    want = tf.image.resize(mask[..., None].astype(np.float32), x['mask'].shape[:2], antialias=True)
    np.testing.assert_array_equal(x['mask'] > 128, want.numpy() > 0.5)
    # The stored image is the photo (through JPEG) resized: close on average, not identical.
    ref = tf.image.resize(image.astype(np.float32), x['image'].shape[:2], antialias=True)
    assert np.abs(x['image'] - ref.numpy()).mean() < 6.0


def test_unpacked_folders_build_the_same_dataset(prepared, tmp_path):
  _, builder = prepared
  unpacked = fake_isic.make_fake_isic(str(tmp_path / 'manual'), zipped=False)
  other = fake_isic.prepare_fake_tfds(str(tmp_path / 'tfds'), SIZE, unpacked)
  for split in ('train', 'test'):
    a, b = _read(builder, split), _read(other, split)
    assert a.keys() == b.keys()
    for ident in a:
      for key in ('image', 'mask', 'mask_native', 'height', 'width'):
        np.testing.assert_array_equal(a[ident][key], b[ident][key], err_msg=f'{ident} {key}')


def _build_error(tmp_path, monkeypatch, **fake):
  info = fake_isic.make_fake_isic(str(tmp_path / 'manual'), **fake)
  return info, lambda: fake_isic.prepare_fake_tfds(
    str(tmp_path / 'tfds'), SIZE, info, monkeypatch=monkeypatch
  )


def test_corrupt_image_names_the_file(tmp_path, monkeypatch):
  info, build = _build_error(tmp_path, monkeypatch, zipped=True, corrupt=[3])
  with pytest.raises(ValueError, match=r'Cannot decode image .*ISIC_0000003\.jpg'):
    build()
  assert info['corrupt'] == ['ISIC2018_Task1-2_Training_Input/ISIC_0000003.jpg']


def test_image_without_mask_names_both_files(tmp_path, monkeypatch):
  _, build = _build_error(tmp_path, monkeypatch, missing_mask=[2])
  with pytest.raises(FileNotFoundError, match=r'ISIC_0000002\.jpg.*ISIC_0000002_segmentation\.png'):
    build()


def test_mask_without_image_names_the_file(tmp_path, monkeypatch):
  info, build = _build_error(tmp_path, monkeypatch)
  os.remove(os.path.join(info['root'], 'ISIC2018_Task1-2_Test_Input', 'ISIC_0016001.jpg'))
  with pytest.raises(FileNotFoundError, match=r'mask.*ISIC_0016001_segmentation\.png.*no image'
                     r'|ISIC_0016001_segmentation\.png.*expects.*ISIC_0016001\.jpg'):
    build()


def test_mask_of_another_size_names_both_files(tmp_path, monkeypatch):
  info, build = _build_error(tmp_path, monkeypatch)
  path = os.path.join(
    info['root'], 'ISIC2018_Task1_Validation_GroundTruth', 'ISIC_0012001_segmentation.png'
  )
  tf.io.write_file(path, tf.io.encode_png(np.zeros([10, 12, 1], np.uint8)))
  with pytest.raises(ValueError, match=r'ISIC_0012001_segmentation\.png.*10x12.*ISIC_0012001\.jpg'):
    build()


def test_wrong_split_size_is_an_error(tmp_path, monkeypatch):
  info = fake_isic.make_fake_isic(str(tmp_path / 'manual'))
  builder = isic2018.Isic2018Task1(config=isic2018.builder_config(SIZE), data_dir=str(tmp_path))
  with pytest.raises(ValueError, match=r"'train' should have 2594 images, found 6"):
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=info['root'])
    )


def test_missing_archives_list_what_is_expected_and_where(tmp_path, monkeypatch):
  manual = tmp_path / 'manual'
  fake_isic.make_fake_isic(str(manual), counts={'Training': 2})  # No validation or test.

  def offline(self, urls):
    raise ConnectionError('no network')

  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract', offline)
  monkeypatch.setattr(isic2018, '_unreachable', lambda url: None)  # The host answers; then no.
  builder = isic2018.Isic2018Task1(config=isic2018.builder_config(SIZE), data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError) as error:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
  message = str(error.value)
  assert 'no network' in message and str(manual) in message
  for part in ('Validation', 'Test'):
    for name in (isic2018.input_name(part), isic2018.truth_name(part)):
      assert f'{name}.zip' in message and f'{isic2018.URL}{name}.zip' in message
  assert 'Training' not in message


def test_without_network_no_download_is_tried(tmp_path, monkeypatch):
  """Offline, the archives' host does not resolve: the error comes at once, not after TFDS has
  retried every download for minutes (measured: 3.6 min before this check)."""
  import socket

  def unresolvable(address, timeout=None):
    raise socket.gaierror(-2, 'Name or service not known')

  def download(self, urls):
    raise AssertionError('a download was tried without network')

  for name in ('HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy'):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr(socket, 'create_connection', unresolvable)
  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract', download)
  builder = isic2018.Isic2018Task1(config=isic2018.builder_config(SIZE), data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r'cannot reach isic-challenge-data\.s3\.amazonaws'
                     r'\.com: .*Name or service not known'):
    builder.download_and_prepare()
  # Behind a proxy the host is not asked directly: the download is left to try.
  monkeypatch.setenv('HTTPS_PROXY', 'http://proxy.example:3128')
  with pytest.raises(FileNotFoundError, match='a download was tried without network'):
    builder.download_and_prepare()


def test_non_binary_mask_is_binarized_at_128(tmp_path):
  path = str(tmp_path / 'm.png')
  values = np.array([[0, 128, 129, 255]], np.uint8)[..., None]
  tf.io.write_file(path, tf.io.encode_png(values))
  png = isic2018.decode_mask_native(path)
  np.testing.assert_array_equal(tf.io.decode_png(png).numpy()[0, :, 0], [0, 0, 255, 255])
  mask = photos.decode_mask(tf.io.read_file(path))
  np.testing.assert_array_equal(mask.numpy()[0, :, 0], [0, 0, 1, 1])
  assert re.fullmatch(r'\d+', isic2018.builder_config(40).name)


# ---- the configs that read ISIC data ------------------------------------------------------


@pytest.mark.parametrize('name', ['seed', 'isic2018', 'isic_folder', 'isic_folder_tiny'])
def test_isic_configs_yield_batches(name, prepared, tmp_path):
  """Each shipped ISIC config builds and its pipeline yields a batch (at a tiny size)."""
  import importlib

  from unet_jax import input_pipeline

  _, builder = prepared
  config = importlib.import_module(f'configs.{name}').get_config()
  config.data.image_size = SIZE
  config.batch_size = config.eval.batch_size = 2
  if config.data.source == 'isic':
    config.data.tfds_data_dir = str(builder.data_dir_root)
  else:
    unpacked = fake_isic.make_fake_isic(str(tmp_path), counts={'Training': 6})
    config.data.dir = unpacked['root']
  assert config.data.num_folds == 5 and config.data.fold == 0
  batch = next(input_pipeline.train_batches(config, process_index=0, process_count=1))
  assert batch['image'].shape == (2, SIZE, SIZE, 3)
  assert input_pipeline.num_examples(config, 'val') == 2  # Fold 0 of 5 of 6 examples.
  assert batch['image'].dtype == np.uint8  # Raw pixels; the train step normalizes them.
  inputs = augment.make_preprocess(config.augment, config.data.normalize, config.seed)(
    batch, 0, 0)
  if name == 'seed':
    assert config.data.resize_policy == 'stretch' and config.data.normalize == 'none'
    # The notebook's inputs: raw 0..255, unaugmented.
    np.testing.assert_array_equal(inputs['image'], batch['image'].astype(np.float32))


def test_prepare_command_builds_the_dataset(tmp_path, monkeypatch):
  from unet_jax import prepare_isic

  info = fake_isic.make_fake_isic(str(tmp_path / 'manual'), zipped=True)
  monkeypatch.setattr(isic2018.Isic2018Task1, 'EXPECTED_COUNTS',
                      {split: len(ids) for split, ids in info['ids'].items()})
  lines = prepare_isic.prepare([SIZE], manual_dir=info['root'], data_dir=str(tmp_path / 'tfds'))
  assert len(lines) == 1 and lines[0].startswith(f'{isic2018.NAME}/{SIZE} prepared')
  builder = tfds.builder(isic2018.NAME, config=isic2018.builder_config(SIZE),
                         data_dir=str(tmp_path / 'tfds'))
  assert builder.is_prepared()
  assert builder.info.splits['train'].num_examples == len(info['ids']['train'])


def test_a_failed_preparation_leaves_no_folder_it_made_but_keeps_what_it_fetched(
    tmp_path, monkeypatch, caplog):
  from unet_jax import prepare_isic

  # No archive and no network, into a data dir that did not exist: nothing of it is left.
  monkeypatch.setattr(isic2018, '_unreachable', lambda url: 'offline')
  (tmp_path / 'empty_manual').mkdir()
  with pytest.raises(FileNotFoundError, match='could not download 6 archive'):
    prepare_isic.prepare([SIZE], manual_dir=str(tmp_path / 'empty_manual'),
                         data_dir=str(tmp_path / 'fresh'))
  assert not (tmp_path / 'fresh').exists()
  # An unreadable photo, into a data dir that holds another dataset: that dataset is untouched,
  # no folder of this one is left, and the extracted archives stay for the next try.
  info = fake_isic.make_fake_isic(str(tmp_path / 'manual'), zipped=True, corrupt=[3])
  monkeypatch.setattr(isic2018.Isic2018Task1, 'EXPECTED_COUNTS',
                      {split: len(ids) for split, ids in info['ids'].items()})
  other = tmp_path / 'tfds' / 'other_dataset' / '1.0.0'
  other.mkdir(parents=True)
  (tmp_path / 'tfds' / 'other_dataset' / 'empty_before').mkdir()
  with pytest.raises(ValueError, match=r'ISIC_0000003\.jpg'):
    prepare_isic.prepare([SIZE], manual_dir=info['root'], data_dir=str(tmp_path / 'tfds'))
  assert not (tmp_path / 'tfds' / isic2018.NAME).exists()
  # A preparation killed midway (kill -9: TFDS cannot remove its folder) is removed, named with
  # its size, by the next preparation, which holds the lock every preparation takes.
  killed = tmp_path / 'tfds' / isic2018.NAME / str(SIZE) / 'incomplete.AB12CD_2.0.0'
  killed.mkdir(parents=True)
  (killed / 'train.tfrecord-00000').write_bytes(b'x' * 30_000_000)
  with caplog.at_level('WARNING'), pytest.raises(ValueError, match=r'ISIC_0000003\.jpg'):
    prepare_isic.prepare([SIZE], manual_dir=info['root'], data_dir=str(tmp_path / 'tfds'))
  assert not killed.exists()
  assert any(f'Removing {killed} (0.03 GB): the folder of a preparation that was killed'
             in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
  shutil.rmtree(tmp_path / 'tfds' / isic2018.NAME)
  assert other.is_dir() and (tmp_path / 'tfds' / 'other_dataset' / 'empty_before').is_dir()
  empty = [folder for folder, subfolders, files in os.walk(tmp_path / 'tfds' / 'downloads')
           if not subfolders and not files]
  assert empty == []
  extracted = [name for _, _, files in os.walk(tmp_path / 'tfds' / 'downloads') for name in files]
  assert 'ISIC_0000001.jpg' in extracted


def test_preparations_at_once_take_turns_and_the_later_reads_what_the_first_wrote(
    tmp_path, monkeypatch, caplog):
  """Two runs that need the dataset at once: the first prepares it, the second waits for its
  lock (saying whom it waits for), then reads the dataset the first wrote, through the builder
  it made before there was one. Two threads here, each with its own open file, which flock
  excludes as it excludes two processes."""
  import threading

  info = fake_isic.make_fake_isic(str(tmp_path / 'manual'), zipped=True)
  monkeypatch.setattr(isic2018.Isic2018Task1, 'EXPECTED_COUNTS',
                      {split: len(ids) for split, ids in info['ids'].items()})
  # The first to hold the lock prepares nothing until the other has said it waits for it.
  said = threading.Event()

  class WaitingSaid(logging.Handler):
    def emit(self, record):
      if 'Waiting for another process' in record.getMessage():
        said.set()

  prepare_example = isic2018.prepare_example
  monkeypatch.setattr(isic2018, 'prepare_example',
                      lambda *args: (said.wait(20), prepare_example(*args))[1])
  data_dir = str(tmp_path / 'tfds')
  builders = [isic2018.Isic2018Task1(config=isic2018.builder_config(SIZE), data_dir=data_dir)
              for _ in range(2)]
  assert not any(b.is_prepared() for b in builders)
  download = tfds.download.DownloadConfig(manual_dir=info['root'])
  errors = []

  def prepare(builder):
    try:
      isic2018.download_and_prepare(builder, download)
    except Exception as error:  # Raised again below, in the test's thread.
      errors.append(error)

  threads = [threading.Thread(target=prepare, args=(b,)) for b in builders]
  handler = WaitingSaid()
  logging.getLogger('absl').addHandler(handler)
  try:
    with caplog.at_level('INFO'):
      for thread in threads:
        thread.start()
      for thread in threads:
        thread.join(timeout=300)
  finally:
    logging.getLogger('absl').removeHandler(handler)
  assert said.is_set()
  assert errors == []
  messages = [r.getMessage() for r in caplog.records]
  waited = [m for m in messages if 'Waiting for another process' in m]
  assert len(waited) == 1 and f'(pid {os.getpid()} on host ' in waited[0], messages
  assert sum('was prepared by another process while this one waited' in m
             for m in messages) == 1, messages
  for builder in builders:
    assert builder.is_prepared()
    assert builder.info.splits['train'].num_examples == len(info['ids']['train'])
    assert sorted(_read(builder, 'train')) == sorted(info['ids']['train'])


def test_prepare_command_help():
  import subprocess

  result = subprocess.run([sys.executable, '-m', 'unet_jax.prepare_isic', '--help'],
                          capture_output=True, text=True, check=False, timeout=120)
  assert '--manual_dir' in result.stdout and '--size' in result.stdout
