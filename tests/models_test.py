"""Model shapes and parameter counts, checked against counts derived by hand."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import seed as seed_config
from unet_jax import losses, models, summary


def _variables(model, size=32):
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((2, size, size, 3)), train=False))


def _hand_count(depth, width, in_ch=3, head='seed', upsample='resize_conv', norm_after=True):
  """Parameters of the U-Net written out layer by layer: (trainable, BatchNorm statistics)."""
  conv = lambda k, cin, cout, bias=True: k * k * cin * cout + (cout if bias else 0)  # noqa: E731
  params = stats = 0
  cin = in_ch
  for level in range(depth + 1):
    c = width * 2**level
    params += conv(3, cin, c, norm_after) + conv(3, c, c, norm_after) + 4 * c  # 2 convs + 2 BN
    stats += 4 * c
    cin = c
  for level in reversed(range(depth)):
    c = width * 2**level
    params += conv(2, cin, c)  # the 2x2 up-conv (or transposed conv: same count)
    params += conv(3, 2 * c, c, norm_after) + conv(3, c, c, norm_after) + 4 * c
    stats += 4 * c
    cin = c
  if head == 'seed':
    params += conv(3, cin, 2, norm_after) + 4 + conv(1, 2, 1)
    stats += 4
  else:
    params += conv(1, cin, 1)
  return params, stats


def test_seed_model_matches_the_keras_summary():
  config = seed_config.get_config()
  variables = _variables(models.create_model(config.model), size=224)
  assert models.count_params(variables['params']) == 31_044_617
  assert models.count_params(variables['batch_stats']) == 11_780
  assert _hand_count(4, 64) == (31_044_617, 11_780)


@pytest.mark.parametrize('depth,width,head,upsample,position', [
    (2, 4, 'linear', 'resize_conv', 'after_act'),
    (3, 8, 'seed', 'transpose', 'after_act'),
    (2, 6, 'linear', 'transpose', 'before_act'),
])
def test_counts_and_shapes_for_other_settings(depth, width, head, upsample, position):
  model = models.UNet(depth=depth, base_width=width, head=head, upsample=upsample,
                      norm_position=position, dropout_levels=(depth,))
  variables = _variables(model)
  expected = _hand_count(depth, width, head=head, norm_after=position == 'after_act')
  assert (models.count_params(variables['params']),
          models.count_params(variables['batch_stats'])) == expected
  x = jnp.ones((2, 32, 48, 3))

  @jax.jit  # One compiled program instead of hundreds of eagerly dispatched ops.
  def forward(x):
    return model.apply(model.init(jax.random.key(1), x, train=False), x, train=True,
                       rngs={'dropout': jax.random.key(2)}, mutable=['batch_stats'])[0]

  out = forward(x)
  assert out.shape == (2, 32, 48, 1) and out.dtype == jnp.float32


@pytest.mark.parametrize('norm', ['group', 'none'])
def test_norms_without_running_statistics(norm):
  model = models.UNet(depth=2, base_width=8, norm=norm, dropout_levels=(), head='seed')
  variables = model.init(jax.random.key(0), jnp.ones((1, 16, 16, 3)), train=False)
  assert 'batch_stats' not in variables
  out = model.apply(variables, jnp.ones((1, 16, 16, 3)), train=True)
  assert out.shape == (1, 16, 16, 1)


def test_dropout_is_active_only_in_training():
  model = models.UNet(depth=1, base_width=4, dropout_rate=0.5, dropout_levels=(0, 1), norm='none')
  x = jax.random.normal(jax.random.key(0), (1, 8, 8, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  assert jnp.array_equal(model.apply(variables, x, train=False),
                         model.apply(variables, x, train=False))
  a = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)})
  b = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(3)})
  assert not jnp.allclose(a, b)


def test_upsample_nearest_matches_numpy_repeat():
  x = jax.random.normal(jax.random.key(0), (2, 3, 5, 4))
  expected = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  assert jnp.array_equal(models.upsample_nearest_2x(x), expected)


def _first_max_gradient(x: np.ndarray, g: np.ndarray) -> np.ndarray:
  """2x2 max pooling's gradient in numpy, window by window: all of a window's gradient goes to
  its first maximum in row-major order (np.argmax's first occurrence)."""
  dx = np.zeros_like(x)
  for i in range(x.shape[0]):
    for r in range(0, x.shape[1], 2):
      for c in range(0, x.shape[2], 2):
        for ch in range(x.shape[3]):
          k = int(np.argmax(x[i, r:r + 2, c:c + 2, ch].reshape(-1)))
          dx[i, r + k // 2, c + k % 2, ch] = g[i, r // 2, c // 2, ch]
  return dx


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_reshape_pooling_equals_reduce_window_in_values_and_gradients(dtype):
  # Three levels only, so most windows hold ties, as windows of ReLU zeros do in the model.
  x = jax.random.randint(jax.random.key(0), (2, 6, 8, 3), 0, 3).astype(dtype)
  g = jax.random.normal(jax.random.key(1), (2, 3, 4, 3)).astype(dtype)
  window, window_vjp = jax.vjp(lambda v: nn.max_pool(v, (2, 2), strides=(2, 2)), x)
  reshaped, reshaped_vjp = jax.vjp(models.max_pool_2x2, x)
  assert reshaped.dtype == window.dtype
  assert jnp.array_equal(reshaped, window)
  expected = _first_max_gradient(np.asarray(x, np.float32), np.asarray(g, np.float32))
  np.testing.assert_array_equal(np.asarray(window_vjp(g)[0], np.float32), expected)
  np.testing.assert_array_equal(np.asarray(reshaped_vjp(g)[0], np.float32), expected)


def test_the_pool_setting_changes_no_loss_or_gradient():
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  y = (jax.random.uniform(jax.random.key(1), (2, 16, 16, 1)) > 0.5).astype(jnp.float32)
  results = []
  for pool in models.POOLS:
    model = models.UNet(depth=1, base_width=4, dropout_levels=(1,), pool=pool)
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(2), x)

    def loss(params, model=model, variables=variables):
      logits, _ = model.apply({**variables, 'params': params}, x, train=True,
                              rngs={'dropout': jax.random.key(3)}, mutable=['batch_stats'])
      return jnp.mean(losses.bce_per_image(logits, y))

    results.append(jax.jit(jax.value_and_grad(loss))(variables['params']))
  (loss_a, grads_a), (loss_b, grads_b) = results
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bad_settings_name_the_field():
  with pytest.raises(ValueError, match='config.model.norm'):
    _variables(models.UNet(depth=1, base_width=4, norm='layer', dropout_levels=()))
  with pytest.raises(ValueError, match='UNet.pool'):
    _variables(models.UNet(depth=1, base_width=4, pool='avg', dropout_levels=()))
  with pytest.raises(ValueError, match='dropout_levels'):
    _variables(models.UNet(depth=2, base_width=4, dropout_levels=(3,)))
  with pytest.raises(ValueError, match='image_size'):
    _variables(models.UNet(depth=3, base_width=4, dropout_levels=()), size=20)


def test_summary_prints_the_table_and_totals():
  table, params, stats = summary.summarize(seed_config.get_config().model, 224)
  assert (params, stats) == (31_044_617, 11_780)
  assert 'trainable parameters: 31,044,617' in table
  assert 'BatchNorm statistics (non-trainable): 11,780' in table
  lines = table.splitlines()
  # Layers in the order data flows through them.
  names = [line.split()[0] for line in lines[2:] if line.startswith(('enc', 'dec', 'head'))]
  assert names[0] == 'enc0_conv1/conv' and names[-1] == 'head_out'
  assert names.index('enc4_conv2/conv') < names.index('dec3_up') < names.index('dec0_conv2/norm')
