"""A PyTorch copy of `unet_jax.models.UNet`, the reference the benchmark measures JAX against.

Same layers in the same order, same options (norm batch/group/none after or before the ReLU,
'resize_conv' / 'transpose' / 'dense_d2s' upsampling, 'seed' / 'linear' head, dropout on chosen
encoder levels), same BatchNorm settings (Keras' momentum 0.99 = torch momentum 0.01, epsilon
1e-3), hence the same parameter count: 31,044,617 parameters and 11,780 BatchNorm statistics for
the seed model. `load_flax_variables` copies a flax model's weights in, which the tests use to
show both compute the same function, so the speed comparison is between equal models.

Differences that do not change the forward pass: torch's running variance is updated with the
unbiased batch variance (flax: biased), and its kernels are initialized with a plain (not
truncated) He normal. PyTorch is an optional extra (`pip install -e '.[bench]'`); nothing in
`unet_jax` imports this file.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DICE_SMOOTH = 1.0


class ConvNormAct(nn.Module):
  """Conv -> ReLU -> Norm (the seed's order) or Conv -> Norm -> ReLU."""

  def __init__(self, cin: int, cout: int, kernel_size: int = 3, norm: str = 'batch',
               norm_position: str = 'after_act', group_norm_groups: int = 8):
    super().__init__()
    self.norm_position = norm_position
    use_bias = norm == 'none' or norm_position == 'after_act'
    self.conv = nn.Conv2d(cin, cout, kernel_size, padding='same', bias=use_bias)
    if norm == 'batch':
      self.norm = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
    elif norm == 'group':
      self.norm = nn.GroupNorm(math.gcd(group_norm_groups, cout), cout, eps=1e-6)  # flax's eps
    else:
      self.norm = nn.Identity()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.conv(x)
    if self.norm_position == 'after_act':
      return self.norm(F.relu(x))
    return F.relu(self.norm(x))


class ResizeConv(nn.Module):
  """Nearest 2x upsampling + 2x2 'same' conv (padded bottom/right, as Keras and flax)."""

  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, 2, padding='same')

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.conv(F.interpolate(x, scale_factor=2, mode='nearest'))


class DenseDepthToSpace(nn.Module):
  """1x1 conv to 4 * cout (no bias) + pixel shuffle + one bias per feature."""

  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.conv = nn.Conv2d(cin, 4 * cout, 1, bias=False)
    self.bias = nn.Parameter(torch.zeros(cout))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(self.conv(x), 2) + self.bias[:, None, None]


class UNet(nn.Module):
  """The U-Net of `unet_jax.models.UNet` on NCHW tensors; returns float32 logits [N, 1, H, W]."""

  def __init__(self, depth: int = 4, base_width: int = 64, norm: str = 'batch',
               norm_position: str = 'after_act', group_norm_groups: int = 8,
               dropout_rate: float = 0.5, dropout_levels: Sequence[int] = (3, 4),
               upsample: str = 'resize_conv', head: str = 'seed', in_channels: int = 3):
    super().__init__()
    self.depth, self.dropout_rate, self.head = depth, dropout_rate, head
    self.dropout_levels = tuple(dropout_levels)

    def block(cin, cout, kernel_size=3):
      return ConvNormAct(cin, cout, kernel_size, norm, norm_position, group_norm_groups)

    # ModuleDicts keyed by the flax module names, so weights map one to one.
    self.blocks = nn.ModuleDict()
    self.ups = nn.ModuleDict()
    cin = in_channels
    for level in range(depth + 1):
      features = base_width * 2**level
      self.blocks[f'enc{level}_conv1'] = block(cin, features)
      self.blocks[f'enc{level}_conv2'] = block(features, features)
      cin = features
    for level in reversed(range(depth)):
      features = base_width * 2**level
      if upsample == 'resize_conv':
        self.ups[f'dec{level}_up'] = ResizeConv(2 * features, features)
      elif upsample == 'transpose':
        self.ups[f'dec{level}_up'] = nn.ConvTranspose2d(2 * features, features, 2, stride=2)
      elif upsample == 'dense_d2s':
        self.ups[f'dec{level}_up'] = DenseDepthToSpace(2 * features, features)
      else:
        raise ValueError(f'upsample={upsample!r} is not supported.')
      self.blocks[f'dec{level}_conv1'] = block(2 * features, features)
      self.blocks[f'dec{level}_conv2'] = block(features, features)
    if head == 'seed':
      self.blocks['head_conv'] = block(base_width, 2)
    self.head_out = nn.Conv2d(2 if head == 'seed' else base_width, 1, 1)
    for module in self.modules():
      if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, nonlinearity='relu')
        if module.bias is not None:
          nn.init.zeros_(module.bias)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    skips = []
    for level in range(self.depth + 1):
      if level > 0:
        x = F.max_pool2d(x, 2)
      x = self.blocks[f'enc{level}_conv2'](self.blocks[f'enc{level}_conv1'](x))
      if level in self.dropout_levels and self.dropout_rate > 0:
        x = F.dropout(x, self.dropout_rate, self.training)
      skips.append(x)
    skips.pop()
    for level in reversed(range(self.depth)):
      x = F.relu(self.ups[f'dec{level}_up'](x))
      x = torch.cat([skips[level], x], dim=1)
      x = self.blocks[f'dec{level}_conv2'](self.blocks[f'dec{level}_conv1'](x))
    if self.head == 'seed':
      x = self.blocks['head_conv'](x)
    return self.head_out(x).float()


