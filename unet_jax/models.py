"""The U-Net, with every architectural choice of the seed notebook exposed as a setting.

The defaults of `UNet` reproduce the seed Keras model exactly (zhixuhao-style U-Net with
BatchNorm after each ReLU): 31,044,617 trainable parameters and 11,780 BatchNorm statistics at
base width 64 and depth 4. The model returns logits; the sigmoid lives in the loss, where it is
numerically safe.

No TensorFlow is imported here: the model runs on machines that have only JAX.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMS = ('batch', 'group', 'none')
NORM_POSITIONS = ('after_act', 'before_act')
UPSAMPLES = ('resize_conv', 'transpose', 'dense_d2s')
HEADS = ('linear', 'seed')
POOLS = ('reduce_window', 'reshape')

# Keras' he_normal (truncated normal, fan-in scaling), the initializer of the classic Keras U-Net
# (zhixuhao/unet) whose layers the seed notebook's model has; its parameter counts do not depend on it.
_KERNEL_INIT = nn.initializers.he_normal()


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
  """Keras UpSampling2D(2): each pixel repeated into a 2x2 block (a broadcast, no gather)."""
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
  return x.reshape(n, 2 * h, 2 * w, c)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 stride-2 max pooling as a reshape and a max over each window.

  The same function as `nn.max_pool(x, (2, 2), strides=(2, 2))`, and, through the gradient
  below, the same gradient as XLA's select-and-scatter gives it: each window's gradient goes to
  its first maximum in row-major order (ties are common here: a window of ReLU zeros is one of
  four equal values after the seed's BatchNorm). Only the computation differs: a reduction and
  an elementwise select that XLA can fuse with their neighbours, where XLA:GPU runs the
  reduce-window and select-and-scatter of `nn.max_pool` as loops of their own. Which is faster
  on a GPU is for the GPU check to say (experiments/results/benchmark_gpu.md).
  """
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_2x2_forward(x):
  y = max_pool_2x2(x)
  return y, (x, y)


def _max_pool_2x2_backward(residuals, g):
  x, y = residuals
  n, h, w, c = x.shape
  windows = x.reshape(n, h // 2, 2, w // 2, 2, c)
  is_max = windows == y[:, :, None, :, None, :]
  taken = jnp.zeros_like(y, dtype=bool)
  firsts = {}
  for row in range(2):
    for col in range(2):
      firsts[row, col] = is_max[:, :, row, :, col] & ~taken
      taken = taken | is_max[:, :, row, :, col]
  first = jnp.stack([jnp.stack([firsts[row, col] for col in range(2)], axis=3)
                     for row in range(2)], axis=2)
  dx = jnp.where(first, g[:, :, None, :, None, :], jnp.zeros((), g.dtype))
  return (dx.reshape(n, h, w, c),)


max_pool_2x2.defvjp(_max_pool_2x2_forward, _max_pool_2x2_backward)


def depth_to_space_2x(x: jax.Array) -> jax.Array:
  """[N, H, W, 4C] -> [N, 2H, 2W, C]; channel (a, b, c) of a pixel goes to sub-pixel (a, b)."""
  n, h, w, c4 = x.shape
  c = c4 // 4
  x = x.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, 2 * h, 2 * w, c)


class DenseDepthToSpace(nn.Module):
  """A 2x2 stride-2 transposed conv computed as one per-pixel matmul plus depth-to-space.

  Each output pixel of such a transposed conv sees exactly one input pixel, so the layer is a
  dense map C -> 4 * features followed by a pixel shuffle: a plain GEMM that accelerators run at
  matmul speed, where the transposed conv may lower to a strided (input-dilated) convolution. The
  function family is the same as 'transpose': one bias per feature (shared by the 4 sub-pixels)
  and a kernel initialized with the transposed conv's distribution (he_normal over the 2*2*C
  fan-in flax uses for it), so the two options differ only in how they are computed.
  """

  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = nn.initializers.variance_scaling(0.5, 'fan_in', 'truncated_normal')
    kernel = self.param('kernel', init, (x.shape[-1], 4 * self.features), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return depth_to_space_2x(jnp.dot(x, kernel)) + bias


class ConvNormAct(nn.Module):
  """Conv -> ReLU -> Norm (the seed's order) or Conv -> Norm -> ReLU."""

  features: int
  kernel_size: int = 3
  norm: str = 'batch'
  norm_position: str = 'after_act'
  group_norm_groups: int = 8
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    # A bias right before a normalization is cancelled by its mean subtraction.
    use_bias = self.norm == 'none' or self.norm_position == 'after_act'
    x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), padding='SAME',
                use_bias=use_bias, kernel_init=_KERNEL_INIT, dtype=self.dtype,
                param_dtype=self.param_dtype, name='conv')(x)
    if self.norm_position == 'after_act':
      return self._norm(nn.relu(x), train)
    return nn.relu(self._norm(x, train))

  def _norm(self, x: jax.Array, train: bool) -> jax.Array:
    if self.norm == 'batch':
      # Keras defaults (momentum 0.99, epsilon 1e-3), as in the seed. Statistics are reduced in
      # float32 by flax even when the compute dtype is bfloat16, and averaged over `bn_axis_name`
      # so every device normalizes with the statistics of the global batch.
      return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                          axis_name=self.bn_axis_name if train else None, dtype=self.dtype,
                          param_dtype=self.param_dtype, name='norm')(x)
    if self.norm == 'group':
      groups = math.gcd(self.group_norm_groups, self.features)
      return nn.GroupNorm(num_groups=groups, dtype=self.dtype, param_dtype=self.param_dtype,
                          name='norm')(x)
    return x


