"""The train step: 8 devices compute what 1 device computes on the same global batch (shard_map
and pmap), the step equals plain `jax.grad`, and bfloat16 compute keeps float32 where precision
matters (parameters, optimizer state, BatchNorm statistics, logits and the loss) while the
convolutions really run in bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from unet_jax import augment, losses, metrics, models, normalization, parallel
from unet_jax import train_step as ts

BATCH = 8


def _model(axis_name=ts.AXIS):
  # Dropout off: with it, each device draws its own mask, which is the point of per-device keys.
  return models.UNet(depth=2, base_width=4, dropout_rate=0.0, dropout_levels=(), head='seed',
                     bn_axis_name=axis_name)


def _batch(seed=0, size=16):
  rng = np.random.default_rng(seed)
  return {'image': rng.normal(size=(BATCH, size, size, 3)).astype(np.float32),
          'mask': (rng.random((BATCH, size, size, 1)) > 0.5).astype(np.float32)}


def _raw_batch(seed=0, size=16):
  """What the input pipeline yields: uint8 pixels and masks, augmented in the step."""
  rng = np.random.default_rng(seed)
  return {'image': rng.integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8),
          'mask': (rng.random((BATCH, size, size, 1)) > 0.5).astype(np.uint8)}


PREPROCESS = augment.make_preprocess(augment.Settings(), 'unit', seed=0)


def _augmented(step):
  """Step `step`'s raw batch augmented on the host, by the augment module's own functions."""
  raw = _raw_batch(step)
  keys = augment.example_keys(0, step, 0, BATCH)
  images, masks = augment.augment_batch(keys, raw['image'], raw['mask'], augment.Settings())
  return {'image': normalization.normalize(np.asarray(images), 'unit'), 'mask': np.asarray(masks)}


def _tx():
  return optax.sgd(0.1, momentum=0.9)


def _run(mode, num_devices, steps=2, preprocess=None):
  dp = parallel.make_data_parallel(mode, 'bce_dice', parallel.make_mesh(jax.devices()[:num_devices]),
                             preprocess=preprocess)
  state = dp.place_state(ts.create_train_state(_model(), _tx(), jax.random.key(0), 16))
  for step in range(steps):
    batch = _batch(step) if preprocess is None else _raw_batch(step)
    state, step_metrics = dp.train_step(state, dp.place_batch(batch), jax.random.key(1))
  return jax.device_get(dp.fetch_state(state)), dp.fetch_metrics(step_metrics)


def _reference(steps=2, make_batch=_batch):
  """The same steps written without any parallelism: plain jax.grad over the global batch
  (jitted as a whole: op by op, the U-Net's gradient took 6-14 s a call)."""
  model = _model(axis_name=None)
  state = ts.create_train_state(model, _tx(), jax.random.key(0), 16)

  @jax.jit
  def step_fn(state, batch):
    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                    batch['image'], train=True, mutable=['batch_stats'])
      return losses.loss_per_image('bce_dice', logits, batch['mask']).mean(), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, batch_stats=updates['batch_stats']), loss

  for step in range(steps):
    state, loss = step_fn(state, make_batch(step))
  return state, float(loss)


def _relative_difference(a, b):
  diff = optax.tree.norm(jax.tree.map(lambda x, y: x - y, a, b))
  return float(diff / optax.tree.norm(b))


@pytest.fixture(scope='module')
def one_device():
  return _run('shard_map', 1)


def test_one_device_step_equals_plain_jax(one_device):
  state, step_metrics = one_device
  reference, loss = _reference()
  assert _relative_difference(state.params, reference.params) < 1e-6
  assert _relative_difference(state.batch_stats, reference.batch_stats) < 1e-6
  assert float(step_metrics['loss']) == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize('mode', ['shard_map', 'pmap'])
