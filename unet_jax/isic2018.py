"""ISIC 2018 Task 1 (lesion boundary segmentation) as a TFDS dataset: `isic2018_task1/<S>`.

Why a TFDS builder: the archives are ~11 GB of multi-megapixel JPEGs, and decoding one 4288 x 2848
photo costs more than a training step on it at 256 px. Preparing decodes every photo once, keeps
only what training needs at one resolution, and writes it as TFRecords that any later run, on any
machine, reads in seconds. Importing `unet_jax` registers the builder, so
`tfds.load('isic2018_task1/256')` and `python -m unet_jax.prepare_isic --size 256` find it.

One BuilderConfig per training resolution S (`isic2018_task1/224`, `/256`, ...). Each example holds
what `unet_jax.photos.decode_example` makes of the two files, the one preprocessing path that the
folder source, evaluate and predict take too:
  - 'image': the photo at its libjpeg decode scale for S (1/8, 1/4 or 1/2 of its size, the
    smallest whose short side is still >= S; PNG, lossless). Every resize policy of
    `unet_jax.resize_policy` ('stretch', 'pad', 'crop') is made from it in tf.data, from the
    native size, so one prepared dataset serves all policies at that S, and the model sees the
    pixels `predict` would give it for the original JPEG.
  - 'mask': the lesion mask binarized (> 128) and brought to the image's size (PNG, 0/255).
  - 'mask_native': the ground truth at the photo's own resolution (PNG, 0/255), for evaluation at
    native resolution as the challenge scores it.
  - 'id' ('ISIC_0000000'), 'height', 'width': the photo's original size.
Version 2.0.0 made this layout; data prepared by 1.0.0 (short side S) is refused with the command
that prepares it again (`unet_jax.isic_source`).
Splits: 'train' (2594), 'validation' (100), 'test' (1000), the official ones; k-fold splits of
'train' are made by the input pipeline (`unet_jax.folds.kfold_split`), not stored.

Where the archives come from, per archive, first match wins:
  1. `<manual_dir>/<name>/` (already unpacked) or `<manual_dir>/<name>.zip`, where manual_dir is
     TFDS's manual directory (default `<data_dir>/downloads/manual/`);
  2. a download from https://isic-challenge-data.s3.amazonaws.com/2018/<name>.zip.
If an archive is neither there nor downloadable, the error lists the files expected and where
(on a machine without network at once: the host is asked before TFDS would retry for minutes).

Checksums: downloads are verified against `unet_jax/checksums.tsv` (TFDS's per-dataset checksums
file, next to this module). We could not fetch the archives when writing this, so the file is not
shipped: the first `python -m unet_jax.prepare_isic --size 256 --register_checksums` (with
network, from a checkout) downloads the six archives and writes their sizes and SHA-256s there;
commit that file, and every later download is checked against it.

Bad data fails the build with the file named: an unreadable image, an image without a mask or a
mask without an image, a mask whose size differs from its image's, a split whose size is not the
official one (a partial download or extraction). Masks are binarized at > 128, as the official
scorer does.

TensorFlow is imported inside functions only: `import tensorflow_datasets` does not import it, and
`unet_jax/__init__.py` imports this module, which must stay cheap and TF-free.
"""

import concurrent.futures
import contextlib
import dataclasses
import os
import re
import shutil
import socket
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from unet_jax import workdir_lock

NAME = 'isic2018_task1'
URL = 'https://isic-challenge-data.s3.amazonaws.com/2018/'
# TFDS split name -> the word the archive names use.
SPLIT_PARTS = {'train': 'Training', 'validation': 'Validation', 'test': 'Test'}
# Official split sizes; a prepared split of another size means a partial or wrong archive.
EXPECTED_COUNTS = {'train': 2594, 'validation': 100, 'test': 1000}
# Training resolutions with a registered config; any other S works through `builder_config(S)`.
SIZES = (64, 96, 128, 192, 224, 256, 320, 384, 512)
IMAGE_EXT = '.jpg'
MASK_SUFFIX = '_segmentation.png'

