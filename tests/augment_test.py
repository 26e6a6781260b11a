"""Tests for unet_jax.augment: masks stay binary and aligned with their images."""

import numpy as np
import pytest
import tensorflow as tf

from configs import default
from unet_jax import augment

SIZE = 32


def _config(**overrides):
  config = default.get_config().augment
  for name, value in overrides.items():
    setattr(config, name, value)
  return config


def _geometric_only(**overrides):
  return _config(brightness=0.0, contrast=0.0, hue=0.0, **overrides)


def _blob() -> np.ndarray:
  """An off-centre ellipse plus a bar: asymmetric, so no flip or rotation maps it to itself."""
  y, x = np.mgrid[:SIZE, :SIZE] + 0.5
  ellipse = ((y - 11) / 8) ** 2 + ((x - 20) / 5) ** 2 < 1
  bar = (y > 24) & (y < 28) & (x > 3) & (x < 14)
  return (ellipse | bar).astype(np.float32)[..., None]


def _run(image, mask, seed, config):
  out_image, out_mask = augment.augment(
    tf.constant(image, tf.float32), tf.constant(mask, tf.float32), tf.constant(seed), config, SIZE
  )
  return out_image.numpy(), out_mask.numpy()


def _mask_image(mask):
  """An image whose three channels all equal mask * 255: aligned iff it thresholds to the mask."""
  return np.repeat(mask * 255.0, 3, axis=-1)


def test_disabled_returns_inputs_unchanged():
  rng = np.random.default_rng(0)
  image = rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
  mask = _blob()
  out_image, out_mask = _run(image, mask, [1, 2], _config(enabled=False))
  np.testing.assert_array_equal(out_image, image)
  np.testing.assert_array_equal(out_mask, mask)


@pytest.mark.parametrize('seed', [[0, 0], [1, 2], [7, 99], [123, 4]])
def test_all_ops_keep_shapes_ranges_and_binary_mask(seed):
  rng = np.random.default_rng(seed[0])
  image = rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
  out_image, out_mask = _run(image, _blob(), seed, _config(min_scale=0.5))
  assert out_image.shape == (SIZE, SIZE, 3) and out_image.dtype == np.float32
  assert out_mask.shape == (SIZE, SIZE, 1) and out_mask.dtype == np.float32
  assert out_image.min() >= 0.0 and out_image.max() <= 255.0
  assert set(np.unique(out_mask)) <= {0.0, 1.0}


def test_flips_and_rot90_keep_mask_exactly_aligned():
  mask = _blob()
  config = _geometric_only(min_scale=1.0)
  seen = set()
  for s in range(16):
    out_image, out_mask = _run(_mask_image(mask), mask, [s, 3], config)
    for channel in range(3):
      np.testing.assert_array_equal(out_image[..., channel] / 255.0, out_mask[..., 0])
    assert out_mask.sum() == mask.sum()  # Flips and rotations move pixels, never drop them.
    seen.add(out_mask.tobytes())
  # The test must see the transforms happen: the asymmetric blob has 8 distinct orientations.
  assert len(seen) >= 6


def test_crop_keeps_mask_aligned():
  mask = _blob()
  config = _geometric_only(min_scale=0.4)
  changed = 0
  for s in range(16):
    out_image, out_mask = _run(_mask_image(mask), mask, [s, 5], config)
    agreement = np.mean((out_image[..., 0] > 127.5) == (out_mask[..., 0] > 0.5))
    assert agreement >= 0.98, (s, agreement)
    assert set(np.unique(out_mask)) <= {0.0, 1.0}
    changed += out_mask.sum() != mask.sum()
  assert changed >= 12  # A crop rescales the blob, which changes its area almost every time.


def test_colour_changes_image_but_never_mask():
  rng = np.random.default_rng(1)
  image = rng.uniform(30, 220, (SIZE, SIZE, 3)).astype(np.float32)
  mask = _blob()
  config = _config(flip=False, rot90=False, min_scale=1.0, brightness=0.2, contrast=0.3, hue=0.1)
  for s in range(4):
    out_image, out_mask = _run(image, mask, [s, 11], config)
    np.testing.assert_array_equal(out_mask, mask)
    assert np.abs(out_image - image).mean() > 0.5
    assert out_image.min() >= 0.0 and out_image.max() <= 255.0


def test_same_seed_same_result_and_seeds_differ():
  rng = np.random.default_rng(2)
  image = rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
  config = _config(min_scale=0.5)
  a = _run(image, _blob(), [4, 2], config)
  b = _run(image, _blob(), [4, 2], config)
  c = _run(image, _blob(), [4, 3], config)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])


def test_works_inside_tf_data_map():
  """The pipeline calls augment in graph mode with a tensor seed; shapes must stay static."""
  config = _config(min_scale=0.5)
  mask = tf.constant(_blob())
  image = tf.constant(_mask_image(_blob()))
  ds = tf.data.Dataset.range(3).map(
    lambda i: augment.augment(image, mask, tf.stack([i, i + 1]), config, SIZE)
  )
  assert ds.element_spec[0].shape == (SIZE, SIZE, 3)
  assert ds.element_spec[1].shape == (SIZE, SIZE, 1)
  assert len(list(ds)) == 3


@pytest.mark.parametrize(
  ('field', 'value'), [('contrast', 1.5), ('hue', 0.6), ('brightness', -0.1)]
)
def test_invalid_colour_settings_name_the_field(field, value):
  with pytest.raises(ValueError, match=f'config.augment.{field}'):
    _run(_mask_image(_blob()), _blob(), [0, 0], _config(**{field: value}))
