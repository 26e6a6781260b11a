"""How an image of any size becomes the model's S x S input, and how a prediction goes back.

ISIC photos range from 576 x 768 to 4288 x 2848, mostly 3:4, while the model sees S x S. A resize
*policy* picks the geometry:

- 'stretch': resize to S x S, distorting the aspect ratio (the seed notebook's choice).
- 'pad': keep the aspect, long side S, centred on an S x S canvas of zeros (the mask is 0 there).
- 'crop': keep the aspect, short side S; training takes random S x S crops of the S x L image,
  and inference covers it with overlapping S x S windows whose probabilities are averaged.

The forward ops (`resize_for_cache`, `crop_for_training`, `center_crop`) are TensorFlow, since they
run inside the tf.data pipeline. Inference goes the other way: `model_inputs` makes the tiles with
the same TF resize as the cache (so the model sees at test time exactly what it saw in training)
and returns a `Placement`; `probs_to_native` uses that placement to put the tiles' probabilities
back on the original H x W grid in numpy, so evaluation scores at native resolution as the
challenge does, never against a resized mask.

Target sizes are computed in integer arithmetic, `(2 * a * S + b) // (2 * b)` = round-half-up of
a * S / b, identically in TF and numpy, so the geometry in training and inference cannot disagree
by a pixel through float rounding.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from unet_jax import photos

POLICIES = ('stretch', 'pad', 'crop')


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where an image of `height` x `width` went in the model's tiles.

  Attributes:
    height, width: the original image size.
    policy: one of POLICIES.
    size: S, the tiles' side.
    resized_height, resized_width: the image's size after the aspect-keeping resize (S x S for
      'stretch'; long side S for 'pad'; short side S for 'crop').
    offsets: one (top, left) per tile. 'stretch': ((0, 0),). 'pad': the content box's corner
      inside the single tile. 'crop': each tile's corner inside the resized image.
  """

  height: int
  width: int
  policy: str
  size: int
  resized_height: int
  resized_width: int
  offsets: tuple[tuple[int, int], ...]

  @property
  def num_tiles(self) -> int:
    return len(self.offsets)


def check_policy(policy: str) -> None:
  if policy not in POLICIES:
    raise ValueError(f'resize policy {policy!r} is not one of {POLICIES}.')


