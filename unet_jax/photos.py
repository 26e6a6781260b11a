"""The one way a photo and its mask become pixels, for training, validation, evaluate and predict.

Why one module: a model scored on pixels it never trained on is scored on the wrong thing. The
ISIC TFDS builder (when it prepares the dataset), the folder source (inside tf.data), the
in-loop validation, `evaluate` and `predict` all decode through `decode_example` /
`decode_photo` here, and then resize once to the model's geometry with `unet_jax.resize_policy`.
So an image reaches the model with the same pixels on every path, for every source and policy
(tests/photos_test.py checks it on JPEGs of several sizes).

What a photo becomes:
  * JPEGs are decoded with libjpeg's DCT scaling at 1/8, 1/4 or 1/2 of their size, the largest
    reduction that keeps the short side >= S (the training resolution): several times faster than
    a full decode of a 12-megapixel photo, and nothing the model sees is lost, since everything
    is resized to S-sized geometry afterwards. Other formats (PNG, BMP, GIF) decode fully.
  * The photo's native size (H, W) travels with it: the resize policy's geometry is computed from
    it, and predictions are mapped back onto the native H x W grid to be scored.
  * Masks are binarized once when read (> 128, as the official ISIC scorer does), then resized to
    the decoded photo's size when that differs and re-thresholded at 0.5, so a mask is binary at
    every stage and keeps its area.

Everything here is TensorFlow that also runs inside a tf.data graph (no Python branching on
tensor values), plus `read_photo`, the eager entry point for files.
"""

import sys

import tensorflow as tf
from absl import logging

# libjpeg's DCT scaling factors, largest first.
JPEG_RATIOS = (8, 4, 2)
# 8-bit mask values above this are lesion (the official scorer's rule).
MASK_THRESHOLD = 128


def jpeg_ratio(height: int, width: int, size: int) -> int:
  """The largest libjpeg downscale (8, 4, 2, else 1) that keeps the short side >= `size`.

  libjpeg's scaled output is ceil(side / ratio), hence the ceiling here.
  """
  short = min(height, width)
  for ratio in JPEG_RATIOS:
    if -(-short // ratio) >= size:
      return ratio
  return 1


def _jpeg_ratio_index(short: tf.Tensor, size: int) -> tf.Tensor:
  """Index into (1, 2, 4, 8) of `jpeg_ratio`, on a dynamic short side (graph-safe)."""
  index = tf.constant(0, tf.int32)
  for i, ratio in enumerate(sorted(JPEG_RATIOS), start=1):  # 2, 4, 8.
    fits = (short + ratio - 1) // ratio >= size
    index = tf.where(fits, tf.constant(i, tf.int32), index)
  return index


def decode_photo(data: tf.Tensor, size: int | None) -> tuple[tf.Tensor, tf.Tensor]:
  """(uint8 [h, w, 3] image, int32 [2] native (H, W)) of encoded image bytes.

  JPEGs decode at the smallest DCT scale whose short side is >= `size` (`jpeg_ratio`); other
  formats, and every format when `size` is None, decode fully. Greyscale photos come out as
  three equal channels.
  """
  if size is None:
    size = 1 << 30  # No DCT scale keeps a short side this long: ratio 1.
  data = tf.convert_to_tensor(data, tf.string)

  def jpeg():
    shape = tf.io.extract_jpeg_shape(data, tf.int32)[:2]
    index = _jpeg_ratio_index(tf.reduce_min(shape), size)
    branches = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r)
                for r in (1, *sorted(JPEG_RATIOS))]
    return tf.ensure_shape(tf.switch_case(index, branches), [None, None, 3]), shape

  def other():
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    return image, tf.shape(image, out_type=tf.int32)[:2]

  return tf.cond(tf.io.is_jpeg(data), jpeg, other)


def decode_mask(data: tf.Tensor, name: tf.Tensor | str | None = None) -> tf.Tensor:
  """uint8 [H, W, 1] in {0, 1} of an encoded mask: lesion where the 8-bit value is > 128.

  With `name`, a mask with values other than 0 and 255 (resampled, or saved as JPEG) is
  accepted with a warning on stderr that names it (printed from inside tf.data too).
  """
  mask = tf.ensure_shape(
    tf.io.decode_image(data, channels=1, dtype=tf.uint8, expand_animations=False), [None, None, 1])
  if name is not None:
    other = tf.reduce_any((mask != 0) & (mask != 255))
    warn = tf.cond(other, lambda: tf.print(
      'Warning: mask', name, 'has values other than 0 and 255; binarized at > 128, as the ISIC '
      'scorer does.', output_stream=sys.stderr), tf.no_op)
    with tf.control_dependencies([warn]):
      mask = tf.identity(mask)
  return tf.cast(mask > MASK_THRESHOLD, tf.uint8)


