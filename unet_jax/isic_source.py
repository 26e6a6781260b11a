"""Reading the prepared ISIC 2018 Task 1 TFDS dataset (`unet_jax.isic2018`): splits and examples.

The 'isic' source of the input pipeline and the native-resolution evaluation both read through
here. Pipeline splits map onto the official ones by `config.data.val_split`:
  - 'kfold' (the seed's protocol): 'train'/'val' are a k-fold split of the official training
    split (`unet_jax.folds`, the same as the folder source), so the official validation
    split stays unseen until a final check;
  - 'validation': 'train' is all 2594 training images and 'val' the official 100.
'test' is the official test split.

Data prepared by an older version of the builder is refused with the command that prepares it
again, rather than read with another layout (or prepared again unasked, which takes an hour and
the archives).
"""

import os

import ml_collections
import tensorflow as tf

from unet_jax import folds

VAL_SPLITS = ('kfold', 'validation')


def builder(data: ml_collections.ConfigDict):
  """The `isic2018_task1/<S>` TFDS builder for S = config.data.image_size, prepared if needed.

  Preparing (download or manual archives, then one decode of every photo) runs here only in a
  single-process run (a multi-host run's processes may not share the folder); separate runs that
  need it at once take turns, the others then reading it (`isic2018.download_and_prepare`).
  """
  import jax

  from unet_jax import cli, isic2018

  cli.refuse_unexpanded_home(data.tfds_data_dir,
                             f'config.data.tfds_data_dir={data.tfds_data_dir!r}')
  found = _tfds_builder(data)
  if found.is_prepared():
    return found
  prepare = prepare_command(found, data.image_size)
  config_dir = os.path.dirname(found.data_dir)
  stale = sorted(v for v in (os.listdir(config_dir) if os.path.isdir(config_dir) else [])
                 if v != str(found.version) and v[:1].isdigit())
  if stale:
    raise FileNotFoundError(
      f'{config_dir} holds {isic2018.NAME}/{data.image_size} prepared by version(s) {stale} of '
      f'the builder; this code reads version {found.version} '
      f'({isic2018.Isic2018Task1.RELEASE_NOTES[str(found.version)]}). Prepare it again: '
      f'{prepare}')
  if jax.process_count() > 1:
    raise FileNotFoundError(
      f'The TFDS dataset {isic2018.NAME}/{data.image_size} is not prepared in '
      f'{found.data_dir!r}. Prepare it once from one process first: {prepare}')
  isic2018.download_and_prepare(found)
  return found


def is_prepared(data: ml_collections.ConfigDict) -> bool:
  """Whether the dataset `builder` would return is prepared here (it would prepare it if not)."""
  return _tfds_builder(data).is_prepared()


def prepare_command(found, image_size: int) -> str:
  """The command that prepares the dataset of the builder `found` (`_tfds_builder`)."""
  return (f'python -m unet_jax.prepare_isic --size={image_size} '
          f'--data_dir={found.data_dir_root} --manual_dir=<folder with the ISIC archives>')


def unprepared(tfds_data_dir: str, image_size: int) -> str | None:
  """The command that prepares `isic2018_task1/<image_size>` in `tfds_data_dir` ('': TFDS's
  default), or None if it is prepared there."""
  data = ml_collections.ConfigDict({'tfds_data_dir': tfds_data_dir, 'image_size': image_size})
  found = _tfds_builder(data)
  return None if found.is_prepared() else prepare_command(found, image_size)


def _tfds_builder(data: ml_collections.ConfigDict):
  import tensorflow_datasets as tfds

  from unet_jax import isic2018

  return tfds.builder(isic2018.NAME, config=isic2018.builder_config(data.image_size),
                      data_dir=data.tfds_data_dir or None)


_IDS: dict[tuple[str, str], list[str]] = {}


def _ids(data: ml_collections.ConfigDict, tfds_split: str) -> list[str]:
  """Sorted ids of a TFDS split: read once per process (records parsed, images not decoded)."""
  import tensorflow_datasets as tfds

  from unet_jax import input_pipeline  # Which imports this module.

  prepared = builder(data)
  key = (prepared.data_dir, tfds_split)
  if key not in _IDS:
    ds = prepared.as_dataset(split=tfds_split,
                             decoders=tfds.decode.PartialDecoding({'id': True}))
    ds = ds.with_options(input_pipeline.tf_data_options())
    _IDS[key] = sorted(x['id'].decode() for x in ds.as_numpy_iterator())
  return _IDS[key]


def split(data: ml_collections.ConfigDict, name: str) -> tuple[str, list[str]]:
  """(TFDS split, sorted ids) of a pipeline split ('train', 'val' or 'test')."""
  if data.val_split not in VAL_SPLITS:
    raise ValueError(f'config.data.val_split={data.val_split!r} is not one of {VAL_SPLITS}.')
  if name == 'test':
    return 'test', _ids(data, 'test')
  if data.val_split == 'validation':
    tfds_split = 'train' if name == 'train' else 'validation'
    return tfds_split, _ids(data, tfds_split)
  train_ids, val_ids = folds.kfold_split(_ids(data, 'train'), data.num_folds, data.fold,
                                         data.split_seed)
  return 'train', train_ids if name == 'train' else val_ids


def records(data: ml_collections.ConfigDict, name: str, ids: list[str], *,
            native_mask: bool = False) -> tf.data.Dataset:
  """The examples of `ids` (a subset of split `name`), in the dataset's stored order, decoded.

  Elements: {'id', 'image' uint8 [h, w, 3], 'mask' uint8 [h, w, 1] in {0, 1} (both at the
  decode scale of `unet_jax.photos`), 'native' int32 [2] (H, W)}, and with `native_mask` also
  'mask_native' uint8 [H, W] in {0, 1}. Records are filtered on their id before anything is
  decoded, so a process decodes only its own examples.
  """
  import tensorflow_datasets as tfds

  from unet_jax import input_pipeline, photos  # input_pipeline imports this module.

  tfds_split, _ = split(data, name)
  wanted = tf.constant(ids, tf.string, shape=[len(ids)])
  skip = tfds.decode.SkipDecoding()
  ds = builder(data).as_dataset(
    split=tfds_split, decoders={'image': skip, 'mask': skip, 'mask_native': skip})
  # Traced as written, without AutoGraph: see input_pipeline's `_as_written`.
  as_written = tf.autograph.experimental.do_not_convert
  ds = ds.filter(as_written(lambda x: tf.reduce_any(tf.equal(x['id'], wanted))))

  def decode(x):
    out = {
      'id': x['id'],
      'image': tf.ensure_shape(tf.io.decode_png(x['image'], channels=3), [None, None, 3]),
      'mask': photos.decode_mask(x['mask']),
      'native': tf.stack([tf.cast(x['height'], tf.int32), tf.cast(x['width'], tf.int32)]),
    }
    if native_mask:
      out['mask_native'] = photos.decode_mask(x['mask_native'])[..., 0]
    return out

  ds = ds.map(as_written(decode), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.with_options(input_pipeline.tf_data_options())