def count_params(model: nn.Module) -> tuple[int, int]:
  """(trainable parameters, BatchNorm running mean + variance scalars)."""
  params = sum(p.numel() for p in model.parameters())
  stats = sum(b.numel() for name, b in model.named_buffers()
              if name.endswith(('running_mean', 'running_var')))
  return params, stats


def loss_per_image(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
  """BCE + soft Dice of each image, as `unet_jax.losses.loss_per_image('bce_dice', ...)`."""
  logits, masks = logits.float().flatten(1), masks.float().flatten(1)
  bce = F.binary_cross_entropy_with_logits(logits, masks, reduction='none').mean(1)
  probs = torch.sigmoid(logits)
  dice = 1 - (2 * (probs * masks).sum(1) + DICE_SMOOTH) / (probs.sum(1) + masks.sum(1)
                                                           + DICE_SMOOTH)
  return bce + dice


def _tensor(array, like: torch.Tensor) -> torch.Tensor:
  return torch.as_tensor(np.array(array, np.float32)).to(like.device, like.dtype)


def _load_block(block: ConvNormAct, params: dict, stats: dict | None):
  _load_conv(block.conv, params['conv'])
  if 'norm' in params:
    block.norm.weight.data.copy_(_tensor(params['norm']['scale'], block.norm.weight))
    block.norm.bias.data.copy_(_tensor(params['norm']['bias'], block.norm.bias))
  if stats and 'norm' in stats:
    block.norm.running_mean.copy_(_tensor(stats['norm']['mean'], block.norm.running_mean))
    block.norm.running_var.copy_(_tensor(stats['norm']['var'], block.norm.running_var))


def _load_conv(conv: nn.Conv2d, params: dict):
  # flax HWIO -> torch OIHW.
  conv.weight.data.copy_(_tensor(np.transpose(params['kernel'], (3, 2, 0, 1)), conv.weight))
  if conv.bias is not None:
    conv.bias.data.copy_(_tensor(params['bias'], conv.bias))


def load_flax_variables(model: UNet, variables: dict) -> UNet:
  """Copies a flax UNet's {'params', 'batch_stats'} into `model` (built with the same options)."""
  params, stats = variables['params'], variables.get('batch_stats', {})
  with torch.no_grad():
    for name, block in model.blocks.items():
      _load_block(block, params[name], stats.get(name))
    for name, up in model.ups.items():
      p = params[name]
      if isinstance(up, ResizeConv):
        _load_conv(up.conv, p)
      elif isinstance(up, nn.ConvTranspose2d):
        # flax's 2x2 stride-2 'SAME' transposed conv sends input pixel i to outputs 2i + a with
        # kernel tap 1 - a (a spatially flipped kernel); torch uses tap a. HWIO -> IOHW.
        kernel = np.asarray(p['kernel'])[::-1, ::-1]
        up.weight.copy_(_tensor(np.transpose(kernel, (2, 3, 0, 1)), up.weight))
        up.bias.copy_(_tensor(p['bias'], up.bias))
      else:
        # flax orders the 4 * F outputs (a, b, f); pixel_shuffle wants (f, a, b).
        kernel = np.asarray(p['kernel'])
        cin, features = kernel.shape[0], kernel.shape[1] // 4
        kernel = kernel.reshape(cin, 2, 2, features).transpose(3, 1, 2, 0)
        up.conv.weight.copy_(_tensor(kernel.reshape(4 * features, cin, 1, 1), up.conv.weight))
        up.bias.copy_(_tensor(p['bias'], up.bias))
    _load_conv(model.head_out, params['head_out'])
  return model
