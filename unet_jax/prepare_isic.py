r"""Prepares the ISIC 2018 Task 1 TFDS dataset once, before training reads it.

  python -m unet_jax.prepare_isic --size 224 --manual_dir ~/isic2018 [--data_dir ~/tensorflow_datasets]
  python -m unet_jax.prepare_isic --size 224 --register_checksums   # downloads; records checksums

`--manual_dir` holds the six official archives, zipped or unpacked
(ISIC2018_Task1-2_{Training,Validation,Test}_Input, ISIC2018_Task1_{Training,Validation,Test}_GroundTruth);
without it they are downloaded from the ISIC archive. Each full-resolution photo is decoded once
at the libjpeg scale for the training resolution (`--size`; unet_jax.photos), with its native
mask. A dataset prepared by an older version of the builder is prepared again under the new one.
A preparation that fails (an archive missing, a photo unreadable) removes the folders it made;
what it downloaded or extracted stays for the next try.

The same as `tfds build --imports=unet_jax.isic2018 isic2018_task1/<size>`, which needs
apache_beam in this TFDS version; a single training process also prepares the dataset on first
use, but several processes need it prepared beforehand.
"""

import os

from absl import app, flags

from unet_jax import cli

FLAGS = flags.FLAGS
flags.DEFINE_multi_integer('size', [256], 'Training resolution(s) to prepare (config.data.image_size).')
flags.DEFINE_string('manual_dir', None, 'Folder with the official archives (zips or unpacked).')
flags.DEFINE_string('data_dir', None, 'TFDS data dir (default: ~/tensorflow_datasets); the '
                    "configs' config.data.tfds_data_dir.")
flags.DEFINE_bool('register_checksums', False, 'Record the downloaded archives\' checksums in '
                  'unet_jax/checksums.tsv (for maintainers, with network access).')


def prepare(sizes, *, manual_dir: str | None = None, data_dir: str | None = None,
            register_checksums: bool = False) -> list[str]:
  """Prepares `isic2018_task1/<size>` for each size; returns a line per prepared dataset."""
  import tensorflow_datasets as tfds

  from unet_jax import isic2018

  download_config = tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(manual_dir) if manual_dir else None,
      register_checksums=register_checksums)
  lines = []
  for size in sizes:
    builder = tfds.builder(isic2018.NAME, config=isic2018.builder_config(size),
                           data_dir=data_dir and os.path.expanduser(data_dir))
    isic2018.download_and_prepare(builder, download_config)
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    lines.append(f'{isic2018.NAME}/{size} prepared in {builder.data_dir}: {counts}')
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.data_dir:
    cli.check_can_be_folder(os.path.expanduser(FLAGS.data_dir), '--data_dir')
  for line in prepare(FLAGS.size, manual_dir=FLAGS.manual_dir, data_dir=FLAGS.data_dir,
                      register_checksums=FLAGS.register_checksums):
    print(line, flush=True)


if __name__ == '__main__':
  cli.run_absl(main)