_CITATION = """
@article{codella2019skin,
  title={Skin Lesion Analysis Toward Melanoma Detection 2018: A Challenge Hosted by the
         International Skin Imaging Collaboration (ISIC)},
  author={Codella, Noel and Rotemberg, Veronica and Tschandl, Philipp and Celebi, M. Emre and
          Dusza, Stephen and Gutman, David and Helba, Brian and Kalloo, Aadi and Liopyris,
          Konstantinos and Marchetti, Michael and Kittler, Harald and Halpern, Allan},
  journal={arXiv preprint arXiv:1902.03368},
  year={2019}
}
@article{tschandl2018ham10000,
  title={The HAM10000 dataset, a large collection of multi-source dermatoscopic images of
         common pigmented skin lesions},
  author={Tschandl, Philipp and Rosendahl, Cliff and Kittler, Harald},
  journal={Scientific Data},
  volume={5},
  pages={180161},
  year={2018}
}
"""


def input_name(part: str) -> str:
  """'Training' -> 'ISIC2018_Task1-2_Training_Input' (the archive and its top folder)."""
  return f'ISIC2018_Task1-2_{part}_Input'


def truth_name(part: str) -> str:
  """'Training' -> 'ISIC2018_Task1_Training_GroundTruth' (the archive and its top folder)."""
  return f'ISIC2018_Task1_{part}_GroundTruth'


ARCHIVES = tuple(n for p in SPLIT_PARTS.values() for n in (input_name(p), truth_name(p)))

_MANUAL_INSTRUCTIONS = f"""\
Without network access (or to reuse a download), put the six ISIC 2018 Task 1 archives from
{URL} (https://challenge.isic-archive.com/data/#2018) in the TFDS manual directory,
`<data_dir>/downloads/manual/` by default (`python -m unet_jax.prepare_isic --manual_dir=...` or
`tfds.download.DownloadConfig(manual_dir=...)` to change it), either as the zips or unpacked:
""" + ''.join(f'  {n}.zip  or  {n}/\n' for n in ARCHIVES)


@dataclasses.dataclass(eq=False)
class Isic2018Task1Config(tfds.core.BuilderConfig):
  """One training resolution: images are stored at the libjpeg decode scale for `size`."""

  size: int = 256


def builder_config(size: int) -> Isic2018Task1Config:
  """The config for training resolution `size`: a registered one, or a new one of that name."""
  for config in Isic2018Task1.BUILDER_CONFIGS:
    if config.size == size:
      return config
  if size < 8:
    raise ValueError(f'ISIC 2018 training resolution {size} must be >= 8 pixels.')
  return _make_config(size)


def _make_config(size: int) -> Isic2018Task1Config:
  return Isic2018Task1Config(
    name=str(size),
    description=f'Images at their libjpeg decode scale for a training size of {size} px.',
    size=size,
  )


