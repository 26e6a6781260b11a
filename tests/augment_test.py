"""Tests for unet_jax.augment, against numpy's flips/rotations and TensorFlow's bilinear resize."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from configs import default
from unet_jax import augment, normalization

SIZE = 32


def _settings(**overrides):
  config = default.get_config().augment
  for name, value in overrides.items():
    setattr(config, name, value)
  return augment.settings_from_config(config)


def _geometric_only(**overrides):
  return _settings(brightness=0.0, contrast=0.0, hue=0.0, **overrides)


def _blob() -> np.ndarray:
  """An off-centre ellipse plus a bar: asymmetric, so no flip or rotation maps it to itself."""
  y, x = np.mgrid[:SIZE, :SIZE] + 0.5
  ellipse = ((y - 11) / 8) ** 2 + ((x - 20) / 5) ** 2 < 1
  bar = (y > 24) & (y < 28) & (x > 3) & (x < 14)
  return (ellipse | bar).astype(np.uint8)[..., None]


def _image(seed=0, low=0, high=256) -> np.ndarray:
  return np.random.default_rng(seed).integers(low, high, (SIZE, SIZE, 3)).astype(np.uint8)


def _one(key, image, mask, settings):
  """Augments one example through the batched entry point."""
  images, masks = augment.augment_batch(key[None], image[None], mask[None], settings)
  return np.asarray(images[0]), np.asarray(masks[0])


def _dihedral(x):
  """The 8 rotations/reflections of an [S, S, C] array, by numpy."""
  rotations = [np.rot90(x, k) for k in range(4)]
  return rotations + [r[:, ::-1] for r in rotations]


def _index_in(x, candidates):
  matches = [i for i, c in enumerate(candidates) if np.array_equal(x, c)]
  assert len(matches) == 1, matches
  return matches[0]


def test_disabled_returns_inputs_as_float():
  image, mask = _image(), _blob()
  out_image, out_mask = _one(jax.random.key(0), image, mask, _settings(enabled=False))
  assert out_image.dtype == out_mask.dtype == np.float32
  np.testing.assert_array_equal(out_image, image)
  np.testing.assert_array_equal(out_mask, mask)


def test_flips_and_rot90_are_exact_dihedral_moves_of_image_and_mask_together():
  image, mask = _image(1), _blob()
  image_moves = [m.astype(np.float32) for m in _dihedral(image)]
  mask_moves = [m.astype(np.float32) for m in _dihedral(mask)]
  seen = set()
  for s in range(48):
    out_image, out_mask = _one(jax.random.key(s), image, mask, _geometric_only(min_scale=1.0))
    move = _index_in(out_image, image_moves)
    np.testing.assert_array_equal(out_mask, mask_moves[move])  # The same move for both.
    seen.add(move)
  assert seen == set(range(8))


@pytest.mark.parametrize(('flip', 'rot90', 'allowed'),
                         [(False, True, {0, 1, 2, 3}), (True, False, {0, 2, 4, 6}),
                          (False, False, {0})])
def test_each_geometric_switch_allows_only_its_moves(flip, rot90, allowed):
  # np.rot90(x, 2)[:, ::-1] (index 6) is the vertical flip; index 4 the horizontal one.
  image, mask = _image(2), _blob()
  moves = [m.astype(np.float32) for m in _dihedral(image)]
  settings = _geometric_only(min_scale=1.0, flip=flip, rot90=rot90)
  seen = {_index_in(_one(jax.random.key(s), image, mask, settings)[0], moves) for s in range(32)}
  assert seen == allowed


def test_crop_equals_tf_resize_of_the_drawn_box():
  image, mask = _image(3), _blob()
  settings = _geometric_only(min_scale=0.3, flip=False, rot90=False)
  areas = []
  for s in range(12):
    key = jax.random.key(s)
    d = augment.draw(key, settings, SIZE)
    top, left, h, w = (int(v) for v in (d.top, d.left, d.height, d.width))
    assert min(top, left) >= 0 and max(top + h, left + w) <= SIZE
    areas.append(h * w / SIZE**2)
    out_image, out_mask = augment.apply(d, image, mask, settings)
    box = np.concatenate([image, mask], -1)[top:top + h, left:left + w].astype(np.float32)
    want = tf.image.resize(box, [SIZE, SIZE], method='bilinear').numpy()
    np.testing.assert_allclose(out_image, want[..., :3], atol=2e-3)
    np.testing.assert_array_equal(out_mask, (want[..., 3:] > 0.5).astype(np.float32))
  # Areas drawn from [0.3, 1] (the clipped aspect can only shrink a box slightly).
  assert min(areas) >= 0.25 and max(areas) <= 1.0 and np.std(areas) > 0.05


def test_resize_matrix_identity_and_partition_of_unity():
  identity = augment.resize_matrix(jnp.int32(0), jnp.int32(SIZE), SIZE)
  np.testing.assert_array_equal(identity, np.eye(SIZE))
  crop = augment.resize_matrix(jnp.int32(5), jnp.int32(13), SIZE)
  np.testing.assert_allclose(crop.sum(axis=1), 1.0, rtol=1e-6)
  assert not crop[:, :5].any() and not crop[:, 18:].any()  # Only the box's pixels are read.


def test_all_parts_keep_shapes_ranges_and_binary_mask():
  images = np.stack([_image(s) for s in range(6)])
  masks = np.stack([_blob()] * 6)
  keys = augment.example_keys(0, jnp.int32(7), jnp.int32(0), 6)
  out_images, out_masks = augment.augment_batch(keys, images, masks, _settings(min_scale=0.5))
  assert out_images.shape == images.shape and out_images.dtype == jnp.float32
  assert out_masks.shape == masks.shape and out_masks.dtype == jnp.float32
  assert float(out_images.min()) >= 0.0 and float(out_images.max()) <= 255.0
  assert set(np.unique(out_masks)) <= {0.0, 1.0}
  # Each example its own draw: no two outputs alike.
  assert len({np.asarray(x).tobytes() for x in out_masks}) == 6


def _colour(d_fields, image):
  d = augment.draw(jax.random.key(0), _settings(), SIZE)._replace(
    top=jnp.int32(0), left=jnp.int32(0), height=jnp.int32(SIZE), width=jnp.int32(SIZE),
    transpose=jnp.bool_(False), flip_rows=jnp.bool_(False), flip_cols=jnp.bool_(False),
    brightness=jnp.float32(0.0), contrast=jnp.float32(1.0), hue=jnp.float32(0.0))
  d = d._replace(**{k: jnp.float32(v) for k, v in d_fields.items()})
  out, mask = augment.apply(d, image, _blob(), _settings())
  np.testing.assert_array_equal(mask, _blob())  # Colour never touches the mask.
  return np.asarray(out, np.float64)


def test_brightness_adds_and_contrast_scales_around_the_channel_means():
  image = _image(4, 60, 190)
  x = image.astype(np.float64)
  np.testing.assert_allclose(_colour({'brightness': 12.5}, image), x + 12.5, atol=1e-3)
  mean = x.mean(axis=(0, 1))
  np.testing.assert_allclose(_colour({'contrast': 0.8}, image), mean + 0.8 * (x - mean),
                             atol=1e-3)


def test_hue_rotates_chroma_and_keeps_luma_and_greys():
  image = _image(5, 60, 190)
  out = _colour({'hue': 0.5}, image)
  yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
  before, after = image.astype(np.float64) @ yiq.T, out @ yiq.T
  np.testing.assert_allclose(after[..., 0], before[..., 0], atol=1e-3)  # Luma kept.
  chroma = np.linalg.norm(before[..., 1:], axis=-1)
  np.testing.assert_allclose(np.linalg.norm(after[..., 1:], axis=-1), chroma, atol=1e-3)
  angle = np.angle((after[..., 1] + 1j * after[..., 2]) / (before[..., 1] + 1j * before[..., 2]))
  np.testing.assert_allclose(angle[chroma > 5], 0.5, atol=1e-3)  # The drawn angle, radians.
  grey = np.full((SIZE, SIZE, 3), 100, np.uint8)
  np.testing.assert_allclose(_colour({'hue': 1.0}, grey), 100.0, atol=1e-3)


def test_colour_draws_stay_in_their_ranges():
  settings = _settings(brightness=0.1, contrast=0.2, hue=0.02)
  draws = [augment.draw(jax.random.key(s), settings, SIZE) for s in range(64)]
  b = np.array([float(d.brightness) for d in draws])
  c = np.array([float(d.contrast) for d in draws])
  h = np.array([float(d.hue) for d in draws])
  assert np.abs(b).max() <= 25.5 and np.abs(b).max() > 15
  assert c.min() >= 0.8 and c.max() <= 1.2 and c.std() > 0.05
  assert np.abs(h).max() <= 0.02 * 2 * np.pi and h.std() > 0
  off = augment.draw(jax.random.key(0), _settings(brightness=0.0, contrast=0.0, hue=0.0), SIZE)
  assert (float(off.brightness), float(off.contrast), float(off.hue)) == (0.0, 1.0, 0.0)


def test_keys_follow_seed_step_and_global_position():
  keys = jax.random.key_data(augment.example_keys(0, jnp.int32(3), jnp.int32(0), 8))
  # A device holding examples 4..7 gets the same keys as one device holding all 8.
  shard = jax.random.key_data(augment.example_keys(0, jnp.int32(3), jnp.int32(4), 4))
  np.testing.assert_array_equal(keys[4:], shard)
  assert len({k.tobytes() for k in np.asarray(keys)}) == 8
  for other in (augment.example_keys(0, jnp.int32(4), jnp.int32(0), 8),
                augment.example_keys(1, jnp.int32(3), jnp.int32(0), 8)):
    assert not np.array_equal(jax.random.key_data(other), keys)


@pytest.mark.parametrize(('mode', 'low', 'high'),
                         [('none', 0.0, 255.0), ('unit', 0.0, 1.0), ('imagenet', -2.2, 2.7)])
def test_preprocess_augments_and_normalizes_under_jit(mode, low, high):
  config = default.get_config()
  batch = {'image': np.stack([_image(s) for s in range(4)]), 'mask': np.stack([_blob()] * 4)}
  preprocess = augment.make_preprocess(config.augment, mode, config.seed)
  out = jax.jit(preprocess)(batch, jnp.int32(0), jnp.int32(0))
  assert out['image'].dtype == out['mask'].dtype == jnp.float32
  assert low <= float(out['image'].min()) and float(out['image'].max()) <= high
  raw, _ = augment.augment_batch(augment.example_keys(config.seed, 0, 0, 4), batch['image'],
                                 batch['mask'], augment.settings_from_config(config.augment))
  np.testing.assert_allclose(out['image'], normalization.normalize(np.asarray(raw), mode),
                             rtol=1e-5, atol=1e-5)
  again = jax.jit(preprocess)(batch, jnp.int32(0), jnp.int32(0))
  np.testing.assert_array_equal(out['image'], again['image'])
  later = jax.jit(preprocess)(batch, jnp.int32(1), jnp.int32(0))
  assert not np.array_equal(out['image'], later['image'])


@pytest.mark.parametrize(('field', 'value'),
                         [('contrast', 1.5), ('hue', 0.6), ('brightness', -0.1),
                          ('min_scale', 1.5)])
def test_invalid_settings_name_the_field(field, value):
  with pytest.raises(ValueError, match=f'config.augment.{field}'):
    _settings(**{field: value})


def test_invalid_normalize_names_the_field():
  with pytest.raises(ValueError, match=r'config\.data\.normalize.*imagenet'):
    normalization.normalize(np.zeros(3), 'standard')
  with pytest.raises(ValueError, match=r'config\.data\.normalize'):
    augment.make_preprocess(default.get_config().augment, 'standard', 0)


def test_normalize_numpy_tf_and_jax_agree():
  x = np.array([[0.0, 127.5, 255.0]], np.float32).repeat(3, 0).T[None]  # [1, 3, 3]
  mean = np.array([0.485, 0.456, 0.406], np.float32)
  std = np.array([0.229, 0.224, 0.225], np.float32)
  expected = {'none': x, 'unit': x / 255.0, 'imagenet': (x / 255.0 - mean) / std}
  for mode, want in expected.items():
    np.testing.assert_allclose(normalization.normalize(x, mode), want, rtol=1e-6)
    np.testing.assert_allclose(
      normalization.normalize(tf.constant(x), mode).numpy(), want, rtol=1e-6
    )
    np.testing.assert_allclose(normalization.normalize(jnp.asarray(x), mode), want, rtol=1e-6)
  assert normalization.normalize(x.astype(np.uint8), 'unit').dtype == np.float32

