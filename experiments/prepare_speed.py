"""How fast full-resolution ISIC photos are prepared: our TFDS path vs the seed notebook's.

Preparing a dataset is dominated by decoding multi-megapixel JPEGs. The seed notebook decoded each
photo with PIL and resized it with scikit-image; `unet_jax.isic2018` decodes with libjpeg's
DCT-domain downscaling (`tf.io.decode_jpeg(..., ratio=2|4|8)`) and resizes the smaller result.
This script times both on the same files, one image at a time on one thread, so the figures are
images per second per core. Run it pinned to one core:

  taskset -c 0 .venv/bin/python experiments/prepare_speed.py \
      --dir ../shared/data/isic_sample/native --size 224

PIL and scikit-image are needed for the comparison only (`pip install pillow scikit-image`); they
are not dependencies of the project.
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')  # As `unet_jax/__init__.py`.

import numpy as np

from unet_jax import isic2018

# TensorFlow (and `photos`, `resize_policy`, which import it) where a photo is decoded: --help
# answers at once.


def _tf_decode_resize(image_path: str, size: int, use_ratio: bool) -> np.ndarray:
  import tensorflow as tf

  from unet_jax import photos, resize_policy

  data = tf.io.read_file(image_path)
  height, width = (int(v) for v in tf.io.extract_jpeg_shape(data)[:2])
  ratio = photos.jpeg_ratio(height, width, size) if use_ratio else 1
  image = tf.io.decode_jpeg(data, channels=3, ratio=ratio)
  target = resize_policy.resized_shape(height, width, size, 'crop')
  image = tf.image.resize(tf.cast(image, tf.float32), target, antialias=True)
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8).numpy()


def _seed_image(image_path: str, size: int) -> np.ndarray:
  from PIL import Image
  from skimage.transform import resize

  image = np.asarray(Image.open(image_path).convert('RGB'))
  return resize(image, (size, size), preserve_range=True, anti_aliasing=True).astype(np.uint8)


def _seed_example(image_path: str, mask_path: str, size: int):
  from PIL import Image
  from skimage.transform import resize

  image = _seed_image(image_path, size)
  mask = np.asarray(Image.open(mask_path).convert('L'))
  mask = resize(mask, (size, size), preserve_range=True, anti_aliasing=True) > 128
  return image, mask


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--dir', default='../shared/data/isic_sample/native',
                      help='Native-resolution photos in the ISIC layout (with their masks).')
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--repeats', type=int, default=3, help='Timed passes over the images.')
  args = parser.parse_args()
  import tensorflow as tf

  from unet_jax import photos

  # One thread per op pool: per-core figures even when not pinned (pinning is still better).
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)

  pairs = isic2018.pair_files(
    os.path.join(args.dir, isic2018.input_name('Training')),
    os.path.join(args.dir, isic2018.truth_name('Training')),
  )
  size = args.size
  methods = {
    'TF decode (full) + TF resize, image only': lambda i, m: _tf_decode_resize(i, size, False),
    'TF decode (ratio) + TF resize, image only': lambda i, m: _tf_decode_resize(i, size, True),
    'ours: isic2018.prepare_example (image + mask, PNG-encoded)': (
      lambda i, m: isic2018.prepare_example('x', i, m, size)
    ),
    'seed: PIL decode + skimage resize, image only': lambda i, m: _seed_image(i, size),
    'seed: PIL + skimage, image + mask': lambda i, m: _seed_example(i, m, size),
  }
  print(f'{len(pairs)} images from {args.dir}, S={size}, {args.repeats} timed passes each')
  for _, image_path, _ in pairs:
    h, w = (int(v) for v in tf.io.extract_jpeg_shape(tf.io.read_file(image_path))[:2])
    print(f'  {os.path.basename(image_path)}: {w}x{h}, ratio {photos.jpeg_ratio(h, w, size)}')
  print(f'python {platform.python_version()}, tensorflow {tf.__version__}', end='')
  try:
    import PIL
    import skimage

    print(f', pillow {PIL.__version__}, scikit-image {skimage.__version__}')
  except ImportError as missing:
    print(f' ({missing.name} is not installed: the seed rows are left out; '
          '`pip install scikit-image` measures them)')
    methods = {k: v for k, v in methods.items() if not k.startswith('seed:')}

  print('\n| method | ms / image (median) | images/s per core |')
  print('|---|---:|---:|')
  for name, fn in methods.items():
    for _, image_path, mask_path in pairs:  # Warm-up: TF kernels, file cache, imports.
      fn(image_path, mask_path)
    times = []
    for _ in range(args.repeats):
      for _, image_path, mask_path in pairs:
        start = time.perf_counter()
        fn(image_path, mask_path)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f'| {name} | {1000 * median:.1f} | {1 / median:.2f} |')


if __name__ == '__main__':
  main()
