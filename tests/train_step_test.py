"""The data-parallel step: 8 devices must compute what 1 device computes on the same global batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from unet_jax import augment, losses, metrics, models, normalization
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
  dp = ts.make_data_parallel(mode, 'bce_dice', ts.make_mesh(jax.devices()[:num_devices]),
                             preprocess=preprocess)
  state = dp.place_state(ts.create_train_state(_model(), _tx(), jax.random.key(0), 16))
  for step in range(steps):
    batch = _batch(step) if preprocess is None else _raw_batch(step)
    state, step_metrics = dp.train_step(state, dp.place_batch(batch), jax.random.key(1))
  return jax.device_get(dp.fetch_state(state)), dp.fetch_metrics(step_metrics)


def _reference(steps=2, make_batch=_batch):
  """The same steps written without any parallelism: plain jax.grad over the global batch."""
  model = _model(axis_name=None)
  state = ts.create_train_state(model, _tx(), jax.random.key(0), 16)
  for step in range(steps):
    batch = make_batch(step)

    def loss_fn(params, batch=batch, batch_stats=state.batch_stats):
      logits, updates = model.apply({'params': params, 'batch_stats': batch_stats},
                                    batch['image'], train=True, mutable=['batch_stats'])
      return losses.loss_per_image('bce_dice', logits, batch['mask']).mean(), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates['batch_stats'])
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
  dp = ts.make_data_parallel('shard_map', 'bce', ts.make_mesh(jax.devices()[:8]))
  model = models.UNet(depth=2, base_width=4, dropout_rate=0.0, dropout_levels=(), head='seed',
                      bn_axis_name=None)  # No synchronization: per-device statistics.
  state = dp.place_state(ts.create_train_state(model, _tx(), jax.random.key(0), 16))
  unsynced, _ = dp.train_step(state, dp.place_batch(_batch(0)), jax.random.key(1))
  synced, _ = _run('shard_map', 8, steps=1)
  assert _relative_difference(jax.device_get(unsynced.batch_stats), synced.batch_stats) > 1e-3


def test_eval_step_sums_counts_over_devices():
  dp = ts.make_data_parallel('shard_map', 'bce', ts.make_mesh(jax.devices()[:8]))
  state = ts.create_train_state(_model(), _tx(), jax.random.key(0), 16)
  batch = dict(_batch(3), valid=np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32))
  counts = jax.device_get(dp.eval_step(dp.place_state(state), dp.place_batch(batch)))
  logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                          batch['image'], train=False)
  expected = metrics.confusion_counts(logits, batch['mask'], batch['valid'])
  for key in ('tp', 'fp', 'fn', 'tn'):
    assert float(counts[key]) == float(expected[key])
  assert float(counts['num_images']) == 6


def test_batch_that_does_not_divide_is_a_clear_error():
  with pytest.raises(ValueError, match=r'config.batch_size=12 .* 8 devices'):
    ts.check_batch_divides(12, 8)
  ts.check_batch_divides(16, 8)


def test_precision_resolution():
  assert ts.compute_dtype('auto') == jnp.float32  # The tests run on CPU.
  assert ts.compute_dtype('bfloat16') == jnp.bfloat16
  with pytest.raises(ValueError, match='config.precision'):
    ts.compute_dtype('float16')