def test_eight_devices_equal_one_device(mode, one_device):
  state_1, metrics_1 = one_device
  state_8, metrics_8 = _run(mode, 8)
  assert int(state_8.step) == 2
  assert _relative_difference(state_8.params, state_1.params) < 1e-5
  assert _relative_difference(state_8.batch_stats, state_1.batch_stats) < 1e-5
  # Each leaf too, against its own scale (biases start at zero and stay small).
  for a, b in zip(jax.tree.leaves(state_8.params), jax.tree.leaves(state_1.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  assert float(metrics_8['loss']) == pytest.approx(float(metrics_1['loss']), rel=1e-5)


@pytest.fixture(scope='module')
def one_device_augmented():
  return _run('shard_map', 1, preprocess=PREPROCESS)


def test_augmenting_step_equals_plain_jax_on_host_augmented_batches(one_device_augmented):
  state, step_metrics = one_device_augmented
  reference, loss = _reference(make_batch=_augmented)
  assert _relative_difference(state.params, reference.params) < 1e-6
  assert float(step_metrics['loss']) == pytest.approx(loss, rel=1e-5)
  # And the augmentation did something: training on the raw pixels ends elsewhere.
  unaugmented, _ = _reference(make_batch=lambda step: {
    'image': _raw_batch(step)['image'] / np.float32(255), 'mask': _raw_batch(step)['mask']})
  assert _relative_difference(state.params, unaugmented.params) > 1e-4


@pytest.mark.parametrize('mode', ['shard_map', 'pmap'])
def test_augmenting_step_on_eight_devices_equals_one_device(mode, one_device_augmented):
  # Each example's augmentation is keyed by its position in the global batch, not per device.
  state_1, metrics_1 = one_device_augmented
  state_8, metrics_8 = _run(mode, 8, preprocess=PREPROCESS)
  assert _relative_difference(state_8.params, state_1.params) < 1e-5
  assert float(metrics_8['loss']) == pytest.approx(float(metrics_1['loss']), rel=1e-5)


def test_batchnorm_statistics_are_those_of_the_global_batch(one_device):
  # Had each device normalized with its own statistics, the 8-device statistics would differ.
  dp = parallel.make_data_parallel('shard_map', 'bce', parallel.make_mesh(jax.devices()[:8]))
  model = models.UNet(depth=2, base_width=4, dropout_rate=0.0, dropout_levels=(), head='seed',
                      bn_axis_name=None)  # No synchronization: per-device statistics.
  state = dp.place_state(ts.create_train_state(model, _tx(), jax.random.key(0), 16))
  unsynced, _ = dp.train_step(state, dp.place_batch(_batch(0)), jax.random.key(1))
  synced, _ = _run('shard_map', 8, steps=1)
  assert _relative_difference(jax.device_get(unsynced.batch_stats), synced.batch_stats) > 1e-3


def test_eval_step_sums_counts_over_devices():
  dp = parallel.make_data_parallel('shard_map', 'bce', parallel.make_mesh(jax.devices()[:8]))
  state = ts.create_train_state(_model(), _tx(), jax.random.key(0), 16)
  batch = dict(_batch(3), valid=np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32))
  counts = jax.device_get(dp.eval_step(dp.place_state(state), dp.place_batch(batch)))
  logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                          batch['image'], train=False)
  expected = metrics.confusion_counts(logits, batch['mask'], batch['valid'])
  for key in ('tp', 'fp', 'fn', 'tn'):
    assert float(counts[key]) == float(expected[key])
  assert float(counts['num_images']) == 6


# ---- mixed precision --------------------------------------------------------------------

MP_SIZE = 8


def _mp_model(dtype):
  return models.UNet(depth=1, base_width=4, dtype=dtype, dropout_levels=())


def _mp_variables(model):
  """Random float32 variables in the model's shapes, without compiling its (slow on CPU)
  truncated-normal initializers."""
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, MP_SIZE, MP_SIZE, 3)),
                                             train=False))
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape) + 1, s.dtype), shapes)


def _dtypes(tree):
  return {jnp.dtype(x.dtype) for x in jax.tree.leaves(tree)}


def test_compute_dtype_choices():
  assert parallel.compute_dtype('bfloat16') == jnp.bfloat16
  assert parallel.compute_dtype('float32') == jnp.float32
  expected = jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  assert parallel.compute_dtype('auto') == expected
  with pytest.raises(ValueError, match='precision'):
    parallel.compute_dtype('float16')


def test_bfloat16_model_computes_in_bfloat16_with_float32_state():
  model = _mp_model(jnp.bfloat16)
  x = jax.random.uniform(jax.random.key(0), (2, MP_SIZE, MP_SIZE, 3))
  variables = _mp_variables(model)
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
  logits32 = jax.jit(lambda v, x: _mp_model(jnp.float32).apply(v, x, train=False))(variables, x)
  logits16 = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits16.dtype == jnp.float32
  np.testing.assert_allclose(logits16, logits32, atol=0.1 * float(jnp.abs(logits32).max()) + 0.05)


def test_bfloat16_train_step_keeps_float32_state_and_loss():
  model = _mp_model(parallel.compute_dtype('bfloat16'))
  variables = _mp_variables(model)
  state = ts.TrainState.create(apply_fn=model.apply, params=variables['params'],
                               tx=optax.adamw(1e-3), batch_stats=variables['batch_stats'])
  dp = parallel.make_data_parallel('shard_map', 'bce_dice', parallel.make_mesh(jax.devices()[:1]))
  rng = np.random.default_rng(0)
  batch = dp.place_batch({
      'image': rng.uniform(size=(2, MP_SIZE, MP_SIZE, 3)).astype(np.float32),
      'mask': (rng.uniform(size=(2, MP_SIZE, MP_SIZE, 1)) > 0.5).astype(np.float32)})
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
