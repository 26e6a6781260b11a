"""A tiny fake of the ISIC 2018 Task 1 archives, in the official layout, for tests.

Why: the real archives are 11 GB behind a download, and users who clone the project do not have
them. Tests of the TFDS builder, the input pipeline and native-resolution evaluation all need
files laid out exactly as the archives unpack (or as the zips themselves), with the awkward cases
of real data: several sizes and aspect ratios (portrait too), a corrupt JPEG, an image without
its mask. Images come from `unet_jax.synthetic.make_example`, so a test can recompute any of them.
"""

import os
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np

from unet_jax import isic2018, synthetic

# Archive word -> TFDS split name.
PARTS = {part: split for split, part in isic2018.SPLIT_PARTS.items()}
# First id of each split, as in the real data (validation and test ids follow training's).
ID_OFFSETS = {'Training': 0, 'Validation': 12000, 'Test': 16000}
# (height, width): landscape 3:4 and 2:3 like most ISIC photos, portrait, square.
DEFAULT_SIZES = ((48, 64), (40, 60), (64, 48), (50, 50))
SEED = 0


def make_fake_isic(
  root: str,
  *,
  counts: Mapping[str, int] = {'Training': 6, 'Validation': 2, 'Test': 2},
  sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
  zipped: bool = False,
  corrupt: Sequence[int] = (),
  missing_mask: Sequence[int] = (),
) -> dict:
  """Writes the six archives under `root` (as `<name>.zip` if `zipped`, else `<name>/`).

  Example k of a split is `synthetic.make_example(SEED, ID_OFFSETS[part] + k, *sizes[k % n])`,
  saved as `ISIC_<offset + k:07d>.jpg` (quality 95) and `..._segmentation.png` (0/255). Each
  archive also holds LICENSE.txt, as the real ones do, which readers must ignore.

  Args:
    root: output folder (e.g. a TFDS manual directory).
    counts: examples per split, keyed 'Training', 'Validation', 'Test'.
    sizes: (height, width) cycled over the examples of each split.
    zipped: write zips (with the files under `<name>/` inside, as the real ones) or folders.
    corrupt: indices k of Training examples whose JPEG is cut short (undecodable).
    missing_mask: indices k of Training examples written without their mask.

  Returns:
    {'root', 'ids': {tfds split: [id, ...] sorted}, 'sizes': {id: (h, w)},
     'corrupt': [image paths inside the archive layout], 'missing_mask': [mask paths likewise]}.
  """
  import tensorflow as tf  # Lazy, as in `synthetic.write_folder`.

  os.makedirs(root, exist_ok=True)
  info = {'root': root, 'ids': {}, 'sizes': {}, 'corrupt': [], 'missing_mask': []}
  for part, count in counts.items():
    images, masks = {}, {}
    image_name, mask_name = isic2018.input_name(part), isic2018.truth_name(part)
    ids = []
    for k in range(count):
      height, width = sizes[k % len(sizes)]
      index = ID_OFFSETS[part] + k
      ident = f'ISIC_{index:07d}'
      image, mask = synthetic.make_example(SEED, index, height, width)
      jpeg = tf.io.encode_jpeg(image, quality=95).numpy()
      image_path = f'{image_name}/{ident}.jpg'
      mask_path = f'{mask_name}/{ident}_segmentation.png'
      if part == 'Training' and k in corrupt:
        jpeg = jpeg[: len(jpeg) // 2]
        info['corrupt'].append(image_path)
      images[image_path] = jpeg
      if part == 'Training' and k in missing_mask:
        info['missing_mask'].append(mask_path)
      else:
        masks[mask_path] = tf.io.encode_png(mask[..., None] * np.uint8(255)).numpy()
      ids.append(ident)
      info['sizes'][ident] = (height, width)
    info['ids'][PARTS[part]] = ids
    for name, files in ((image_name, images), (mask_name, masks)):
      files[f'{name}/LICENSE.txt'] = b'CC BY-NC 4.0 (fake archive for tests)\n'
      _write(root, name, files, zipped)
  return info


def _write(root: str, name: str, files: Mapping[str, bytes], zipped: bool) -> None:
  if zipped:
    # Stored, not deflated: JPEG and PNG do not compress, and tests stay fast.
    with zipfile.ZipFile(os.path.join(root, f'{name}.zip'), 'w', zipfile.ZIP_STORED) as archive:
      for path, data in files.items():
        archive.writestr(path, data)
    return
  for path, data in files.items():
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'wb') as f:
      f.write(data)


def prepare_fake_tfds(data_dir: str, size: int, info: dict, monkeypatch=None):
  """Builds `isic2018_task1/<size>` in `data_dir` from a fake archive made by `make_fake_isic`.

  The builder's official split sizes are swapped for the fake ones while building (through
  `monkeypatch` when given, else restored at the end). Returns the prepared builder.
  """
  import tensorflow_datasets as tfds

  counts = {split: len(ids) for split, ids in info['ids'].items()}
  cls = isic2018.Isic2018Task1
  old = cls.EXPECTED_COUNTS
  if monkeypatch is not None:
    monkeypatch.setattr(cls, 'EXPECTED_COUNTS', counts)
  else:
    cls.EXPECTED_COUNTS = counts
  try:
    builder = cls(config=isic2018.builder_config(size), data_dir=data_dir)
    config = tfds.download.DownloadConfig(manual_dir=info['root'])
    builder.download_and_prepare(download_config=config)
  finally:
    if monkeypatch is None:
      cls.EXPECTED_COUNTS = old
  return builder
