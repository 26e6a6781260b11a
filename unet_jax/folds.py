"""k-fold splits of example ids: which ids train and which validate, for every source alike.

Its own module (numpy only) because the folder and synthetic sources (`unet_jax.input_pipeline`)
and the ISIC TFDS source (`unet_jax.isic_source`) split the same way, and the validation of a
cross-validation run must be the same images whoever asks.
"""

from collections.abc import Sequence

import numpy as np


def kfold_split(
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
