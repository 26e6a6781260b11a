"""tf.data input pipeline: this process's slice of each batch, as numpy, deterministic and resumable.

The path of an example: a *source* ('synthetic' or 'folder') yields it at its original size; it is
resized once to S x S and (with `config.data.cache`) kept in memory as uint8; training then draws
it in a per-epoch order, augments it (`unet_jax.augment`) and normalizes it.

Why the epochs are built by hand rather than with `ds.shuffle().repeat()`: a shuffle buffer's
order depends on everything drawn before, so resuming at step k would mean replaying k batches.
Here epoch e's order is a stateless permutation keyed by (config.seed, e) and every example's
augmentation seed is keyed by (config.seed, e, example), so batch k is a pure function of the
config and k: `train_batches(config, start_step=k)` starts exactly where an uninterrupted run
would be, skipping only indices (never decoding or augmenting skipped examples).

Because a per-epoch permutation needs random access to the examples, the cache is not
`ds.cache()` (which can only be replayed in order) but the materialized uint8 tensors of the
resized examples, indexed with `tf.gather`. Without the cache, an index is decoded on demand.

Multi-process: process p of P reads examples [p*n//P, (p+1)*n//P) of the split and yields
batches of `batch_size // P`. Training truncates every slice to n//P so all processes run the same
number of steps per epoch; evaluation keeps every example and pads to a common batch count.

TensorFlow is used for input only; its devices are hidden at import so it never takes accelerator
memory from JAX.
"""

import collections
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

import ml_collections
import numpy as np
import tensorflow as tf

from unet_jax import augment as augment_lib
from unet_jax import synthetic

for _kind in ('GPU', 'TPU'):
  # RuntimeError: TF was initialized already; ValueError: no such device type in this build.
  with contextlib.suppress(RuntimeError, ValueError):
    tf.config.set_visible_devices([], _kind)

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_NORMALIZE_MODES = ('none', 'unit', 'imagenet')
_SOURCES = ('synthetic', 'folder')
_SPLITS = ('train', 'val')
# Validation images of the synthetic source use a seed far from any training seed.
_SYNTHETIC_VAL_SEED_OFFSET = 1_000_003
# Keeps the caches of the last few (split, process) pipelines, i.e. train + val of one run, so
# periodic evaluation does not decode the validation set again each time.
_MAX_CACHED_SOURCES = 4
_MATERIALIZE_CHUNK = 256

# A source yields example i (0 <= i < n) of this process's slice as uint8 tensors.
Fetch = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def normalize(image, mode: str):
  """Maps raw 0..255 pixels to the model's input range; tf tensors and numpy arrays alike.

  Plain arithmetic (no tf ops) so the same function serves the pipeline and numpy inference code.
  """
  if mode == 'none':
    return image
  if mode == 'unit':
    return image / np.float32(255.0)
  if mode == 'imagenet':
    return (image / np.float32(255.0) - _IMAGENET_MEAN) / _IMAGENET_STD
  raise ValueError(f'config.data.normalize={mode!r} is not one of {_NORMALIZE_MODES}.')


def split_ids(
  ids: Sequence[str], num_folds: int, fold: int, seed: int
) -> tuple[list[str], list[str]]:
  """k-fold split by a fixed seed: (train_ids, val_ids), each sorted.

  The ids are sorted first so the split depends on the set of ids, not on listing order; the
  permutation by `seed` then makes folds random but reproducible, and `np.array_split` makes the
  k folds contiguous chunks of it whose sizes differ by at most one. Across fold=0..k-1 every id
  validates exactly once.
  """
  if num_folds < 2:
    raise ValueError(f'config.data.num_folds={num_folds} must be >= 2 for a train/val split.')
  if not 0 <= fold < num_folds:
    raise ValueError(f'config.data.fold={fold} must be in [0, config.data.num_folds={num_folds}).')
  if num_folds > len(ids):
    raise ValueError(
      f'config.data.num_folds={num_folds} is larger than the number of examples ({len(ids)}).'
    )
  ordered = np.array(sorted(ids), dtype=object)
  perm = np.random.default_rng(seed).permutation(len(ordered))
  chunks = np.array_split(perm, num_folds)
  val = set(chunks[fold].tolist())
  train_ids = [ordered[i] for i in range(len(ordered)) if i not in val]
  val_ids = [ordered[i] for i in sorted(val)]
  return train_ids, val_ids


