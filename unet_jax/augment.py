"""Joint image/mask augmentation in TensorFlow, applied per example after the input cache.

Geometric ops (flips, rot90, random scale/crop) act on the image and the mask *together*: they
are stacked into one [S, S, 4] tensor and transformed once, so the two can never drift apart.
Colour ops act on the image only, since they do not move pixels and the mask has no colour.

Every random draw comes from a `tf.random.stateless_*` op keyed by the `seed` argument, so an
example's augmentation is a pure function of (image, mask, seed). The input pipeline derives that
seed from (config.seed, epoch, example), which makes training batches reproducible and resumable.
"""

import math

import ml_collections
import tensorflow as tf

# Aspect-ratio jitter of the random crop, as in Inception-style crops.
_ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
# Number of independent sub-seeds drawn from the example seed; one per random decision.
_NUM_SEEDS = 9


def augment(
  image: tf.Tensor,
  mask: tf.Tensor,
  seed: tf.Tensor,
  config_augment: ml_collections.ConfigDict,
  image_size: int,
) -> tuple[tf.Tensor, tf.Tensor]:
  """Randomly transforms one example; returns (image, mask) with the input shapes.

  Args:
    image: float32 [S, S, 3] in 0..255.
    mask: float32 [S, S, 1] in {0, 1}.
    seed: int32/int64 [2] seed for the stateless random ops.
    config_augment: `config.augment` (see configs/default.py). A part is off when its field is
      0/False; `enabled=False` turns everything off.
    image_size: S. The random crop is resized back to S x S.

  Returns:
    image float32 [S, S, 3] in 0..255, mask float32 [S, S, 1] exactly in {0, 1}.
  """
  if not config_augment.enabled:
    return image, mask
  _check(config_augment)
  seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), num=_NUM_SEEDS)
  image = tf.cast(image, tf.float32)
  mask = tf.cast(mask, tf.float32)

  joint = tf.concat([image, mask], axis=-1)  # [S, S, 4]: one geometric transform for both.
  joint = _geometric(joint, seeds, config_augment, image_size)
  image, mask = joint[..., :3], joint[..., 3:]
  # Bilinear resampling in the crop blurs the mask's edge; thresholding keeps it exactly binary
  # and puts the edge where the interpolated image's edge is.
  mask = tf.cast(mask > 0.5, tf.float32)

  image = _colour(image, seeds, config_augment)
  image = tf.ensure_shape(image, [image_size, image_size, 3])
  mask = tf.ensure_shape(mask, [image_size, image_size, 1])
  return image, mask


def _check(config_augment: ml_collections.ConfigDict) -> None:
  """Rejects values the TF colour ops would reject later with a less helpful message."""
  if not 0.0 <= config_augment.contrast <= 1.0:
    raise ValueError(
      f'config.augment.contrast={config_augment.contrast} must be in [0, 1] (the contrast '
      'factor is drawn from [1 - c, 1 + c] and must stay non-negative).'
    )
  if not 0.0 <= config_augment.hue <= 0.5:
    raise ValueError(f'config.augment.hue={config_augment.hue} must be in [0, 0.5].')
  if config_augment.brightness < 0:
    raise ValueError(f'config.augment.brightness={config_augment.brightness} must be >= 0.')


def _coin(seed: tf.Tensor) -> tf.Tensor:
  return tf.random.stateless_uniform([], seed=seed) < 0.5


def _geometric(
  joint: tf.Tensor, seeds: tf.Tensor, config_augment: ml_collections.ConfigDict, size: int
) -> tf.Tensor:
  """Crop, flips and rot90 of the stacked [S, S, 4] image+mask."""
  if 0.0 < config_augment.min_scale < 1.0:
    joint = _random_crop(joint, seeds[0], seeds[1], seeds[2], config_augment.min_scale, size)
  if config_augment.flip:
    joint = tf.cond(_coin(seeds[3]), lambda: tf.reverse(joint, axis=[1]), lambda: joint)
    joint = tf.cond(_coin(seeds[4]), lambda: tf.reverse(joint, axis=[0]), lambda: joint)
  if config_augment.rot90:
    # Square inputs, so every multiple of 90 degrees keeps the shape.
    k = tf.random.stateless_uniform([], seed=seeds[5], minval=0, maxval=4, dtype=tf.int32)
    joint = tf.image.rot90(joint, k)
  return joint


def _random_crop(
  joint: tf.Tensor,
  area_seed: tf.Tensor,
  aspect_seed: tf.Tensor,
  offset_seed: tf.Tensor,
  min_scale: float,
  size: int,
) -> tf.Tensor:
  """Crops a box of area fraction in [min_scale, 1] and jittered aspect, resized to size x size.

  The box is drawn directly (no rejection loop): a side that would exceed the image is clipped,
  which only makes the box slightly smaller than drawn for extreme aspect ratios.
  """
  area = tf.random.stateless_uniform([], seed=area_seed, minval=min_scale, maxval=1.0)
  log_aspect = tf.random.stateless_uniform(
    [], seed=aspect_seed, minval=math.log(_ASPECT_RANGE[0]), maxval=math.log(_ASPECT_RANGE[1])
  )
  aspect = tf.exp(log_aspect)  # width / height
  full = float(size)
  height = tf.cast(tf.clip_by_value(tf.round(full * tf.sqrt(area / aspect)), 1.0, full), tf.int32)
  width = tf.cast(tf.clip_by_value(tf.round(full * tf.sqrt(area * aspect)), 1.0, full), tf.int32)
  offset_seeds = tf.random.experimental.stateless_split(offset_seed, num=2)
  top = tf.random.stateless_uniform(
    [], seed=offset_seeds[0], minval=0, maxval=size - height + 1, dtype=tf.int32
  )
  left = tf.random.stateless_uniform(
    [], seed=offset_seeds[1], minval=0, maxval=size - width + 1, dtype=tf.int32
  )
  crop = tf.slice(joint, tf.stack([top, left, 0]), tf.stack([height, width, -1]))
  # Upsampling only (the crop is never larger than the image), so antialiasing has no effect.
  return tf.image.resize(crop, [size, size], method='bilinear')


def _colour(
  image: tf.Tensor, seeds: tf.Tensor, config_augment: ml_collections.ConfigDict
) -> tf.Tensor:
  """Brightness, contrast and hue jitter of a 0..255 image, done in [0, 1] as tf.image expects."""
  if not (config_augment.brightness or config_augment.contrast or config_augment.hue):
    return image
  x = image / 255.0
  if config_augment.brightness:
    x = tf.image.stateless_random_brightness(x, config_augment.brightness, seed=seeds[6])
  if config_augment.contrast:
    c = config_augment.contrast
    x = tf.image.stateless_random_contrast(x, 1.0 - c, 1.0 + c, seed=seeds[7])
  # Hue is computed through HSV, which assumes values in [0, 1].
  x = tf.clip_by_value(x, 0.0, 1.0)
  if config_augment.hue:
    x = tf.image.stateless_random_hue(x, config_augment.hue, seed=seeds[8])
    x = tf.clip_by_value(x, 0.0, 1.0)
  return x * 255.0