class UNet(nn.Module):
  """U-Net for binary segmentation; returns float32 logits of shape [N, H, W, 1].

  Attributes:
    depth: number of 2x2 max-poolings; H and W must be divisible by 2**depth.
    base_width: filters at level 0; level i has base_width * 2**i (the bottleneck is level depth).
    norm: 'batch', 'group' or 'none'.
    norm_position: 'after_act' (Conv -> ReLU -> Norm, the seed) or 'before_act'.
    dropout_rate: rate of the dropout applied to the output of the encoder levels in
      `dropout_levels` (the seed: 0.5 on level 3 and the bottleneck, level 4). The dropped output
      is also what the skip connection carries, as in the seed.
    upsample: 'resize_conv' (nearest 2x upsampling + 2x2 conv + ReLU, the seed), 'transpose'
      (2x2 stride-2 transposed conv + ReLU) or 'dense_d2s' (the same function as 'transpose',
      computed as a per-pixel dense layer + depth-to-space; see `DenseDepthToSpace`).
    head: 'linear' (1x1 conv to one logit) or 'seed' (3x3 conv to 2 channels + ReLU + norm, then
      1x1 conv to one logit).
    dtype: compute dtype (bfloat16 for mixed precision); param_dtype: the parameters' dtype.
    bn_axis_name: mapped axis over which BatchNorm statistics are averaged while training.
    pool: how the 2x2 max pooling is computed, not what it computes: 'reduce_window'
      (`nn.max_pool`) or 'reshape' (`max_pool_2x2`: the same values and gradients). A benchmark
      setting (`experiments.benchmark --pool`) until a GPU measures which is faster; configs
      leave it at the default.
  """

  depth: int = 4
  base_width: int = 64
  norm: str = 'batch'
  norm_position: str = 'after_act'
  group_norm_groups: int = 8
  dropout_rate: float = 0.5
  dropout_levels: Sequence[int] = (3, 4)
  upsample: str = 'resize_conv'
  head: str = 'seed'
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  pool: str = 'reduce_window'

  def setup(self):
    for name, value, valid in (('norm', self.norm, NORMS),
                               ('norm_position', self.norm_position, NORM_POSITIONS),
                               ('upsample', self.upsample, UPSAMPLES), ('head', self.head, HEADS)):
      if value not in valid:
        raise ValueError(f'config.model.{name}={value!r} is not one of {valid}.')
    if self.pool not in POOLS:
      raise ValueError(f'UNet.pool={self.pool!r} is not one of {POOLS}.')
    bad_levels = [lvl for lvl in self.dropout_levels if not 0 <= lvl <= self.depth]
    if bad_levels:
      raise ValueError(f'config.model.dropout_levels has levels {bad_levels} outside '
                       f'0..{self.depth} (0 = top level, {self.depth} = bottleneck).')

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    factor = 2**self.depth
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f'Input of size {x.shape[1]}x{x.shape[2]} does not divide by 2**depth '
                       f'= {factor}; set config.data.image_size to a multiple of {factor}.')
    block = functools.partial(
        ConvNormAct, norm=self.norm, norm_position=self.norm_position,
        group_norm_groups=self.group_norm_groups, bn_axis_name=self.bn_axis_name,
        dtype=self.dtype, param_dtype=self.param_dtype)
    conv = functools.partial(nn.Conv, padding='SAME', kernel_init=_KERNEL_INIT, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    x = x.astype(self.dtype)

    skips = []
    for level in range(self.depth + 1):
      if level > 0:
        x = max_pool_2x2(x) if self.pool == 'reshape' else nn.max_pool(x, (2, 2), strides=(2, 2))
      features = self.base_width * 2**level
      x = block(features, name=f'enc{level}_conv1')(x, train)
      x = block(features, name=f'enc{level}_conv2')(x, train)
      if level in self.dropout_levels and self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      skips.append(x)

    skips.pop()  # The bottleneck's output is `x` itself.
    for level in reversed(range(self.depth)):
      features = self.base_width * 2**level
      if self.upsample == 'resize_conv':
        x = conv(features, (2, 2), name=f'dec{level}_up')(upsample_nearest_2x(x))
      elif self.upsample == 'transpose':
        x = nn.ConvTranspose(features, (2, 2), strides=(2, 2), padding='SAME',
                             kernel_init=_KERNEL_INIT, dtype=self.dtype,
                             param_dtype=self.param_dtype, name=f'dec{level}_up')(x)
      else:
        x = DenseDepthToSpace(features, dtype=self.dtype, param_dtype=self.param_dtype,
                              name=f'dec{level}_up')(x)
      x = nn.relu(x)
      x = jnp.concatenate([skips[level], x], axis=-1)  # Skip first, as the seed's concatenate.
      x = block(features, name=f'dec{level}_conv1')(x, train)
      x = block(features, name=f'dec{level}_conv2')(x, train)

    if self.head == 'seed':
      x = block(2, name='head_conv')(x, train)
    x = conv(1, (1, 1), name='head_out')(x)
    return x.astype(jnp.float32)


def create_model(model_config, *, dtype: Any = jnp.float32, bn_axis_name: str | None = None) -> UNet:
  """Builds the UNet from a `config.model` ConfigDict (or any mapping with the same fields)."""
  return UNet(depth=model_config.depth, base_width=model_config.base_width,
              norm=model_config.norm, norm_position=model_config.norm_position,
              group_norm_groups=model_config.group_norm_groups,
              dropout_rate=model_config.dropout_rate,
              dropout_levels=tuple(model_config.dropout_levels),
              upsample=model_config.upsample, head=model_config.head, dtype=dtype,
              bn_axis_name=bn_axis_name)


def count_params(tree) -> int:
  """Number of scalars in a pytree of arrays (or of ShapeDtypeStructs)."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
