"""The ISIC 2018 recipe (configs/isic2018.py) on any folder in the ISIC layout, without TFDS.

For ISIC 2016/2017, HAM10000 or your own images: `--config.data.dir=PATH`, where PATH holds
`<image_dir>/<id>.jpg` and `<mask_dir>/<id>_segmentation.png` (override `data.image_dir`,
`data.mask_dir`, `data.image_ext`, `data.mask_suffix` for other names). Training and validation
are a k-fold split of the folder (5 folds, fold 0 validates). Images are decoded from the files
once, at the start of the run, and kept resized in memory (`data.cache`).
"""

from configs import isic2018


def get_config():
  config = isic2018.get_config()
  config.data.source = 'folder'
  # config.data.dir is required: --config.data.dir=PATH.
  return config
