"""Sweep declarations: the hyper helpers and run names."""

import pytest

from unet_jax import hyper


def test_product_zip_chain():
  lr = hyper.sweep('config.optim.lr', [1e-3, 3e-4])
  seed = hyper.sweep('seed', [0, 1])
  assert hyper.product([lr, seed]) == [
      {'optim.lr': 1e-3, 'seed': 0}, {'optim.lr': 1e-3, 'seed': 1},
      {'optim.lr': 3e-4, 'seed': 0}, {'optim.lr': 3e-4, 'seed': 1}]
  assert hyper.zip_([lr, seed]) == [{'optim.lr': 1e-3, 'seed': 0}, {'optim.lr': 3e-4, 'seed': 1}]
  assert hyper.chain([lr, hyper.fixed('loss', 'dice')]) == [
      {'optim.lr': 1e-3}, {'optim.lr': 3e-4}, {'loss': 'dice'}]
  with pytest.raises(ValueError, match='equal length'):
    hyper.zip_([lr, hyper.sweep('seed', [0])])


def test_run_names_are_short_stable_and_distinct():
  assert hyper.run_name({'model.base_width': 16, 'seed': 1}) == 'base_width=16-seed=1'
  assert hyper.run_name({'optim.lr': 3e-4}) == 'lr=0.0003'
  # Two keys with the same last part keep enough of their paths to differ.
  assert hyper.run_name({'model.dropout_rate': 0.5, 'augment.dropout_rate': 0.1}) == (
      'model.dropout_rate=0.5-augment.dropout_rate=0.1')
  assert hyper.run_name({'config': 'configs/seed_cpu.py', 'data.fold': 2}) == 'seed_cpu-fold=2'
  assert hyper.run_name({'model.dropout_levels': (3, 4)}) == 'dropout_levels=3,4'
  assert hyper.run_name({'data.dir': '/a b/c'}) == 'dir=_a_b_c'
  assert hyper.run_name({}) == 'base'