def resize_binary(mask: tf.Tensor, shape) -> tf.Tensor:
  """A 0/1 mask resized to `shape` ([h, w]) and re-thresholded at 0.5: binary, area kept.

  Antialiased bilinear on the 0/1 values, so shrinking averages the covered pixels before the
  threshold instead of sampling one of them.
  """
  resized = tf.image.resize(tf.cast(mask, tf.float32), shape, 'bilinear', antialias=True)
  return tf.cast(resized > 0.5, mask.dtype)


def decode_example(image_data: tf.Tensor, mask_data: tf.Tensor, size: int, *,
                   image_name: tf.Tensor | str = 'the image',
                   mask_name: tf.Tensor | str = 'the mask',
                   ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(image uint8 [h, w, 3], mask uint8 [h, w, 1] in {0, 1}, native (H, W)) of one example.

  The image as `decode_photo` gives it, the mask binarized and brought to the image's decoded
  size (`resize_binary`). A mask whose size is not the photo's native size fails
  (InvalidArgumentError) with both names (file paths, say) and both sizes in the message.
  """
  image, native = decode_photo(image_data, size)
  mask = decode_mask(mask_data, mask_name)
  mask_shape = tf.shape(mask, out_type=tf.int32)[:2]
  def size_text(shape):
    return tf.strings.join([tf.strings.as_string(shape[0]), tf.strings.as_string(shape[1])], 'x')

  message = tf.strings.join(['Mask ', mask_name, ' is ', size_text(mask_shape), ' (HxW) but its '
                             'image ', image_name, ' is ', size_text(native), '.'])
  check = tf.debugging.Assert(tf.reduce_all(tf.equal(mask_shape, native)), [message])
  with tf.control_dependencies([check]):
    decoded = tf.shape(image, out_type=tf.int32)[:2]
    mask = tf.cond(tf.reduce_all(tf.equal(decoded, native)), lambda: tf.identity(mask),
                   lambda: resize_binary(mask, decoded))
  return image, mask, native


# PIL modes of photos that are decoded as they are (8-bit RGB); others are converted.
_RGB_MODES = ('RGB',)


def converted_photos(paths, limit: int | None = None) -> list[tuple[str, str]]:
  """(path, PIL mode) of the photos that are not 8-bit RGB (greyscale, RGBA, 16-bit, palette):
  read from the file headers only, so a folder of thousands takes a second or two."""
  from PIL import Image

  found = []
  for path in paths:
    try:
      with Image.open(path) as image:
        mode = image.mode
    except OSError:
      continue  # Unreadable: the decoder names it when it gets there.
    if mode not in _RGB_MODES:
      found.append((path, mode))
      if limit and len(found) >= limit:
        break
  return found


def warn_converted(paths, where: str = '') -> None:
  """One warning for the photos `converted_photos` finds among `paths`."""
  found = converted_photos(paths)
  if found:
    path, mode = found[0]
    logging.warning('%d of %d photos%s are not 8-bit RGB (e.g. %s: PIL mode %s); they are '
                    'converted to 8-bit RGB (greyscale repeated, alpha dropped, 16-bit scaled).',
                    len(found), len(paths), where, path, mode)


def read_photo(path: str, size: int | None):
  """(uint8 [h, w, 3] numpy image, (H, W) native size) of an image file, as `decode_photo`
  (`size` None: at full resolution).

  Raises ValueError naming the file when it cannot be read or decoded.
  """
  try:
    data = tf.io.read_file(path)
  except (tf.errors.OpError, OSError) as e:
    message = getattr(e, 'message', None) or str(e)
    raise ValueError(f'Cannot read image {path!r}: {message.strip()}') from None
  try:
    image, native = decode_photo(data, size)
  except tf.errors.OpError as e:
    raise ValueError(f'Cannot decode image {path!r}: {e.message.strip()}') from None
  warn_converted([path])
  return image.numpy(), (int(native[0]), int(native[1]))