def num_examples(config: ml_collections.ConfigDict, split: str) -> int:
  """Number of examples in the whole split (all processes together)."""
  _check_split(split)
  data = config.data
  if data.source == 'synthetic':
    return data.num_train if split == 'train' else data.num_val
  if data.source == 'folder':
    return len(_folder_split(data, split)[0])
  raise _unknown_source(data.source)


def train_batches(
  config: ml_collections.ConfigDict,
  *,
  start_step: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Infinite iterator over this process's slice of each global training batch.

  Yields {'image': float32 [b, S, S, 3] normalized per config.data.normalize, 'mask': float32
  [b, S, S, 1] in {0, 1}} with b = config.batch_size // process_count. Batch k (k >= start_step)
  is the same whether iteration started at 0 or at `start_step=k`.
  """
  if start_step < 0:
    raise ValueError(f'start_step={start_step} must be >= 0.')
  index, count = _process(process_index, process_count)
  batch = _local_batch(config.batch_size, count, 'config.batch_size')
  fetch, n = _source(config, 'train', index, count, equal=True)
  if n < batch:
    raise ValueError(
      f'The train split has {n} examples per process ({num_examples(config, "train")} in all, '
      f'{count} process(es)), fewer than one batch of {batch} (config.batch_size='
      f'{config.batch_size}). Use a smaller config.batch_size or more data.'
    )
  steps_per_epoch = n // batch
  used = steps_per_epoch * batch  # The remainder of each epoch's permutation is dropped.
  start_epoch, skip = divmod(start_step, steps_per_epoch)
  seed = tf.constant(config.seed, tf.int64)
  offset = tf.constant(_slice_start(_split_size(config, 'train'), index, count), tf.int64)

  def epoch_indices(epoch):
    order = tf.random.experimental.stateless_shuffle(
      tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch])
    )[:used]
    return tf.data.Dataset.from_tensor_slices((tf.fill([used], epoch), order))

  def load(epoch, i):
    image, mask = fetch(i)
    # Keyed by the example's index in the whole split, so each example gets its own draw in
    # each epoch, the same on any number of processes.
    aug_seed = tf.random.experimental.stateless_fold_in(tf.stack([seed, epoch]), offset + i)
    image, mask = augment_lib.augment(
      tf.cast(image, tf.float32),
      tf.cast(mask, tf.float32),
      aug_seed,
      config.augment,
      config.data.image_size,
    )
    return {'image': normalize(image, config.data.normalize), 'mask': mask}

  ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch_indices)
  ds = ds.skip(skip * batch)  # Indices only: skipped examples are never loaded.
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch, drop_remainder=True)  # `used` is a multiple of `batch`: no mixed epochs.
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(_options())
  return ds.as_numpy_iterator()


def eval_batches(
  config: ml_collections.ConfigDict,
  split: str = 'val',
  *,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """One pass over this process's slice of a split, padded so that no example is dropped.

  Yields {'image', 'mask' as in `train_batches`, 'valid': float32 [b]} with
  b = config.eval_batch_size // process_count; 'valid' is 1 for real examples and 0 for the
  all-zero padding. Every process yields ceil(max slice size / b) batches, since the jitted eval
  step runs on all processes in lockstep; each example appears exactly once over all processes.
  """
  _check_split(split)
  index, count = _process(process_index, process_count)
  batch = _local_batch(config.eval_batch_size, count, 'config.eval_batch_size')
  fetch, n = _source(config, split, index, count, equal=False)
  total = _split_size(config, split)
  largest = -(-total // count)  # Slice sizes differ by at most one; the largest is ceil.
  num_batches = -(-largest // batch)
  size = config.data.image_size

  def load(i):
    image, mask = fetch(i)
    image = normalize(tf.cast(image, tf.float32), config.data.normalize)
    return {'image': image, 'mask': tf.cast(mask, tf.float32), 'valid': tf.constant(1.0)}

  padding = {
    'image': tf.zeros([size, size, 3], tf.float32),
    'mask': tf.zeros([size, size, 1], tf.float32),
    'valid': tf.constant(0.0),
  }
  ds = tf.data.Dataset.range(n).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(num_batches * batch - n))
  ds = ds.batch(batch, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(_options())
  return ds.as_numpy_iterator()


# ---------------------------------------------------------------------------------------------
# Sources: fetch functions over this process's slice of a split.


def _source(
  config: ml_collections.ConfigDict, split: str, index: int, count: int, *, equal: bool
) -> tuple[Fetch, int]:
  """(fetch, n): fetch(i) -> (image uint8 [S, S, 3], mask uint8 [S, S, 1]) for i < n.

  With `equal`, every process gets n = total // count examples (training); otherwise process p
  gets the whole [p*total//count, (p+1)*total//count) (evaluation).
  """
  total = _split_size(config, split)
  start = _slice_start(total, index, count)
  n = total // count if equal else _slice_start(total, index + 1, count) - start
  if not config.data.cache:
    return _uncached_source(config, split, start, n), n
  key = (repr(sorted(config.data.to_dict().items())), config.seed, split, start, n)
  if key not in _CACHE:
    fetch = _uncached_source(config, split, start, n)
    _CACHE[key] = _materialize(fetch, n, config.data.image_size)
    while len(_CACHE) > _MAX_CACHED_SOURCES:
      _CACHE.popitem(last=False)
  else:
    _CACHE.move_to_end(key)
  images, masks = _CACHE[key]

  def cached(i):
    return tf.gather(images, i), tf.gather(masks, i)

  return cached, n


_CACHE: collections.OrderedDict = collections.OrderedDict()


def _materialize(fetch: Fetch, n: int, size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Runs fetch over 0..n-1 once (in parallel, in order) and stacks the uint8 results."""
  ds = tf.data.Dataset.range(n).map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  images = [tf.zeros([0, size, size, 3], tf.uint8)]
  masks = [tf.zeros([0, size, size, 1], tf.uint8)]
  for image, mask in ds.batch(_MATERIALIZE_CHUNK).with_options(_options()):
    images.append(image)
    masks.append(mask)
  return tf.concat(images, 0), tf.concat(masks, 0)


def _uncached_source(config: ml_collections.ConfigDict, split: str, start: int, n: int) -> Fetch:
  data = config.data
  size = data.image_size
  if data.source == 'synthetic':
    seed = config.seed if split == 'train' else config.seed + _SYNTHETIC_VAL_SEED_OFFSET
    images, masks = synthetic.make_dataset(
      n, data.synthetic_size, data.synthetic_size, seed, start=start
    )
    images = tf.constant(images)
    masks = tf.constant(masks[..., None])

    def fetch_synthetic(i):
      return _resize(tf.gather(images, i), tf.gather(masks, i), size)

    return fetch_synthetic
  if data.source == 'folder':
    _, image_paths, mask_paths = _folder_split(data, split)
    image_paths = tf.constant(image_paths[start : start + n], tf.string)
    mask_paths = tf.constant(mask_paths[start : start + n], tf.string)

    def fetch_folder(i):
      image = tf.io.decode_image(
        tf.io.read_file(tf.gather(image_paths, i)), channels=3, expand_animations=False
      )
      mask = tf.io.decode_image(
        tf.io.read_file(tf.gather(mask_paths, i)), channels=1, expand_animations=False
      )
      # Ground-truth PNGs are 0/255 but JPEG-like artefacts or resampling in third-party copies
      # leave other values; > 128 is how the ISIC scorer binarizes them.
      mask = tf.cast(mask > 128, tf.uint8)
      return _resize(image, mask, size)

    return fetch_folder
  raise _unknown_source(data.source)


def _resize(image: tf.Tensor, mask: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Stretches an example to size x size; the image stays uint8 and the mask stays binary.

  Antialiasing matters for downscaling ISIC's multi-megapixel photos; for the mask, resizing its
  0/1 values and thresholding at 0.5 keeps the lesion's area close to right at any scale.
  """
  image = tf.image.resize(tf.cast(image, tf.float32), [size, size], 'bilinear', antialias=True)
  image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
  mask = tf.image.resize(tf.cast(mask, tf.float32), [size, size], 'bilinear', antialias=True)
  mask = tf.cast(mask > 0.5, tf.uint8)
  return tf.ensure_shape(image, [size, size, 3]), tf.ensure_shape(mask, [size, size, 1])


def _folder_ids(data: ml_collections.ConfigDict) -> tuple[list[str], list[str], list[str]]:
  """Sorted ids with their image and mask paths; checks up front that every image has a mask."""
  if not data.dir:
    raise ValueError(
      "config.data.source='folder' needs config.data.dir: the folder that holds "
      f'{data.image_dir!r} and {data.mask_dir!r}.'
    )
  if not tf.io.gfile.isdir(data.dir):
    raise FileNotFoundError(f'config.data.dir={data.dir!r} is not a directory.')
  pattern = os.path.join(data.dir, data.image_dir, '*' + data.image_ext)
  image_paths = sorted(tf.io.gfile.glob(pattern))
  if not image_paths:
    raise FileNotFoundError(
      f'No images match {pattern!r}; check config.data.dir, config.data.image_dir and '
      'config.data.image_ext.'
    )
  mask_root = os.path.join(data.dir, data.mask_dir)
  if not tf.io.gfile.isdir(mask_root):
    raise FileNotFoundError(
      f'Mask folder {mask_root!r} does not exist; check config.data.mask_dir.'
    )
  mask_names = set(tf.io.gfile.listdir(mask_root))
  ids, mask_paths, missing = [], [], []
  for path in image_paths:
    ident = os.path.basename(path)[: -len(data.image_ext)]
    name = ident + data.mask_suffix
    ids.append(ident)
    mask_paths.append(os.path.join(mask_root, name))
    if name not in mask_names:
      missing.append((path, mask_paths[-1]))
  if missing:
    image, mask = missing[0]
    raise FileNotFoundError(
      f'{len(missing)} image(s) have no mask, e.g. image {image!r} expects mask {mask!r}; check '
      'config.data.mask_dir and config.data.mask_suffix.'
    )
  return ids, image_paths, mask_paths


def _folder_split(
  data: ml_collections.ConfigDict, split: str
) -> tuple[list[str], list[str], list[str]]:
  """(ids, image_paths, mask_paths) of one split, sorted by id."""
  ids, image_paths, mask_paths = _folder_ids(data)
  train_ids, val_ids = split_ids(ids, data.num_folds, data.fold, data.split_seed)
  keep = set(train_ids if split == 'train' else val_ids)
  rows = [row for row in zip(ids, image_paths, mask_paths, strict=True) if row[0] in keep]
  return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


# ---------------------------------------------------------------------------------------------
# Helpers.


def _split_size(config: ml_collections.ConfigDict, split: str) -> int:
  return num_examples(config, split)


def _slice_start(total: int, index: int, count: int) -> int:
  return index * total // count


def _process(index: int | None, count: int | None) -> tuple[int, int]:
  if index is None or count is None:
    import jax  # Lazy: importing jax initializes its backends, not needed to build a pipeline.

    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
  if not 0 <= index < count:
    raise ValueError(f'process_index={index} must be in [0, process_count={count}).')
  return index, count


def _local_batch(global_batch: int, count: int, field: str) -> int:
  if global_batch <= 0 or global_batch % count:
    raise ValueError(
      f'{field}={global_batch} must be a positive multiple of the process count ({count}).'
    )
  return global_batch // count


def _check_split(split: str) -> None:
  if split not in _SPLITS:
    raise ValueError(f'split={split!r} is not one of {_SPLITS}.')


def _unknown_source(source: str) -> ValueError:
  return ValueError(f'config.data.source={source!r} is not one of {_SOURCES}.')


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  return options
