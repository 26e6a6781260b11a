"""Tests for unet_jax.folds: the k-fold split every source uses."""

import re

import pytest

from unet_jax import folds


def test_kfold_split_is_a_deterministic_partition():
  ids = [f'ISIC_{i:07d}' for i in range(23)]
  vals = []
  for fold in range(5):
    train, val = folds.kfold_split(ids, 5, fold, seed=3)
    assert sorted(train + val) == ids and not set(train) & set(val)
    assert len(val) in (4, 5)
    assert (train, val) == folds.kfold_split(ids[::-1], 5, fold, seed=3)  # Order-free.
    vals += val
  assert sorted(vals) == ids  # Each id validates in exactly one fold.
  assert folds.kfold_split(ids, 5, 0, 3) != folds.kfold_split(ids, 5, 0, 4)
  # Not just the first chunk of the sorted ids: the seed permutes.
  assert folds.kfold_split(ids, 5, 0, 3)[1] != ids[:5]


@pytest.mark.parametrize(
  ('num_folds', 'fold', 'field'),
  [
    (5, 5, 'config.data.fold'),
    (5, -1, 'config.data.fold'),
    (1, 0, 'config.data.num_folds'),
    (4, 0, 'config.data.num_folds'),
  ],
)
def test_kfold_split_errors_name_the_field(num_folds, fold, field):
  with pytest.raises(ValueError, match=re.escape(field)):
    folds.kfold_split(['a', 'b', 'c'], num_folds, fold, seed=0)
