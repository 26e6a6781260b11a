"""The 'dense_d2s' upsampling is the 'transpose' one computed differently: same function, same
parameter count, same initial distribution; and the other options keep their parameter names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unet_jax import models


def dense_from_transpose(kernel: np.ndarray) -> np.ndarray:
  """Maps a flax 2x2 stride-2 'SAME' ConvTranspose kernel [2, 2, C, F] to the dense [C, 4F].

  Independently of the model code: output pixel 2i + a of the transposed conv reads input pixel i
  through kernel tap 1 - a (lax.conv_transpose pads the dilated input by one on each side), and
  the dense layer orders its outputs (a, b, f).
  """
  flipped = kernel[::-1, ::-1]  # [a, b, C, F]
  c, f = kernel.shape[2], kernel.shape[3]
  return np.transpose(flipped, (2, 0, 1, 3)).reshape(c, 4 * f)


def test_dense_d2s_matches_conv_transpose():
  import flax.linen as nn

  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 7))
  transpose = nn.ConvTranspose(3, (2, 2), strides=(2, 2), padding='SAME')
  variables = transpose.init(jax.random.key(1), x)
  kernel = np.asarray(variables['params']['kernel'])
  bias = jax.random.normal(jax.random.key(2), (3,))
  expected = transpose.apply({'params': {'kernel': kernel, 'bias': bias}}, x)

  dense = models.DenseDepthToSpace(3)
  got = dense.apply({'params': {'kernel': dense_from_transpose(kernel), 'bias': bias}}, x)
  assert got.shape == expected.shape == (2, 10, 12, 3)
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_depth_to_space_places_channels_on_subpixels():
  x = np.arange(2 * 3 * 4 * 8, dtype=np.float32).reshape(2, 3, 4, 8)
  y = np.asarray(models.depth_to_space_2x(jnp.asarray(x)))
  for a in range(2):
    for b in range(2):
      np.testing.assert_array_equal(y[:, a::2, b::2, :], x[..., (2 * a + b) * 2:(2 * a + b + 1) * 2])


def _unet_params(upsample):
  model = models.UNet(depth=2, base_width=8, upsample=upsample, dropout_levels=())
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)),
                                           train=False))['params']


def test_upsample_options_param_names_and_counts():
  transpose, dense = _unet_params('transpose'), _unet_params('dense_d2s')
  resize = _unet_params('resize_conv')
  # Existing options keep their names (checkpoints stay loadable).
  assert resize['dec0_up']['kernel'].shape == (2, 2, 16, 8)
  assert transpose['dec0_up']['kernel'].shape == (2, 2, 16, 8)
  assert dense['dec0_up']['kernel'].shape == (16, 32)
  assert dense['dec0_up']['bias'].shape == (8,)
  assert models.count_params(dense) == models.count_params(transpose)


def test_dense_d2s_init_matches_transpose_scale():
  """Both start from he_normal over the 2*2*C fan-in: equal standard deviations."""
  model = models.DenseDepthToSpace(64)
  kernel = model.init(jax.random.key(0), jnp.zeros((1, 2, 2, 128)))['params']['kernel']
  expected = np.sqrt(2.0 / (4 * 128))
  assert np.std(np.asarray(kernel)) == pytest.approx(expected, rel=0.05)


def test_unknown_upsample_names_the_options():
  with pytest.raises(ValueError, match='dense_d2s'):
    _unet_params('bilinear')