class Isic2018Task1(tfds.core.GeneratorBasedBuilder):
  """ISIC 2018 Task 1 images and lesion masks, stored at one training resolution per config."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
    '1.0.0': 'Short side = config size; native-resolution masks kept.',
    '2.0.0': 'Images at their libjpeg decode scale for the config size (unet_jax.photos, the '
             'path inference takes too), masks at the same size; the resize policy makes the '
             'model geometry in the pipeline.',
  }
  BUILDER_CONFIGS = [_make_config(s) for s in SIZES]
  DEFAULT_CONFIG_NAME = '256'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_INSTRUCTIONS
  # Tests override this (monkeypatch) to build tiny fake archives; None skips the check.
  EXPECTED_COUNTS = EXPECTED_COUNTS
  # Threads preparing examples; TF's decode and resize ops release the GIL.
  NUM_WORKERS = os.cpu_count() or 1

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file; TFDS looks for `checksums.tsv` next to it.

    Overridden because TFDS 4.9.10's own lookup needs the `importlib_resources` backport for
    builders outside its package, which is not installed with it.
    """
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    png = {'encoding_format': 'png'}
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        'ISIC 2018 Task 1: dermoscopy images with expert lesion masks. Images (and masks, '
        'resized to them) at the libjpeg decode scale whose short side is at least '
        f'{self.builder_config.size} px; the mask at native resolution is kept for evaluation.'
      ),
      features=tfds.features.FeaturesDict(
        {
          'id': tfds.features.Text(),
          'image': tfds.features.Image(shape=(None, None, 3), **png),
          'mask': tfds.features.Image(shape=(None, None, 1), **png),
          'mask_native': tfds.features.Image(shape=(None, None, 1), **png),
          'height': np.int32,
          'width': np.int32,
        }
      ),
      supervised_keys=('image', 'mask'),
      homepage='https://challenge.isic-archive.com/data/#2018',
      citation=_CITATION,
      license='CC BY-NC 4.0 (ISIC 2018 challenge data; see LICENSE.txt in the archives).',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    folders = _locate_archives(dl_manager)
    return {
      split: self._generate_examples(
        folders[input_name(part)], folders[truth_name(part)], split
      )
      for split, part in SPLIT_PARTS.items()
    }

  def _generate_examples(self, image_dir, mask_dir, split: str):
    pairs = pair_files(os.fspath(image_dir), os.fspath(mask_dir))
    expected = (self.EXPECTED_COUNTS or {}).get(split)
    if expected is not None and len(pairs) != expected:
      raise ValueError(
        f'ISIC 2018 Task 1 {split!r} should have {expected} images, found {len(pairs)} in '
        f'{os.fspath(image_dir)!r}: a partial download or extraction? Delete it and build '
        'again; for other data in this layout use the folder source (configs/isic_folder.py).'
      )
    size = self.builder_config.size
    with concurrent.futures.ThreadPoolExecutor(self.NUM_WORKERS) as pool:
      yield from pool.map(lambda pair: prepare_example(*pair, size), pairs)


def download_and_prepare(builder: tfds.core.DatasetBuilder, download_config=None) -> None:
  """`builder.download_and_prepare`, one process at a time, leaving no trace where it fails.

  A preparation holds a lock on the data folder (`<data_dir>/.locks/`): a second process that
  needs the same dataset (runs started together, a second `prepare_isic`) waits for it, saying
  whom it waits for, then reads what the first prepared instead of downloading and writing the
  same files. Holding the lock, a TFDS `incomplete.*` folder beside the dataset is one a killed
  preparation left (TFDS removes its own on any other exit): it is removed, named with its size.
  Where the preparation fails (an archive missing, a photo unreadable), the empty folders it
  made, and TFDS's metadata of a dataset folder it made, are removed; what it fetched
  (downloads, extracted archives) stays for the next try.
  """
  root = os.fspath(builder.data_dir_root)
  before = {folder for folder, _, _ in os.walk(root)}
  name = f'prepare_{builder.name}_{builder.builder_config.name}'
  with workdir_lock.waiting(root, name, log_wait=lambda message: logging.warning(
      'Preparing %s/%s: %s', builder.name, builder.builder_config.name, message)) as lock:
    if builder.is_prepared():  # By the process this one waited for.
      builder.info.read_from_directory(builder.data_dir)
      logging.info('%s/%s was prepared by another process while this one waited: %s',
                   builder.name, builder.builder_config.name, builder.data_dir)
      return
    _remove_killed_preparations(builder)
    try:
      builder.download_and_prepare(download_config=download_config)
    except BaseException:
      if os.path.dirname(lock) not in before:
        workdir_lock.remove_lock_file(lock)
      _remove_made_folders(root, before)
      raise


