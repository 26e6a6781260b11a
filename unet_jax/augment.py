"""Training augmentation on the accelerator, inside the jitted train step.

Why on the device: done per example in tf.data (the first version of this module), flips, rot90,
a random crop and brightness/contrast/hue (through HSV) cost about 1.6 ms per 224x224 image per
CPU core (616 images/s/core), so a 16-core host could feed about 9,600 images/s, under 3x the
H200's ~3,500 images/s limit. Here the whole augmentation of an image is two small matrix
products and one 3x3 colour matrix, 0.18 GFLOP against the ~221 GFLOP of its training step
(0.08%), and the host ships uint8 pixels (4x fewer bytes than float32), about 20,000 images/s
per core (experiments/results/benchmark_cpu.md).

What one example gets, all from its own key:
  * geometry, applied to the image and the mask *together*: a random box of area fraction
    [min_scale, 1] with aspect ratio in [3/4, 4/3], integer-aligned and resized back to S x S
    with bilinear interpolation (the same weights as `tf.image.resize` of the cropped box);
    then a random element of the dihedral group (rot90 by k, then horizontal/vertical flips).
    Both are separable, so the whole geometry is `rows @ x @ cols^T` with two S x S matrices:
    a flip reverses one matrix, a transpose (odd k) swaps the image's axes. The mask is
    thresholded at 0.5 afterwards, so it stays exactly binary.
  * colour, image only: brightness (add delta), contrast (scale around the per-channel mean)
    and hue (a rotation of the chroma plane in YIQ space, which keeps greys grey) compose into
    one 3x3 matrix and one offset per image; the result is clipped to 0..255.

Keys: example j of the global batch of step t gets `fold_in(fold_in(key(seed) ^ salt, t), j)`,
so a batch's augmentation is a pure function of (seed, step, data), the same on any number of
devices or processes, and a resumed run repeats it exactly. No TensorFlow import here.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from unet_jax import normalization

# Aspect-ratio jitter of the random crop (width / height), as in Inception-style crops.
ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
# Folded into the seed's key so augmentation draws never coincide with init or dropout keys.
_KEY_SALT = 0x617567  # 'aug'
# NTSC RGB -> YIQ. Y is luma; a rotation in the (I, Q) plane shifts hue and keeps grey grey.
_RGB_TO_YIQ = np.array(
  [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float64
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


@dataclasses.dataclass(frozen=True)
class Settings:
  """`config.augment` as plain values (hashable, so jit can treat them as static)."""

  enabled: bool = True
  flip: bool = True
  rot90: bool = True
  min_scale: float = 0.6
  brightness: float = 0.1
  contrast: float = 0.2
  hue: float = 0.02

  @property
  def crops(self) -> bool:
    return 0.0 < self.min_scale < 1.0

  @property
  def colours(self) -> bool:
    return bool(self.brightness or self.contrast or self.hue)


def settings_from_config(config_augment: Any) -> Settings:
  """Reads and checks `config.augment` (a ConfigDict or any object with those attributes)."""
  settings = Settings(**{f.name: getattr(config_augment, f.name)
                         for f in dataclasses.fields(Settings)})
  if not 0.0 <= settings.min_scale <= 1.0:
    raise ValueError(f'config.augment.min_scale={settings.min_scale} must be in [0, 1] '
                     '(0 or 1 turns the random crop off).')
  if not 0.0 <= settings.contrast <= 1.0:
    raise ValueError(f'config.augment.contrast={settings.contrast} must be in [0, 1] (the '
                     'contrast factor is drawn from [1 - c, 1 + c] and must stay non-negative).')
  if not 0.0 <= settings.hue <= 0.5:
    raise ValueError(f'config.augment.hue={settings.hue} must be in [0, 0.5] (a fraction of '
                     'the colour wheel).')
  if settings.brightness < 0:
    raise ValueError(f'config.augment.brightness={settings.brightness} must be >= 0.')
  return settings


class Draw(NamedTuple):
  """The random choices for one example (each field a scalar array)."""

  top: jax.Array  # int32: the crop box, in pixels of the S x S input.
  left: jax.Array
  height: jax.Array
  width: jax.Array
  transpose: jax.Array  # bool: swap the axes (the odd multiples of 90 degrees).
  flip_rows: jax.Array  # bool: reverse the rows (vertical flip).
  flip_cols: jax.Array  # bool: reverse the columns (horizontal flip).
  brightness: jax.Array  # float32: added to every channel, in 0..255 units.
  contrast: jax.Array  # float32: factor around the per-channel mean.
  hue: jax.Array  # float32: rotation of the chroma plane, in radians.


def draw(key: jax.Array, settings: Settings, size: int) -> Draw:
  """Draws one example's augmentation; parts that are off get their identity values."""
  keys = jax.random.split(key, 10)
  uniform = jax.random.uniform
  full = float(size)
  if settings.crops:
    area = uniform(keys[0], minval=settings.min_scale, maxval=1.0)
    aspect = jnp.exp(uniform(keys[1], minval=math.log(ASPECT_RANGE[0]),
                             maxval=math.log(ASPECT_RANGE[1])))
    height = jnp.clip(jnp.round(full * jnp.sqrt(area / aspect)), 1, full).astype(jnp.int32)
    width = jnp.clip(jnp.round(full * jnp.sqrt(area * aspect)), 1, full).astype(jnp.int32)
    top = jax.random.randint(keys[2], (), 0, size - height + 1)
    left = jax.random.randint(keys[3], (), 0, size - width + 1)
  else:
    top = left = jnp.int32(0)
    height = width = jnp.int32(size)
  # rot90 by k (counter-clockwise, as np.rot90) = transpose if k is odd, then flips:
  # k=1 reverses the rows, k=2 both, k=3 the columns.
  k = jax.random.randint(keys[4], (), 0, 4) if settings.rot90 else jnp.int32(0)
  flip_rows = (k == 1) | (k == 2)
  flip_cols = (k == 2) | (k == 3)
  if settings.flip:
    flip_rows ^= jax.random.bernoulli(keys[5])
    flip_cols ^= jax.random.bernoulli(keys[6])
  brightness, contrast, hue = jnp.float32(0.0), jnp.float32(1.0), jnp.float32(0.0)
  if settings.brightness:
    brightness = uniform(keys[7], minval=-1.0, maxval=1.0) * settings.brightness * 255.0
  if settings.contrast:
    contrast = uniform(keys[8], minval=1.0 - settings.contrast, maxval=1.0 + settings.contrast)
  if settings.hue:
    hue = uniform(keys[9], minval=-1.0, maxval=1.0) * settings.hue * 2.0 * math.pi
  return Draw(top=top, left=left, height=height, width=width, transpose=k % 2 == 1,
              flip_rows=flip_rows, flip_cols=flip_cols, brightness=brightness,
              contrast=contrast, hue=hue)


