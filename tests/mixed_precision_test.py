"""bfloat16 compute keeps float32 where precision matters: parameters, optimizer state, BatchNorm
statistics, logits and the loss; while the convolutions really run in bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from unet_jax import models
from unet_jax import train_step as ts

SIZE = 8


def _model(dtype):
  return models.UNet(depth=1, base_width=4, dtype=dtype, dropout_levels=())


def _variables(model):
  """Random float32 variables in the model's shapes, without compiling its (slow on CPU)
  truncated-normal initializers."""
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)),
                                             train=False))
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape) + 1, s.dtype), shapes)


def _dtypes(tree):
  return {jnp.dtype(x.dtype) for x in jax.tree.leaves(tree)}


def test_compute_dtype_choices():
  assert ts.compute_dtype('bfloat16') == jnp.bfloat16
  assert ts.compute_dtype('float32') == jnp.float32
  expected = jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  assert ts.compute_dtype('auto') == expected
  with pytest.raises(ValueError, match='precision'):
    ts.compute_dtype('float16')


def test_bfloat16_model_computes_in_bfloat16_with_float32_state():
  model = _model(jnp.bfloat16)
  x = jax.random.uniform(jax.random.key(0), (2, SIZE, SIZE, 3))
  variables = _variables(model)
  assert _dtypes(variables['params']) == {jnp.dtype(jnp.float32)}
  assert _dtypes(variables['batch_stats']) == {jnp.dtype(jnp.float32)}

  logits, updates = jax.jit(lambda v, x: model.apply(
      v, x, train=True, mutable=['batch_stats'], rngs={'dropout': jax.random.key(2)}))(variables, x)
  assert logits.dtype == jnp.float32
  assert _dtypes(updates['batch_stats']) == {jnp.dtype(jnp.float32)}

  # The convolutions' outputs are bfloat16: the compute really is mixed precision.
  _, state = jax.jit(lambda v, x: model.apply(
      v, x, train=False, capture_intermediates=True, mutable=['intermediates']))(variables, x)
  conv_out = state['intermediates']['enc0_conv1']['conv']['__call__'][0]
  assert conv_out.dtype == jnp.bfloat16

  # And it computes the same function as float32, to bfloat16's precision.
  logits32 = jax.jit(lambda v, x: _model(jnp.float32).apply(v, x, train=False))(variables, x)
  logits16 = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits16.dtype == jnp.float32
  np.testing.assert_allclose(logits16, logits32, atol=0.1 * float(jnp.abs(logits32).max()) + 0.05)


def test_bfloat16_train_step_keeps_float32_state_and_loss():
  model = _model(ts.compute_dtype('bfloat16'))
  variables = _variables(model)
  state = ts.TrainState.create(apply_fn=model.apply, params=variables['params'],
                               tx=optax.adamw(1e-3), batch_stats=variables['batch_stats'])
  dp = ts.make_data_parallel('shard_map', 'bce_dice', ts.make_mesh(jax.devices()[:1]))
  rng = np.random.default_rng(0)
  batch = dp.place_batch({
      'image': rng.uniform(size=(2, SIZE, SIZE, 3)).astype(np.float32),
      'mask': (rng.uniform(size=(2, SIZE, SIZE, 1)) > 0.5).astype(np.float32)})
  old_stats = jax.device_get(state.batch_stats)
  state, step_metrics = dp.train_step(dp.place_state(state), batch, jax.random.key(1))
  f32 = {jnp.dtype(jnp.float32)}
  assert _dtypes(state.params) == f32
  assert _dtypes(state.batch_stats) == f32
  assert _dtypes([x for x in jax.tree.leaves(state.opt_state) if x.ndim]) == f32
  assert step_metrics['loss'].dtype == jnp.float32
  assert np.isfinite(float(step_metrics['loss']))
  # The statistics moved: BatchNorm updated them from the bfloat16 activations.
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()),
                       state.batch_stats, old_stats)
  assert max(jax.tree.leaves(moved)) > 0
