"""Tests of the resize policies: shapes, dtypes, and that inference's inverse undoes the forward.

The round trip is the property evaluation relies on: a mask pushed through the model's geometry
and mapped back with `probs_to_native` must land where it started, so that a perfect model
scores (nearly) perfectly at native resolution under every policy.
"""

import numpy as np
import pytest
import tensorflow as tf

from unet_jax import resize_policy

SIZES = [(450, 600), (600, 450), (333, 517), (517, 333), (129, 129), (61, 97)]


def _ellipse_mask(height: int, width: int) -> np.ndarray:
  """A lesion-like blob: an off-centre ellipse plus a smaller one, uint8 0/1."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  big = ((y - 0.45 * height) / (0.3 * height)) ** 2 + ((x - 0.55 * width) / (0.28 * width)) ** 2
  small = ((y - 0.2 * height) / (0.1 * height)) ** 2 + ((x - 0.2 * width) / (0.12 * width)) ** 2
  return ((big <= 1) | (small <= 1)).astype(np.uint8)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
  return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


@pytest.mark.parametrize('policy', resize_policy.POLICIES)
@pytest.mark.parametrize('height,width', SIZES)
def test_round_trip_keeps_the_mask(policy, height, width):
  mask = _ellipse_mask(height, width)
  image = np.repeat(mask[..., None] * 255, 3, axis=-1).astype(np.uint8)
  size = 64
  tiles, placement = resize_policy.model_inputs(image, size, policy)
  native = resize_policy.probs_to_native(tiles[..., 0] / 255.0, placement)
  assert native.shape == (height, width) and native.dtype == np.float32
  assert _jaccard(native > 0.5, mask) >= 0.98


@pytest.mark.parametrize('policy', resize_policy.POLICIES)
def test_round_trip_of_the_cached_mask(policy):
  """The mask as the cache resizes it (thresholded at S) maps back onto the native mask."""
  mask = _ellipse_mask(450, 600)
  image = np.zeros((450, 600, 3), np.uint8)
  size = 96
  _, cached = resize_policy.resize_for_cache(image, mask[..., None], size, policy)
  _, placement = resize_policy.model_inputs(image, size, policy)
  cached = cached.numpy()[..., 0].astype(np.float32)
  if policy == 'crop':
    tiles = np.stack([cached[t : t + size, lf : lf + size] for t, lf in placement.offsets])
  else:
    tiles = cached[None]
  native = resize_policy.probs_to_native(tiles, placement)
  assert _jaccard(native > 0.5, mask) >= 0.98


@pytest.mark.parametrize('height,width', SIZES)
def test_resize_for_cache_shapes_and_dtypes(height, width):
  image = tf.constant(np.full((height, width, 3), 200, np.uint8))
  mask = tf.constant(_ellipse_mask(height, width)[..., None])
  for policy in resize_policy.POLICIES:
    out_image, out_mask = resize_policy.resize_for_cache(image, mask, 64, policy)
    assert out_image.dtype == tf.uint8 and out_mask.dtype == tf.uint8
    expected = resize_policy.resized_shape(height, width, 64, policy)
    if policy == 'crop':
      assert min(expected) == 64 and tuple(out_image.shape[:2]) == expected
    else:
      assert tuple(out_image.shape) == (64, 64, 3) and tuple(out_mask.shape) == (64, 64, 1)
    assert set(np.unique(out_mask.numpy())) <= {0, 1}


def test_pad_centres_content_on_zeros():
  image = tf.constant(np.full((450, 600, 3), 200, np.uint8))
  mask = tf.constant(np.ones((450, 600, 1), np.uint8))
  out_image, out_mask = resize_policy.resize_for_cache(image, mask, 64, 'pad')
  assert resize_policy.resized_shape(450, 600, 64, 'pad') == (48, 64)
  rows = np.nonzero(out_mask.numpy()[:, 0, 0])[0]
  np.testing.assert_array_equal(rows, np.arange(8, 56))  # (64 - 48) // 2 = 8 rows above.
  assert (out_image.numpy()[:8] == 0).all() and (out_image.numpy()[8:56] == 200).all()


def test_float_inputs_keep_their_dtype():
  image = tf.random.uniform([50, 70, 3], 0, 255, tf.float32)
  mask = tf.cast(tf.random.uniform([50, 70, 1]) > 0.5, tf.float32)
  out_image, out_mask = resize_policy.resize_for_cache(image, mask, 32, 'stretch')
  assert out_image.dtype == tf.float32 and out_mask.dtype == tf.float32


def test_tf_and_numpy_shapes_agree_under_tf_function():
  """The graph-mode (dynamic-shape) size arithmetic equals the numpy one."""

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def shapes(image):
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    return {p: tf.stack(resize_policy._resized_shape_tf(height, width, 64, p))
            for p in resize_policy.POLICIES}

  for height, width in [*SIZES, (64, 64), (65, 640), (640, 65), (3, 4000)]:
    got = shapes(tf.zeros([height, width, 3], tf.uint8))
    for policy in resize_policy.POLICIES:
      assert tuple(got[policy].numpy()) == resize_policy.resized_shape(height, width, 64, policy)


def test_crop_for_training_is_deterministic_and_joint():
  mask = _ellipse_mask(64, 150)
  image = tf.constant(np.repeat(mask[..., None] * 255, 3, axis=-1).astype(np.uint8))
  mask = tf.constant(mask[..., None])
  seed = tf.constant([3, 4], tf.int64)
  a_image, a_mask = resize_policy.crop_for_training(image, mask, 64, seed)
  b_image, _ = resize_policy.crop_for_training(image, mask, 64, seed)
  np.testing.assert_array_equal(a_image.numpy(), b_image.numpy())
  assert a_image.shape == (64, 64, 3) and a_mask.shape == (64, 64, 1)
  assert a_image.dtype == tf.uint8 and a_mask.dtype == tf.uint8
  np.testing.assert_array_equal(a_image.numpy()[..., 0] // 255, a_mask.numpy()[..., 0])
  many = {
    int(tf.argmax(resize_policy.crop_for_training(image, mask, 64, tf.constant([s, 0]))[1][32])[0])
    for s in range(8)
  }
  assert len(many) > 1  # Different seeds, different windows.


def test_center_crop():
  image = tf.reshape(tf.range(6 * 10), [6, 10, 1])
  out = resize_policy.center_crop(image, 4).numpy()[..., 0]
  np.testing.assert_array_equal(out, np.arange(60).reshape(6, 10)[1:5, 3:7])


def test_crop_tiles_cover_the_long_side():
  image = np.zeros((450, 1000, 3), np.uint8)
  tiles, placement = resize_policy.model_inputs(image, 64, 'crop')
  assert placement.resized_height == 64 and placement.resized_width == 142
  assert tiles.shape == (3, 64, 64, 3)
  assert [o[1] for o in placement.offsets] == [0, 39, 78]
  assert tiles.dtype == np.float32


def test_probs_to_native_checks_shapes():
  _, placement = resize_policy.model_inputs(np.zeros((30, 40, 3), np.uint8), 16, 'stretch')
  with pytest.raises(ValueError, match='placement expects'):
    resize_policy.probs_to_native(np.zeros((2, 16, 16)), placement)


def test_resize_2d_matches_tf_when_enlarging():
  values = np.random.default_rng(0).random((16, 24)).astype(np.float32)
  ours = resize_policy.resize_2d(values, 50, 70)
  theirs = tf.image.resize(values[..., None], [50, 70], 'bilinear').numpy()[..., 0]
  np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_unknown_policy():
  with pytest.raises(ValueError, match='not one of'):
    resize_policy.resized_shape(10, 10, 8, 'squash')
