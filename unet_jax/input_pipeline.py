"""tf.data input pipeline: this process's slice of each batch, as numpy, deterministic, resumable.

The path of an example: a *source* ('synthetic', 'folder' or 'isic') yields it, decoded by
`unet_jax.photos` (the one preprocessing path, which evaluate and predict take too); it is resized
once per `config.data.resize_policy` (`unet_jax.resize_policy`: 'stretch' or 'pad' to S x S, 'crop'
to short side S, geometry from the photo's native size) and (with `config.data.cache`) kept in
memory as uint8; training then draws it in a per-epoch order, takes a random S x S crop of it
('crop' policy only) and ships it as uint8: the train step augments and normalizes it on the
accelerator (`unet_jax.augment`), which is both cheaper there and 4x fewer bytes to transfer.

`eval_batches` is the cheap pooled S x S validation pass (`val_pooled_*`): the central S x S crop
under 'crop', normalized float32 images, integer masks. The challenge's per-image numbers at
native resolution come from `unet_jax.validation` instead.

Sources and splits ('train', 'val', and for 'isic' also 'test'):
  - 'synthetic': generated on the fly (`unet_jax.synthetic`), no download; `data.num_examples`
    examples drawn from `data.synthetic_seed`, split into 'train'/'val' by k-fold like a folder.
  - 'folder': any folder in the ISIC layout (ISIC 2016-2018, HAM10000, your own) under
    `config.data.dir`; 'train'/'val' are a k-fold split of it (`unet_jax.folds`).
  - 'isic': the ISIC 2018 Task 1 TFDS dataset (`unet_jax.isic2018`), `isic2018_task1/<S>` under
    `config.data.tfds_data_dir`, prepared on first use; `unet_jax.isic_source` maps the splits
    ('kfold' folds of the official training split, or the official validation split).

Why the epochs are built by hand rather than with `ds.shuffle().repeat()`: a shuffle buffer's
order depends on everything drawn before, so resuming at step k would mean replaying k batches.
Here epoch e's order is a stateless permutation keyed by (config.seed, e) and the 'crop' policy's
training crop is keyed by (config.seed, e, example), so batch k is a pure function of the config
and k: `train_batches(config, start_step=k)` starts exactly where an uninterrupted run would be,
skipping only indices (never decoding skipped examples). The augmentation on the device is keyed
by (config.seed, step, position in the batch), so it too follows the step.

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
from collections.abc import Callable, Iterator

import ml_collections
import numpy as np
import tensorflow as tf

from unet_jax import cli, folds, isic_source, normalization, photos, resize_policy, synthetic

for _kind in ('GPU', 'TPU'):
  # RuntimeError: TF was initialized already; ValueError: no such device type in this build.
  with contextlib.suppress(RuntimeError, ValueError):
    tf.config.set_visible_devices([], _kind)

_SOURCES = ('synthetic', 'folder', 'isic')
_SPLITS = ('train', 'val', 'test')
# Folded into an example's seed to draw its 'crop' policy training crop.
_CROP_SEED_SALT = 7919
# Keeps the caches of the last few (split, process) pipelines, i.e. train + val of one run, so
# periodic evaluation does not decode the validation set again each time.
_MAX_CACHED_SOURCES = 4
_MATERIALIZE_CHUNK = 256
# tf.data runs every function it is given through AutoGraph, which rewrites Python control flow on
# tensors into graph ops: a parse and transform of the source of each function and of every
# function it calls, about 3 s of a tiny run's 15 s start to end, and a generated file in the
# temporary folder per function, which a killed process leaves there. Our functions branch only
# on Python values (the config), so they are traced as written; one that branched on a tensor
# would fail to trace.
_as_written = tf.autograph.experimental.do_not_convert

# A source yields example i (0 <= i < n) of this process's slice as uint8 tensors.
Fetch = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def num_examples(config: ml_collections.ConfigDict, split: str) -> int:
  """Number of examples in the whole split (all processes together)."""
  data = config.data
  check_split(data, split)
  if data.source == 'isic':
    return len(isic_source.split(data, split)[1])
  if data.source == 'synthetic':
    return len(synthetic_indices(data, split))
  if data.source == 'folder':
    return len(folder_split(data, split)[0])
  raise _unknown_source(data.source)


def train_batches(
  config: ml_collections.ConfigDict,
  *,
  start_step: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Infinite iterator over this process's slice of each global training batch.

  Yields {'image': uint8 [b, S, S, 3] raw pixels, 'mask': uint8 [b, S, S, 1] in {0, 1}} with
  b = config.batch_size // process_count, unaugmented: `augment.make_preprocess` augments and
  normalizes them inside the train step. Batch k (k >= start_step) is the same whether iteration
  started at 0 or at `start_step=k`.
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
  normalization.check_mode(config.data.normalize)  # Used on the device; fail before tf.data.
  seed = tf.constant(config.seed, tf.int64)
  offset = tf.constant(_slice_start(_split_size(config, 'train'), index, count), tf.int64)

  def epoch_indices(epoch):
    order = tf.random.experimental.stateless_shuffle(
      tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch])
    )[:used]
    return tf.data.Dataset.from_tensor_slices((tf.fill([used], epoch), order))

  def load(epoch, i):
    image, mask = fetch(i)
    if config.data.resize_policy == 'crop':
      # Keyed by the example's index in the whole split, so each example gets its own crop in
      # each epoch, the same on any number of processes.
      example_seed = tf.random.experimental.stateless_fold_in(tf.stack([seed, epoch]), offset + i)
      crop_seed = tf.random.experimental.stateless_fold_in(example_seed, _CROP_SEED_SALT)
      image, mask = resize_policy.crop_for_training(image, mask, config.data.image_size, crop_seed)
    return {'image': tf.cast(image, tf.uint8), 'mask': tf.cast(mask, tf.uint8)}

  ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max)
  ds = ds.flat_map(_as_written(epoch_indices))
  ds = ds.skip(skip * batch)  # Indices only: skipped examples are never loaded.
  ds = ds.map(_as_written(load), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch, drop_remainder=True)  # `used` is a multiple of `batch`: no mixed epochs.
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(tf_data_options())
  return _naming_bad_files(ds.as_numpy_iterator(), config.data, 'train')


def eval_batches(
  config: ml_collections.ConfigDict,
  split: str = 'val',
  *,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """One pass over this process's slice of a split, padded so that no example is dropped.

  Yields {'image': float32 [b, S, S, 3] normalized per config.data.normalize, 'mask': int32
  [b, S, S, 1] in {0, 1}, 'valid': int32 [b]} with
  b = config.eval.batch_size // process_count; 'valid' is 1 for real examples and 0 for the
  all-zero padding. Every process yields ceil(max slice size / b) batches, since the jitted eval
  step runs on all processes in lockstep; each example appears exactly once over all processes.
  """
  check_split(config.data, split)
  index, count = _process(process_index, process_count)
  batch = _local_batch(config.eval.batch_size, count, 'config.eval.batch_size')
  fetch, n = _source(config, split, index, count, equal=False)
  total = _split_size(config, split)
  largest = -(-total // count)  # Slice sizes differ by at most one; the largest is ceil.
  num_batches = -(-largest // batch)
  size = config.data.image_size

  def load(i):
    image, mask = fetch(i)
    if config.data.resize_policy == 'crop':  # Periodic evaluation sees the central S x S.
      image, mask = resize_policy.center_crop(image, size), resize_policy.center_crop(mask, size)
    image = normalization.normalize(tf.cast(image, tf.float32), config.data.normalize)
    return {'image': image, 'mask': tf.cast(mask, tf.int32), 'valid': tf.constant(1, tf.int32)}

  padding = {
    'image': tf.zeros([size, size, 3], tf.float32),
    'mask': tf.zeros([size, size, 1], tf.int32),
    'valid': tf.constant(0, tf.int32),
  }
  ds = tf.data.Dataset.range(n).map(
    _as_written(load), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(num_batches * batch - n))
  ds = ds.batch(batch, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(tf_data_options())
  return _naming_bad_files(ds.as_numpy_iterator(), config.data, split)


# ---------------------------------------------------------------------------------------------
# Sources: fetch functions over this process's slice of a split.


def _source(
  config: ml_collections.ConfigDict, split: str, index: int, count: int, *, equal: bool
) -> tuple[Fetch, int]:
  """(fetch, n): fetch(i) -> (image uint8 [h, w, 3], mask uint8 [h, w, 1]) for i < n.

  [h, w] is [S, S] for the 'stretch' and 'pad' policies, and has short side S for 'crop'. With
  `equal`, every process gets n = total // count examples (training); otherwise process p gets
  the whole [p*total//count, (p+1)*total//count) (evaluation). The 'isic' source is always
  cached: TFDS records can only be read in order, and random access is what the per-epoch
  permutation needs.
  """
  policy = config.data.resize_policy
  if policy not in resize_policy.POLICIES:
    raise ValueError(
      f'config.data.resize_policy={policy!r} is not one of {resize_policy.POLICIES}.'
    )
  total = _split_size(config, split)
  start = _slice_start(total, index, count)
  n = total // count if equal else _slice_start(total, index + 1, count) - start
  is_isic = config.data.source == 'isic'
  if not (config.data.cache or is_isic):
    return _uncached_source(config, split, start, n), n
  key = (repr(sorted(config.data.to_dict().items())), config.seed, split, start, n)
  if key not in _CACHE:
    if is_isic:
      _CACHE[key] = _isic_store(config.data, split, start, n)
    else:
      fetch = _uncached_source(config, split, start, n)
      ds = tf.data.Dataset.range(n).map(_as_written(lambda i: (*fetch(i), i)),
                                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      try:
        _CACHE[key] = _materialize(ds)[0]
      except tf.errors.InvalidArgumentError as error:
        raise _bad_file_error(config.data, split, error) from None
    while len(_CACHE) > _MAX_CACHED_SOURCES:
      _CACHE.popitem(last=False)
  else:
    _CACHE.move_to_end(key)
  return _store_fetch(_CACHE[key], config.data.image_size, policy), n


_CACHE: collections.OrderedDict = collections.OrderedDict()


class _Store(collections.namedtuple('_Store', 'images masks offsets shapes')):
  """Examples of any sizes in memory: all pixels in two flat uint8 buffers.

  Example i is `images[3 * offsets[i]:][:3 * h * w]` reshaped to [h, w, 3] (and likewise the
  mask, one channel) with (h, w) = shapes[i]. Flat buffers rather than a stacked [n, S, S, 3]
  array because the 'crop' policy keeps each image's aspect, so sizes differ; reordering the
  examples only permutes `offsets` and `shapes`.
  """


def _materialize(ds: tf.data.Dataset) -> tuple[_Store, np.ndarray]:
  """Runs a dataset of (image, mask, key) once, in order; returns the store and the keys."""

  def flatten(image, mask, key):
    return tf.reshape(image, [-1]), tf.reshape(mask, [-1]), tf.shape(image)[:2], key

  ds = ds.map(_as_written(flatten), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  images, masks, shapes, keys = [], [], [np.zeros([0, 2], np.int64)], []
  chunks = ds.ragged_batch(_MATERIALIZE_CHUNK).with_options(tf_data_options())
  for image, mask, shape, key in chunks:
    # Equal-size examples batch densely, others as ragged rows: flatten either way.
    for out, x in ((images, image), (masks, mask)):
      out.append(x.flat_values if isinstance(x, tf.RaggedTensor) else tf.reshape(x, [-1]))
    shapes.append(shape.numpy().astype(np.int64))
    keys.append(key.numpy())
  shapes = np.concatenate(shapes)
  pixels = shapes[:, 0] * shapes[:, 1]
  offsets = np.concatenate([[0], np.cumsum(pixels)[:-1]]).astype(np.int64)
  store = _Store(
    tf.concat([tf.zeros([0], tf.uint8), *images], 0),
    tf.concat([tf.zeros([0], tf.uint8), *masks], 0),
    offsets[: len(pixels)],
    shapes,
  )
  return store, np.concatenate(keys) if keys else np.zeros([0])


def _isic_store(data: ml_collections.ConfigDict, split: str, start: int, n: int) -> _Store:
  """This process's slice [start, start + n) of an ISIC split (sorted by id), resized, in memory."""
  ids = isic_source.split(data, split)[1][start : start + n]

  def resize(x):
    image, mask = resize_policy.resize_for_cache(
      x['image'], x['mask'], data.image_size, data.resize_policy, x['native']
    )
    return image, mask, x['id']

  store, keys = _materialize(isic_source.records(data, split, ids).map(_as_written(resize)))
  if len(keys) != n:
    raise ValueError(f'Expected {n} examples of the ISIC {split!r} split, read {len(keys)}.')
  order = np.argsort(keys)  # TFDS stores examples in a hashed order; the slice is sorted by id.
  return _Store(store.images, store.masks, store.offsets[order], store.shapes[order])


def _store_fetch(store: _Store, size: int, policy: str) -> Fetch:
  images, masks = store.images, store.masks
  offsets = tf.constant(store.offsets, tf.int64)
  shapes = tf.constant(store.shapes, tf.int64)
  square = [size, size] if policy in ('stretch', 'pad') else [None, None]

  def cached(i):
    offset, shape = tf.gather(offsets, i), tf.gather(shapes, i)
    pixels = shape[0] * shape[1]
    image = tf.reshape(tf.slice(images, [3 * offset], [3 * pixels]), tf.concat([shape, [3]], 0))
    mask = tf.reshape(tf.slice(masks, [offset], [pixels]), tf.concat([shape, [1]], 0))
    return tf.ensure_shape(image, [*square, 3]), tf.ensure_shape(mask, [*square, 1])

  return cached


def _uncached_source(config: ml_collections.ConfigDict, split: str, start: int, n: int) -> Fetch:
  data = config.data
  size = data.image_size
  if data.source == 'synthetic':
    side = data.synthetic_size
    images = np.zeros((n, side, side, 3), np.uint8)
    masks = np.zeros((n, side, side, 1), np.uint8)
    for row, k in enumerate(synthetic_indices(data, split)[start : start + n]):
      images[row], masks[row, ..., 0] = synthetic.make_example(data.synthetic_seed, k, side, side)
    images, masks = tf.constant(images), tf.constant(masks)

    def fetch_synthetic(i):
      return resize_policy.resize_for_cache(
        tf.gather(images, i), tf.gather(masks, i), size, data.resize_policy
      )

    return fetch_synthetic
  if data.source == 'folder':
    _, image_paths, mask_paths = folder_split(data, split)
    image_paths = tf.constant(image_paths[start : start + n], tf.string)
    mask_paths = tf.constant(mask_paths[start : start + n], tf.string)

    def fetch_folder(i):
      image_path, mask_path = tf.gather(image_paths, i), tf.gather(mask_paths, i)
      image, mask, native = photos.decode_example(
        tf.io.read_file(image_path), tf.io.read_file(mask_path), size,
        image_name=image_path, mask_name=mask_path,
      )
      return resize_policy.resize_for_cache(image, mask, size, data.resize_policy, native)

    return fetch_folder
  raise _unknown_source(data.source)


def _naming_bad_files(batches: Iterator, data: ml_collections.ConfigDict, split: str) -> Iterator:
  """`batches`, with a folder's undecodable file named when reading it fails (no cache).

  The except clause names no TensorFlow class: a generator still open as the interpreter ends
  (a script's iterator) is closed then, after `tf` was cleared, and the clause is evaluated for
  that GeneratorExit too (it printed "Exception ignored ... AttributeError" at the exit).
  """
  try:
    yield from batches
  except Exception as error:
    if not (data.source == 'folder' and isinstance(error, tf.errors.InvalidArgumentError)):
      raise
    raise _bad_file_error(data, split, error) from None


def _bad_file_error(data: ml_collections.ConfigDict, split: str,
                    error: tf.errors.InvalidArgumentError) -> ValueError:
  """The error a folder's bad file caused inside tf.data, with the file named.

  TensorFlow's decoders do not say which file they failed on, so the split's files are read
  once more in Python, in order, until one fails (only on this error path).
  """
  message = error.message
  if 'but its image' in message:  # photos.decode_example's size check names both files.
    return ValueError(message[message.index('Mask '):].split(']')[0].strip())
  _, image_paths, mask_paths = folder_split(data, split)
  for image_path, mask_path in zip(image_paths, mask_paths, strict=True):
    photos.read_photo(image_path, data.image_size)  # Raises ValueError naming the photo.
    try:
      photos.decode_mask(tf.io.read_file(mask_path))
    except tf.errors.OpError as bad:
      return ValueError(f'Cannot decode mask {mask_path!r}: {bad.message.strip()}')
  return ValueError(f'Reading config.data.dir={data.dir!r} failed: {message.strip()}')


def synthetic_id(index: int) -> str:
  return f'synthetic_{index:05d}'


def synthetic_indices(data: ml_collections.ConfigDict, split: str) -> list[int]:
  """The examples of a split of the synthetic source: a k-fold split of its
  `config.data.num_examples` examples, as the folder source splits a folder. Example k is
  `synthetic.make_example(config.data.synthetic_seed, k, S0, S0)` (S0 = data.synthetic_size),
  fixed by the data's own seed, not the run's: runs of any seed score the same validation
  images under the same ids ('synthetic_<k>')."""
  ids = [synthetic_id(k) for k in range(data.num_examples)]
  train_ids, val_ids = folds.kfold_split(ids, data.num_folds, data.fold, data.split_seed)
  return [int(i.rsplit('_', 1)[1]) for i in (train_ids if split == 'train' else val_ids)]


def _folder_ids(data: ml_collections.ConfigDict) -> tuple[list[str], list[str], list[str]]:
  """Sorted ids with their image and mask paths; checks up front that every image has a mask."""
  if not data.dir:
    raise ValueError(
      "config.data.source='folder' needs config.data.dir: the folder that holds "
      f'{data.image_dir!r} and {data.mask_dir!r}.'
    )
  if not tf.io.gfile.isdir(data.dir):
    relative = '' if (os.path.isabs(data.dir) or '://' in data.dir
                      or cli.unexpanded_home(data.dir)) else (
        f', relative to the current folder {os.getcwd()!r} (the config.json of a run started '
        'before runs recorded their data paths absolute holds them as given: run this from the '
        'folder it started in, or edit them there)')
    raise FileNotFoundError(f'config.data.dir={data.dir!r} is not a directory'
                            f'{relative}{cli.home_hint(data.dir)}.')
  pattern = os.path.join(data.dir, data.image_dir, '*' + data.image_ext)
  # Not hidden files, which tf.io.gfile's glob matches (Python's does not): a copy from macOS
  # leaves an AppleDouble file `._<name>` beside each file, no image. Every reader of a folder
  # (the TFDS builder, evaluate, predict) skips them.
  image_paths = sorted(p for p in tf.io.gfile.glob(pattern)
                       if not os.path.basename(p).startswith('.'))
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
  orphans = sorted(mask_names - {os.path.basename(p) for p in mask_paths})
  orphans = [n for n in orphans if n.endswith(data.mask_suffix) and not n.startswith('.')]
  if orphans:
    ident = orphans[0][: -len(data.mask_suffix)]
    raise FileNotFoundError(
      f'{len(orphans)} mask(s) have no image, e.g. mask '
      f'{os.path.join(mask_root, orphans[0])!r} expects image '
      f'{os.path.join(data.dir, data.image_dir, ident + data.image_ext)!r}; check '
      'config.data.image_dir and config.data.image_ext, or remove the stray masks.'
    )
  if data.dir not in _WARNED:
    _WARNED.add(data.dir)
    photos.warn_converted(image_paths, f' in {data.dir}')
  return ids, image_paths, mask_paths


_WARNED: set[str] = set()  # Folders whose photos were already checked for conversions.


def folder_split(
  data: ml_collections.ConfigDict, split: str
) -> tuple[list[str], list[str], list[str]]:
  """(ids, image_paths, mask_paths) of one split, sorted by id."""
  ids, image_paths, mask_paths = _folder_ids(data)
  train_ids, val_ids = folds.kfold_split(ids, data.num_folds, data.fold, data.split_seed)
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


def check_split(data: ml_collections.ConfigDict, split: str) -> None:
  """Raises ValueError unless the run's data source has split `split` ('test': ISIC only)."""
  if split not in _SPLITS:
    raise ValueError(f'split={split!r} is not one of {_SPLITS}.')
  if split == 'test' and data.source != 'isic':
    raise ValueError(
      f"split='test' needs config.data.source='isic' (source is {data.source!r}): only the "
      "ISIC 2018 dataset has a held-out test split; a run's own held-out images are 'val'."
    )


def _unknown_source(source: str) -> ValueError:
  return ValueError(f'config.data.source={source!r} is not one of {_SOURCES}.')


def tf_data_options() -> tf.data.Options:
  """The options of every pipeline we iterate: deterministic order, and no autotuning model.

  tf.data's autotuning runs a thread per iterator that re-plans the pipeline, at first every few
  milliseconds and then ever less often, up to once a minute, and deleting the iterator waits
  for that thread (TensorFlow 2.21). A training iterator is deleted as its run ends: the
  quickstart (600 steps) printed its final metrics 36 to 45 s after its last step, doing
  nothing, on the 2-core machine (300-step runs: 49 and 54 s); with this, 0.1 s. Without the
  model, `tf.data.AUTOTUNE` parallelism is fixed at the smaller of 16 and the cores tf.data may
  use, and prefetch buffers still grow as their consumer needs (measured: the same batches, and
  the training input's images/s on one and two cores within the run-to-run spread of
  `experiments.benchmark --mode input`).
  """
  options = tf.data.Options()
  options.deterministic = True
  options.autotune.enabled = False
  return options
