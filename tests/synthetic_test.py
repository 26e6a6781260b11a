"""Tests for the synthetic dermoscopy generator (`unet_jax.synthetic`).

The generator is the default dataset of the demo and the source of real-format test data, so these
check the contract the rest of the code relies on (shapes, dtypes, {0,1} masks, determinism per
(seed, index), sharding by `start`, the ISIC folder layout) and that the task stays meaningful: the
lesion is darker than the skin around it, distractors exist, and a brightness threshold alone does
not solve it.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from unet_jax import synthetic


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
  """Pixels within `width` (4-neighbour steps) outside the mask: the skin around the lesion."""
  grown = mask.copy()
  for _ in range(width):
    step = grown.copy()
    step[1:] |= grown[:-1]
    step[:-1] |= grown[1:]
    step[:, 1:] |= grown[:, :-1]
    step[:, :-1] |= grown[:, 1:]
    grown = step
  return grown & ~mask


@pytest.fixture(scope='module')
def batch():
  return synthetic.make_dataset(48, 64, 64, seed=3)


@pytest.mark.parametrize('height,width', [(48, 64), (64, 48), (33, 57), (96, 96)])
def test_shapes_dtypes_and_values(height, width):
  image, mask = synthetic.make_example(0, 1, height, width)
  assert image.shape == (height, width, 3)
  assert mask.shape == (height, width)
  assert image.dtype == np.uint8 and mask.dtype == np.uint8
  assert image.flags.c_contiguous
  assert set(np.unique(mask)) == {0, 1}
  assert image.std() > 5  # Not a blank image.


def test_deterministic_per_seed_and_index():
  a_img, a_mask = synthetic.make_example(7, 11, 40, 52)
  b_img, b_mask = synthetic.make_example(7, 11, 40, 52)
  np.testing.assert_array_equal(a_img, b_img)
  np.testing.assert_array_equal(a_mask, b_mask)
  other_index = synthetic.make_example(7, 12, 40, 52)
  other_seed = synthetic.make_example(8, 11, 40, 52)
  for img, mask in (other_index, other_seed):
    assert not np.array_equal(img, a_img)
    assert not np.array_equal(mask, a_mask)


def test_make_dataset_equals_examples_and_start_offsets():
  images, masks = synthetic.make_dataset(5, 36, 44, seed=2)
  assert images.shape == (5, 36, 44, 3) and masks.shape == (5, 36, 44)
  assert images.dtype == np.uint8 and masks.dtype == np.uint8
  for k in range(5):
    img, mask = synthetic.make_example(2, k, 36, 44)
    np.testing.assert_array_equal(images[k], img)
    np.testing.assert_array_equal(masks[k], mask)
  # A shard built from `start` equals the same slice of a whole build.
  tail_images, tail_masks = synthetic.make_dataset(3, 36, 44, seed=2, start=2)
  np.testing.assert_array_equal(tail_images, images[2:])
  np.testing.assert_array_equal(tail_masks, masks[2:])


def test_lesion_fraction(batch):
  _, masks = batch
  frac = masks.mean(axis=(1, 2))
  assert frac.min() >= 0.02, frac.min()  # Every example has a real lesion...
  assert frac.max() <= 0.8, frac.max()  # ...that never fills the image.
  assert 0.05 <= frac.mean() <= 0.35, frac.mean()
  assert frac.std() > 0.03  # Sizes vary.


def test_lesion_darker_than_surrounding_skin(batch):
  images, masks = batch
  lum = images.astype(np.float32).mean(axis=-1)
  darker = []
  for img, mask in zip(lum, masks.astype(bool), strict=True):
    ring = _ring(mask, 4)
    assert ring.any()
    darker.append(img[mask].mean() < img[ring].mean())
  assert np.mean(darker) >= 0.9, np.mean(darker)


def test_colourful_distractors_outside_lesion(batch):
  images, masks = batch
  chroma = images.max(axis=-1).astype(np.int32) - images.min(axis=-1)
  colourful = ((chroma > 120) & (masks == 0)).sum(axis=(1, 2))
  # Stickers appear on about half of the images; none is ever inside the lesion.
  assert np.mean(colourful > 10) >= 0.2
  assert ((chroma > 120) & (masks == 1)).sum() < 0.001 * masks.sum()


def test_not_solved_by_a_brightness_threshold(batch):
  """Hairs, freckles, rulers and vignette corners are dark too: a threshold must not suffice."""
  images, masks = batch
  lum = images.astype(np.float32).mean(axis=-1)
  target = masks.astype(bool)
  best = 0.0
  for t in range(30, 230, 10):
    pred = lum < t
    iou = (pred & target).sum((1, 2)) / np.maximum((pred | target).sum((1, 2)), 1)
    best = max(best, float(iou.mean()))
  assert 0.3 < best < 0.8, best


def test_same_scene_at_every_resolution():
  """Parameters are drawn in size-independent units, so a larger render is the same lesion."""
  for index in range(4):
    _, small = synthetic.make_example(5, index, 48, 64)
    _, large = synthetic.make_example(5, index, 96, 128)
    pooled = large.reshape(48, 2, 64, 2).mean(axis=(1, 3)) >= 0.5
    iou = (pooled & (small == 1)).sum() / max((pooled | (small == 1)).sum(), 1)
    assert iou > 0.9, (index, iou)


def test_import_needs_neither_tensorflow_nor_jax():
  code = (
    'import sys, unet_jax.synthetic; '
    "bad = [m for m in ('tensorflow', 'jax') if m in sys.modules]; "
    'assert not bad, bad'
  )
  # The repo root on PYTHONPATH so the check also works without an installed package.
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.pathsep.join(p for p in (root, os.environ.get('PYTHONPATH')) if p)
  env = {**os.environ, 'PYTHONPATH': path}
  subprocess.run([sys.executable, '-c', code], check=True, timeout=60, env=env)


def test_write_folder_isic_layout(tmp_path):
  tf = pytest.importorskip('tensorflow')
  sizes = ((40, 56), (48, 48))
  ids = synthetic.write_folder(str(tmp_path), num=3, seed=4, sizes=sizes)
  assert ids == ['0000000', '0000001', '0000002']
  image_dir = tmp_path / 'ISIC2018_Task1-2_Training_Input'
  mask_dir = tmp_path / 'ISIC2018_Task1_Training_GroundTruth'
  assert sorted(os.listdir(image_dir)) == [f'ISIC_{i}.jpg' for i in ids]
  assert sorted(os.listdir(mask_dir)) == [f'ISIC_{i}_segmentation.png' for i in ids]
  for k, ident in enumerate(ids):
    image = tf.io.decode_jpeg((image_dir / f'ISIC_{ident}.jpg').read_bytes()).numpy()
    mask = tf.io.decode_png((mask_dir / f'ISIC_{ident}_segmentation.png').read_bytes()).numpy()
    height, width = sizes[k % len(sizes)]
    assert image.shape == (height, width, 3)
    assert mask.shape == (height, width, 1)
    assert set(np.unique(mask)) == {0, 255}
    expected_image, expected_mask = synthetic.make_example(4, k, height, width)
    np.testing.assert_array_equal(mask[..., 0] // 255, expected_mask)  # PNG is lossless.
    assert np.abs(image.astype(np.int32) - expected_image).mean() < 6  # JPEG q95 is close.
  leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if f.endswith('.tmp')]
  assert not leftovers