def resized_shape(height: int, width: int, size: int, policy: str) -> tuple[int, int]:
  """(h, w) of the image after the policy's resize, before any padding or cropping (numpy/int)."""
  check_policy(policy)
  if policy == 'stretch':
    return size, size
  long_, short = max(height, width), min(height, width)
  if policy == 'pad':
    new_long, new_short = size, max(1, (2 * short * size + long_) // (2 * long_))
  else:
    new_long, new_short = max(size, (2 * long_ * size + short) // (2 * short)), size
  return (new_long, new_short) if height >= width else (new_short, new_long)


def _resized_shape_tf(height: tf.Tensor, width: tf.Tensor, size: int, policy: str):
  """`resized_shape` on dynamic TF shapes, with the same integer arithmetic."""
  height = tf.cast(height, tf.int64)
  width = tf.cast(width, tf.int64)
  size64 = tf.constant(size, tf.int64)
  if policy == 'stretch':
    return size64, size64
  long_, short = tf.maximum(height, width), tf.minimum(height, width)
  if policy == 'pad':
    new_long = size64
    new_short = tf.maximum(tf.constant(1, tf.int64), (2 * short * size + long_) // (2 * long_))
  else:
    new_long, new_short = tf.maximum(size64, (2 * long_ * size + short) // (2 * short)), size64
  tall = height >= width
  return tf.where(tall, new_long, new_short), tf.where(tall, new_short, new_long)


def _resize_image(image: tf.Tensor, shape) -> tf.Tensor:
  """Bilinear with antialiasing (downscaling multi-megapixel photos); keeps the input dtype."""
  resized = tf.image.resize(tf.cast(image, tf.float32), shape, 'bilinear', antialias=True)
  if image.dtype == tf.uint8:
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
  return tf.cast(resized, image.dtype)


def _geometry(image: tf.Tensor, size: int, policy: str, native_shape=None):
  shape = tf.shape(image, out_type=tf.int64) if native_shape is None else native_shape
  new_h, new_w = _resized_shape_tf(shape[0], shape[1], size, policy)
  new_h, new_w = tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)
  return tf.stack([new_h, new_w]), (size - new_h) // 2, (size - new_w) // 2


def resize_for_cache(
  image: tf.Tensor, mask: tf.Tensor, size: int, policy: str, native_shape=None
) -> tuple[tf.Tensor, tf.Tensor]:
  """Resizes one example once, before the cache, per `policy`.

  Args:
    image: [h, w, 3] uint8 or float (0..255), as `unet_jax.photos` decoded it.
    mask: [h, w, 1] in {0, 1}, any dtype, the image's size.
    size: S.
    policy: 'stretch' -> S x S; 'pad' -> S x S with the content centred and zeros around;
      'crop' -> short side S, long side >= S (crop later with `crop_for_training` or
      `center_crop`).
    native_shape: the photo's original (H, W), from which the geometry is computed (a JPEG
      decoded at 1/8 scale can be a pixel off its aspect); default: the image's own shape.

  Returns:
    (image, mask) with the input dtypes; a uint8 image is rounded, the mask stays binary.
  """
  check_policy(policy)
  shape, top, left = _geometry(image, size, policy, native_shape)
  image = _resize_image(image, shape)
  mask = photos.resize_binary(mask, shape)
  if policy == 'pad':
    image = tf.image.pad_to_bounding_box(image, top, left, size, size)
    mask = tf.image.pad_to_bounding_box(mask, top, left, size, size)
  if policy in ('stretch', 'pad'):
    image = tf.ensure_shape(image, [size, size, 3])
    mask = tf.ensure_shape(mask, [size, size, 1])
  return image, mask


def crop_for_training(
  image: tf.Tensor, mask: tf.Tensor, size: int, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
  """A stateless random S x S crop of an image resized by the 'crop' policy, mask alike.

  One window is drawn and both are sliced with it, so they cannot drift apart; the window is a
  pure function of `seed` ([2] int), keeping training batches reproducible and resumable. (Not
  stacked into one [H, W, 4] tensor: splitting its channels again is a strided copy, which made
  the whole host pipeline 7.5x slower per image.)
  """
  shape = tf.shape(image)
  top_seed, left_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  top = tf.random.stateless_uniform([], top_seed, 0, shape[0] - size + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], left_seed, 0, shape[1] - size + 1, dtype=tf.int32)
  image = tf.slice(image, [top, left, 0], [size, size, 3])
  mask = tf.slice(mask, [top, left, 0], [size, size, 1])
  return tf.ensure_shape(image, [size, size, 3]), tf.ensure_shape(mask, [size, size, 1])


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """The central S x S window of an [H, W, C] tensor with H, W >= S (e.g. for evaluation)."""
  shape = tf.shape(image)
  top = (shape[0] - size) // 2
  left = (shape[1] - size) // 2
  cropped = tf.image.crop_to_bounding_box(image, top, left, size, size)
  return tf.ensure_shape(cropped, [size, size, image.shape[-1]])


def _window_offsets(length: int, size: int) -> list[int]:
  """ceil(length / S) evenly spaced window starts covering [0, length), first 0, last length-S."""
  k = math.ceil(length / size)
  if k == 1:
    return [0]
  return [round(i * (length - size) / (k - 1)) for i in range(k)]


def model_inputs(image: np.ndarray, size: int, policy: str,
                 native_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, Placement]:
  """The model's tiles for one image, and where they sit in its native grid.

  Uses the same TF resize (and uint8 rounding) as `resize_for_cache`, so inference inputs match
  the cached training inputs bit for bit.

  Args:
    image: uint8 [h, w, 3], as `unet_jax.photos` decoded it.
    size: S, the training resolution.
    policy: one of POLICIES.
    native_shape: the photo's original (H, W) (default: the image's own shape); the geometry is
      computed from it and the placement maps back onto it.

  Returns:
    (tiles float32 [k, S, S, 3] in 0..255, placement); k = 1 except for 'crop'.
  """
  check_policy(policy)
  image = np.asarray(image)
  if image.ndim != 3:
    raise ValueError(f'Expected an image [H, W, C], got shape {image.shape}.')
  height, width = image.shape[:2] if native_shape is None else native_shape
  new_h, new_w = resized_shape(height, width, size, policy)
  resized = _resize_image(tf.convert_to_tensor(image), [new_h, new_w]).numpy()
  resized = resized.astype(np.float32)
  if policy == 'stretch':
    tiles, offsets = resized[None], ((0, 0),)
  elif policy == 'pad':
    top, left = (size - new_h) // 2, (size - new_w) // 2
    tiles = np.zeros((1, size, size, image.shape[-1]), np.float32)
    tiles[0, top : top + new_h, left : left + new_w] = resized
    offsets = ((top, left),)
  else:
    offsets = tuple(
      (t, lf) for t in _window_offsets(new_h, size) for lf in _window_offsets(new_w, size)
    )
    tiles = np.stack([resized[t : t + size, lf : lf + size] for t, lf in offsets])
  placement = Placement(height, width, policy, size, new_h, new_w, offsets)
  return tiles, placement


def probs_to_native(tile_probs: np.ndarray, placement: Placement) -> np.ndarray:
  """Undoes `model_inputs`' geometry: tile probabilities [k, S, S] -> float32 [H, W] in [0, 1].

  'stretch' resizes the one tile back; 'pad' cuts the content box out first; 'crop' averages the
  overlapping windows on the S x L canvas, then resizes. Bilinear (triangle filter, widened when
  shrinking) on probabilities, so thresholding afterwards puts the edge between pixels smoothly.
  """
  tile_probs = np.asarray(tile_probs, np.float32)
  size = placement.size
  if tile_probs.ndim == 4 and tile_probs.shape[-1] == 1:
    tile_probs = tile_probs[..., 0]
  if tile_probs.shape != (placement.num_tiles, size, size):
    raise ValueError(
      f'tile_probs has shape {tile_probs.shape}; the placement expects '
      f'{(placement.num_tiles, size, size)}.'
    )
  new_h, new_w = placement.resized_height, placement.resized_width
  if placement.policy == 'stretch':
    canvas = tile_probs[0]
  elif placement.policy == 'pad':
    top, left = placement.offsets[0]
    canvas = tile_probs[0, top : top + new_h, left : left + new_w]
  else:
    total = np.zeros((new_h, new_w), np.float32)
    count = np.zeros((new_h, new_w), np.float32)
    for (top, left), probs in zip(placement.offsets, tile_probs, strict=True):
      total[top : top + size, left : left + size] += probs
      count[top : top + size, left : left + size] += 1.0
    canvas = total / count
  return resize_2d(canvas, placement.height, placement.width)


def _resize_weights(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of a half-pixel-centred triangle filter, widened by in/out when shrinking.

  This is TF's bilinear resize with antialias=True; at the borders the weights are renormalized
  over the pixels that exist, which for enlarging equals TF's edge clamping.
  """
  scale = out_size / in_size
  support = max(1.0, 1.0 / scale)
  centres = (np.arange(out_size, dtype=np.float64) + 0.5) / scale - 0.5
  taps = np.arange(in_size, dtype=np.float64)
  weights = np.maximum(0.0, 1.0 - np.abs(taps[None, :] - centres[:, None]) / support)
  weights /= weights.sum(axis=1, keepdims=True)
  return weights.astype(np.float32)


def resize_2d(values: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear (antialiased when shrinking) resize of a float [h, w] array to [height, width].

  Separable: two small matrix products, so even a 4288 x 2848 output takes a fraction of a second.
  """
  values = np.asarray(values, np.float32)
  if values.shape == (height, width):
    return values.copy()
  rows = _resize_weights(values.shape[0], height)
  cols = _resize_weights(values.shape[1], width)
  return (rows @ values) @ cols.T