def resize_matrix(start: jax.Array, length: jax.Array, size: int) -> jax.Array:
  """[size, size] bilinear weights taking pixels [start, start + length) of a row to `size`.

  Half-pixel centres, clamped to the box's edge pixels, as `tf.image.resize(..., 'bilinear')` of
  the box: output i samples input coordinate start + (i + 0.5) * length / size - 0.5. Each row
  sums to 1; with start=0, length=size it is the identity, exactly.
  """
  out = jnp.arange(size, dtype=jnp.float32)
  start, length = start.astype(jnp.float32), length.astype(jnp.float32)
  coord = start + (out + 0.5) * (length / size) - 0.5
  coord = jnp.clip(coord, start, start + length - 1.0)  # Clamped to the box's own edge pixels.
  return jnp.maximum(0.0, 1.0 - jnp.abs(coord[:, None] - out[None, :]))


def hue_matrix(angle: jax.Array) -> jax.Array:
  """[3, 3] RGB -> RGB matrix rotating the YIQ chroma plane by `angle` radians."""
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  zero, one = jnp.zeros_like(cos), jnp.ones_like(cos)
  rotation = jnp.stack([jnp.stack([one, zero, zero]), jnp.stack([zero, cos, -sin]),
                        jnp.stack([zero, sin, cos])])
  return jnp.asarray(_YIQ_TO_RGB, jnp.float32) @ rotation @ jnp.asarray(_RGB_TO_YIQ, jnp.float32)


