"""Optimizer construction: schedules, and weight decay that skips biases and norm parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from unet_jax import optim


def _optim_config(**overrides):
  config = default.get_config().optim
  config.update(overrides)
  return config


def test_warmup_cosine_schedule():
  schedule = optim.create_schedule(
      _optim_config(schedule='warmup_cosine', lr=1.0, warmup_steps=10, end_lr_factor=0.1), 110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.55, abs=1e-6)  # Half way down the cosine.
  assert float(schedule(110)) == pytest.approx(0.1)


def test_step_schedule():
  schedule = optim.create_schedule(
      _optim_config(schedule='step', lr=1.0, step_boundaries=(0.5, 0.75), step_factor=0.1), 100)
  assert [float(schedule(s)) for s in (0, 49, 51, 80)] == pytest.approx([1, 1, 0.1, 0.01])


def test_decay_mask_selects_kernels_only():
  params = {'conv': {'kernel': 1, 'bias': 2}, 'norm': {'scale': 3, 'bias': 4}}
  assert optim.decay_mask(params) == {'conv': {'kernel': True, 'bias': False},
                                      'norm': {'scale': False, 'bias': False}}


@pytest.mark.parametrize('name', ['adamw', 'sgd'])
def test_weight_decay_leaves_biases_and_scales_alone(name):
  params = {'conv': {'kernel': jnp.ones(3), 'bias': jnp.ones(3)}, 'norm': {'scale': jnp.ones(3)}}
  tx = optim.create_optimizer(_optim_config(name=name, schedule='constant', lr=0.1,
                                            weight_decay=0.5, grad_clip_norm=0.0), 10)
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  assert np.all(np.asarray(updates['conv']['kernel']) < 0)  # Decay shrinks the kernel...
  assert not np.any(updates['conv']['bias']) and not np.any(updates['norm']['scale'])  # ...only.


def test_gradient_clipping():
  tx = optim.create_optimizer(_optim_config(name='sgd', schedule='constant', lr=1.0, momentum=0.0,
                                            nesterov=False, weight_decay=0.0, grad_clip_norm=1.0), 10)
  params = {'w': jnp.zeros(2)}
  updates, _ = tx.update({'w': jnp.array([3.0, 4.0])}, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], [-0.6, -0.8], rtol=1e-6)


def test_unknown_names_are_errors():
  with pytest.raises(ValueError, match='config.optim.name'):
    optim.create_optimizer(_optim_config(name='lamb'), 10)
  with pytest.raises(ValueError, match='config.optim.schedule'):
    optim.create_schedule(_optim_config(schedule='linear'), 10)