def _remove_killed_preparations(builder: tfds.core.DatasetBuilder) -> None:
  """Removes TFDS's `incomplete.*` folders beside the dataset's version folder (where a
  preparation writes until it renames its folder into place): called holding the preparation
  lock, so no live preparation of ours writes there."""
  parent = os.path.dirname(os.fspath(builder.data_dir))
  if not os.path.isdir(parent):
    return
  for name in sorted(os.listdir(parent)):
    if not name.startswith(tfds.core.constants.INCOMPLETE_PREFIX):
      continue
    path = os.path.join(parent, name)
    size = sum(os.path.getsize(os.path.join(folder, file))
               for folder, _, files in os.walk(path) for file in files)
    logging.warning('Removing %s (%.2f GB): the folder of a preparation that was killed (TFDS '
                    'removes its folder on any other exit).', path, size / 1e9)
    shutil.rmtree(path)


def _remove_made_folders(root: str, before: set[str]) -> None:
  for folder, _, _ in os.walk(root, topdown=False):
    if folder in before:
      continue
    if os.path.basename(folder) == '.config' and os.path.dirname(folder) not in before:
      shutil.rmtree(folder, ignore_errors=True)  # metadata.json of the dataset folder it made.
    with contextlib.suppress(OSError):  # Not empty: it holds what was fetched.
      os.rmdir(folder)


def _locate_archives(dl_manager) -> dict[str, str]:
  """{archive name: folder holding its files}, from the manual directory or downloaded."""
  try:
    manual = dl_manager.manual_dir
  except AssertionError:  # TFDS raises this when the manual directory is missing or empty.
    manual = None
  folders, missing = {}, []
  for name in ARCHIVES:
    unpacked = manual / name if manual else None
    packed = manual / f'{name}.zip' if manual else None
    if unpacked is not None and unpacked.is_dir():
      folders[name] = _files_folder(unpacked, name)
    elif packed is not None and packed.is_file():
      folders[name] = _files_folder(dl_manager.extract(packed), name)
    else:
      missing.append(name)
  if missing:
    try:
      unreachable = _unreachable(URL)
      if unreachable:
        raise ConnectionError(unreachable)
      fetched = dl_manager.download_and_extract({n: f'{URL}{n}.zip' for n in missing})
    except Exception as error:  # Any failure: offline, HTTP error, bad checksum, bad zip.
      # The public property refuses to name the manual directory when it is empty.
      where = manual or getattr(dl_manager, '_manual_dir', None) or '<data_dir>/downloads/manual'
      raise FileNotFoundError(
        f'ISIC 2018 Task 1: could not download {len(missing)} archive(s) ({error}). Put these '
        f'in the manual directory {os.fspath(where)!r}, zipped or unpacked:\n'
        + ''.join(f'  {n}.zip  or  {n}/   (from {URL}{n}.zip)\n' for n in missing)
      ) from error
    for name, path in fetched.items():
      folders[name] = _files_folder(path, name)
  return folders


def _unreachable(url: str, timeout_s: float = 5.0) -> str | None:
  """Why the host of `url` cannot be reached, or None if it can. Without network, TFDS retries
  each archive's download for minutes, filling the log, before it fails: this asks first, in
  seconds. Behind a proxy (HTTPS_PROXY or ALL_PROXY set) the download is left to try."""
  proxies = ('HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy')
  if any(os.environ.get(name) for name in proxies):
    return None
  host = urllib.parse.urlsplit(url).hostname
  try:
    socket.create_connection((host, 443), timeout=timeout_s).close()
  except OSError as error:
    return f'cannot reach {host}: {error}'
  return None


def _files_folder(path, name: str) -> str:
  """The folder with the archive's files: the zips unpack to `<name>/`, possibly one level down."""
  path = os.fspath(path)
  nested = os.path.join(path, name)
  return nested if os.path.isdir(nested) else path