def apply(d: Draw, image: jax.Array, mask: jax.Array, settings: Settings) -> tuple[jax.Array, jax.Array]:
  """Augments one example: image [S, S, 3] and mask [S, S, 1] of any real dtype (0..255, {0, 1}).

  Returns float32 image in 0..255 and float32 mask in {0, 1}.
  """
  size = image.shape[0]
  if image.shape[:2] != (size, size) or mask.shape != (size, size, 1):
    raise ValueError(f'augment needs square images and [S, S, 1] masks; got {image.shape} '
                     f'and {mask.shape}.')
  joint = jnp.concatenate([image.astype(jnp.float32), mask.astype(jnp.float32)], axis=-1)
  joint = jnp.where(d.transpose, jnp.swapaxes(joint, 0, 1), joint)
  rows = resize_matrix(d.top, d.height, size)
  cols = resize_matrix(d.left, d.width, size)
  rows = jnp.where(d.flip_rows, rows[::-1], rows)
  cols = jnp.where(d.flip_cols, cols[::-1], cols)
  # HIGHEST: no TF32/bf16 passes, so identity and permutation matrices move pixels exactly.
  joint = jnp.einsum('ri,ijc,sj->rsc', rows, joint, cols,
                     precision=jax.lax.Precision.HIGHEST)
  image, mask = joint[..., :3], joint[..., 3:]
  mask = (mask > 0.5).astype(jnp.float32)
  if settings.colours:
    # brightness: x + b; contrast: m + c (x + b - (m + b)) = c x + (1 - c) m + b; hue: M (.).
    matrix = hue_matrix(d.hue)
    mean = jnp.mean(image, axis=(0, 1))
    offset = matrix @ ((1.0 - d.contrast) * mean + d.brightness)
    image = jnp.einsum('ij,hwj->hwi', d.contrast * matrix, image,
                       precision=jax.lax.Precision.HIGHEST) + offset
    image = jnp.clip(image, 0.0, 255.0)
  return image, mask


def example_keys(seed: int, step: jax.Array, first: jax.Array, count: int) -> jax.Array:
  """Keys of examples first .. first + count - 1 of the global batch of `step`."""
  step_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _KEY_SALT), step)
  return jax.vmap(lambda j: jax.random.fold_in(step_key, j))(first + jnp.arange(count))


def augment_batch(keys: jax.Array, images: jax.Array, masks: jax.Array, settings: Settings
                  ) -> tuple[jax.Array, jax.Array]:
  """Augments a batch, each example with its own key. Float32 out (image 0..255, mask {0, 1})."""
  if not settings.enabled:
    return images.astype(jnp.float32), masks.astype(jnp.float32)
  size = images.shape[1]
  return jax.vmap(lambda k, x, m: apply(draw(k, settings, size), x, m, settings))(
      keys, images, masks)


def make_preprocess(config_augment: Any, normalize: str, seed: int) -> Callable:
  """The train step's first stage: raw batch -> augmented, normalized float32 batch.

  Returns preprocess(batch, step, first) for `train_step.train_step`, where batch holds this
  device's 'image' [b, S, S, 3] (uint8 or float, 0..255) and 'mask' [b, S, S, 1], and `first` is
  the position of its first example in the global batch.
  """
  settings = settings_from_config(config_augment)
  normalization.check_mode(normalize)

  def preprocess(batch: dict, step: jax.Array, first: jax.Array) -> dict:
    images, masks = batch['image'], batch['mask']
    keys = example_keys(seed, step, first, images.shape[0])
    images, masks = augment_batch(keys, images, masks, settings)
    return {**batch, 'image': normalization.normalize(images, normalize), 'mask': masks}

  return preprocess
