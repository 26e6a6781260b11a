"""One preprocessing path: the model sees the same pixels in training, validation and predict.

Real-layout JPEG photos of several sizes (decoded whole and at libjpeg's 1/2, 1/4 and 1/8
scales) go through the folder source's tf.data pipeline and through `predict`'s path
(`photos.read_photo` + `resize_policy.model_inputs`); under every resize policy the training
inputs (unaugmented) are exactly predict's tiles ('crop': a window of predict's resized canvas,
and validation's central window of it). An independent reference built from TensorFlow's own
primitives (libjpeg's scaled decode, `tf.image.resize`) pins what those pixels are.
"""

import numpy as np
import pytest
import tensorflow as tf

from configs import default
from unet_jax import folds, input_pipeline, photos, resize_policy, synthetic

S = 16
# (height, width) -> libjpeg ratio at S = 16: 1, 2, 4, 8; portrait and landscape.
SIZES = ((20, 26), (52, 40), (70, 96), (170, 130))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('photos'))
  ids = synthetic.write_folder(root, num=8, seed=3, sizes=SIZES)
  return root, [f'ISIC_{i}' for i in ids]


def _config(root, policy):
  config = default.get_config()
  config.data.source = 'folder'
  config.data.dir = root
  config.data.image_size = S
  config.data.resize_policy = policy
  config.data.num_folds = 2
  config.batch_size = 4
  config.eval.batch_size = 4
  config.augment.enabled = False
  return config


def _predict_inputs(root, ident, policy):
  """predict's tiles and placement for one photo file."""
  path = f'{root}/ISIC2018_Task1-2_Training_Input/{ident}.jpg'
  image, native = photos.read_photo(path, S)
  return resize_policy.model_inputs(image, S, policy, native)


def _canvas(tiles, placement):
  """The 'crop' policy's resized image, put back together from predict's tiles."""
  canvas = np.zeros((placement.resized_height, placement.resized_width, 3), np.float32)
  for tile, (top, left) in zip(tiles, placement.offsets, strict=True):
    canvas[top:top + S, left:left + S] = tile
  return canvas


def test_decoding_uses_libjpegs_scale_and_keeps_the_native_size(folder):
  root, ids = folder
  for k, ident in enumerate(ids[:4]):
    height, width = SIZES[k]
    path = f'{root}/ISIC2018_Task1-2_Training_Input/{ident}.jpg'
    image, native = photos.read_photo(path, S)
    ratio = (1, 2, 4, 8)[k]
    assert photos.jpeg_ratio(height, width, S) == ratio and native == (height, width)
    direct = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, ratio=ratio).numpy()
    np.testing.assert_array_equal(image, direct)
    # Inside a tf.data graph (the folder source), the same pixels.
    graph = tf.data.Dataset.from_tensors(path).map(
      lambda p: photos.decode_photo(tf.io.read_file(p), S)[0])
    np.testing.assert_array_equal(next(graph.as_numpy_iterator()), image)


def test_stretch_inputs_equal_an_independent_resize(folder):
  root, ids = folder
  for k, ident in enumerate(ids[:4]):
    path = f'{root}/ISIC2018_Task1-2_Training_Input/{ident}.jpg'
    decoded = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, ratio=(1, 2, 4, 8)[k])
    want = tf.image.resize(tf.cast(decoded, tf.float32), [S, S], 'bilinear', antialias=True)
    want = np.round(np.clip(want.numpy(), 0, 255))
    tiles, _ = _predict_inputs(root, ident, 'stretch')
    np.testing.assert_array_equal(tiles[0], want)


@pytest.mark.parametrize('policy', resize_policy.POLICIES)
def test_training_and_validation_inputs_are_predicts(folder, policy):
  root, ids = folder
  config = _config(root, policy)
  train_ids, val_ids = folds.kfold_split(ids, 2, 0, config.data.split_seed)
  predicted = {i: _predict_inputs(root, i, policy) for i in ids}
  # One epoch of training: each training example once, in the epoch's order.
  batch = next(input_pipeline.train_batches(config, process_index=0, process_count=1))
  assert batch['image'].dtype == np.uint8
  unmatched = set(train_ids)
  for got in batch['image'].astype(np.float32):
    match = None
    for ident in sorted(unmatched):
      tiles, placement = predicted[ident]
      if policy != 'crop':
        if np.array_equal(got, tiles[0]):
          match = ident
      else:  # A training crop: some S x S window of predict's resized canvas.
        canvas = _canvas(tiles, placement)
        for top in range(canvas.shape[0] - S + 1):
          for left in range(canvas.shape[1] - S + 1):
            if np.array_equal(got, canvas[top:top + S, left:left + S]):
              match = ident
      if match:
        break
    assert match, 'a training input that predict would not give the model'
    unmatched.remove(match)
  # The pooled validation pass: predict's input ('crop': its canvas's central window).
  pooled = next(input_pipeline.eval_batches(config, 'val', process_index=0, process_count=1))
  for ident, got in zip(val_ids, pooled['image'], strict=False):
    tiles, placement = predicted[ident]
    want = tiles[0]
    if policy == 'crop':
      canvas = _canvas(tiles, placement)
      top, left = (canvas.shape[0] - S) // 2, (canvas.shape[1] - S) // 2
      want = canvas[top:top + S, left:left + S]
    np.testing.assert_allclose(got, want / 255.0, rtol=1e-6)  # config.data.normalize='unit'.


def test_masks_are_binarized_once_and_rethresholded_after_resizing(tmp_path):
  values = np.zeros((40, 52), np.uint8)
  values[8:30, 10:40] = 200  # Lesion: > 128.
  values[0:4, 0:4] = 128  # Not lesion: the scorer's rule is > 128.
  image = np.full((40, 52, 3), 90, np.uint8)
  tf.io.write_file(str(tmp_path / 'p.jpg'), tf.io.encode_jpeg(image))
  tf.io.write_file(str(tmp_path / 'm.png'), tf.io.encode_png(values[..., None]))
  decoded, mask, native = photos.decode_example(
    tf.io.read_file(str(tmp_path / 'p.jpg')), tf.io.read_file(str(tmp_path / 'm.png')), S)
  assert tuple(native.numpy()) == (40, 52) and decoded.shape[:2] == (20, 26)  # Ratio 2.
  assert set(np.unique(mask)) == {0, 1}
  # Reference: the binary mask's area fraction per half-size pixel, > 0.5.
  binary = (values > 128).astype(np.float32)
  area = binary.reshape(20, 2, 26, 2).mean(axis=(1, 3))
  np.testing.assert_array_equal(mask.numpy()[..., 0], (area > 0.5).astype(np.uint8))