def pair_files(image_dir: str, mask_dir: str) -> list[tuple[str, str, str]]:
  """Sorted (id, image path, mask path) of a split; every image must have a mask and vice versa.

  Checked before any decoding, so a mismatched archive fails in a second, not after an hour.
  Files that are neither images nor masks (LICENSE.txt, ATTRIBUTION.txt, macOS '._' files) are
  ignored.
  """

  def listing(folder, suffix):
    if not os.path.isdir(folder):
      raise FileNotFoundError(f'ISIC 2018 Task 1: folder {folder!r} does not exist.')
    names = [n for n in os.listdir(folder) if n.endswith(suffix) and not n.startswith('.')]
    return {n[: -len(suffix)]: os.path.join(folder, n) for n in names}

  images = listing(image_dir, IMAGE_EXT)
  masks = listing(mask_dir, MASK_SUFFIX)
  no_mask = sorted(set(images) - set(masks))
  if no_mask:
    raise FileNotFoundError(
      f'{len(no_mask)} image(s) have no mask, e.g. {images[no_mask[0]]!r} expects '
      f'{os.path.join(mask_dir, no_mask[0] + MASK_SUFFIX)!r}.'
    )
  no_image = sorted(set(masks) - set(images))
  if no_image:
    raise FileNotFoundError(
      f'{len(no_image)} mask(s) have no image, e.g. {masks[no_image[0]]!r} expects '
      f'{os.path.join(image_dir, no_image[0] + IMAGE_EXT)!r}.'
    )
  return [(i, images[i], masks[i]) for i in sorted(images)]


def decode_mask_native(path: str):
  """PNG bytes of the ground truth at native size, 0/255, binarized at > 128 (the scorer's rule).

  The file's own bytes are kept when it already is a one-channel 0/255 PNG (all official masks),
  which saves re-encoding a 12-megapixel PNG per example. Raises ValueError naming the file
  when it cannot be decoded.
  """
  import tensorflow as tf  # Lazy: see the module docstring.

  from unet_jax import photos

  data = tf.io.read_file(path)
  try:
    raw = tf.io.decode_png(data, channels=0)
  except tf.errors.InvalidArgumentError as error:
    raise ValueError(f'Cannot decode mask {path!r}: {error.message}') from None
  gray = raw[..., :1] if raw.shape[-1] <= 2 else tf.image.rgb_to_grayscale(raw[..., :3])
  mask = tf.where(gray > photos.MASK_THRESHOLD, tf.constant(255, tf.uint8), tf.constant(0, tf.uint8))
  if raw.shape[-1] == 1 and raw.dtype == tf.uint8 and bool(tf.reduce_all(tf.equal(mask, raw))):
    return data.numpy()
  return tf.io.encode_png(mask).numpy()


def prepare_example(ident: str, image_path: str, mask_path: str, size: int):
  """(key, example) for one image + mask, decoded by `unet_jax.photos.decode_example`.

  What is stored is what every other path decodes from the same files (the one preprocessing
  path): the photo at its libjpeg decode scale for `size`, the mask binarized and brought to that
  size, and the native mask for scoring. Raises ValueError naming the file on bad data.
  """
  import tensorflow as tf

  from unet_jax import photos

  try:
    image, mask, native = photos.decode_example(
      tf.io.read_file(image_path), tf.io.read_file(mask_path), size, image_name=image_path,
      mask_name=mask_path)
  except tf.errors.InvalidArgumentError as error:
    message = error.message.strip()
    sizes = re.search(r'Mask .* is \d+x\d+ \(HxW\) but its image .* is \d+x\d+\.', message)
    if sizes:  # The sizes differ: the message names both files.
      raise ValueError(sizes.group(0)) from None
    photos.read_photo(image_path, size)  # Raises ValueError naming the image, if it is bad.
    raise ValueError(f'Cannot decode mask {mask_path!r}: {message}') from None
  example = {
    'id': ident,
    'image': tf.io.encode_png(image).numpy(),
    'mask': tf.io.encode_png(mask * 255).numpy(),
    'mask_native': decode_mask_native(mask_path),
    'height': np.int32(native[0]),
    'width': np.int32(native[1]),
  }
  return ident, example
