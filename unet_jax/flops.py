"""Analytic FLOP counts of the U-Net, for throughput and MFU figures that do not trust a profiler.

Only convolutions (and the dense upsampling, a matmul) are counted, as 2 FLOPs per
multiply-accumulate: the usual "model FLOPs" of MFU. BatchNorm, ReLU, pooling, dropout, the loss
and the optimizer are elementwise and left out; XLA's cost analysis counts them, which is why
the two agree to within a few percent on realistic widths, and not on toy ones.

Two conventions for the border of a 'SAME' convolution:
  * nominal (default): every kernel tap of every output pixel counts, as the hardware computes
    it and as papers quote it (the classic U-Net at 224x224: ~74 GFLOP per image forward);
  * `exact_taps=True`: taps that fall on the zero padding are not counted, which is what XLA's
    `cost_analysis()` reports for a convolution, so the cross-check compares like with like.

`conv_input_elements` and `train_floor_bytes` are the other number of a roofline: the fewest
bytes a training step must move through device memory, for a memory-bound floor beside the
compute-bound one (FLOPs over a matmul's rate).

No TensorFlow or flax here: this is arithmetic on the model's settings.
"""

import dataclasses

UPSAMPLES = ('resize_conv', 'transpose', 'dense_d2s')
HEADS = ('linear', 'seed')


def _same_taps_1d(n: int, k: int) -> int:
  """Kernel taps of a stride-1 'SAME' conv along one axis of length n that hit real input."""
  lo = (k - 1) // 2
  # Output o reads input o - lo + t for t in [0, k); count the t that land inside [0, n).
  return sum(min(k, n + lo - o) - max(0, lo - o) for o in range(n))


def conv_flops(size: int, k: int, cin: int, cout: int, *, exact_taps: bool = False) -> int:
  """FLOPs of a stride-1 'SAME' k x k conv on a size x size map, cin -> cout channels."""
  taps = _same_taps_1d(size, k)**2 if exact_taps else size * size * k * k
  return 2 * taps * cin * cout


@dataclasses.dataclass(frozen=True)
class UNetFlops:
  """FLOPs per image of one forward pass, and of one training step (forward + backward).

  Attributes:
    forward: FLOPs of the forward pass.
    first_conv: FLOPs of the first conv, whose input gradient backprop never computes.
    train: forward + weight gradients (= forward) + input gradients (= forward - first conv).
  """

  forward: int
  first_conv: int

  @property
  def train(self) -> int:
    return 3 * self.forward - self.first_conv


def unet_flops(image_size: int, *, depth: int = 4, base_width: int = 64,
               upsample: str = 'resize_conv', head: str = 'seed', in_channels: int = 3,
               exact_taps: bool = False) -> UNetFlops:
  """FLOPs per image of `models.UNet` with these settings (see the module docstring)."""
  if upsample not in UPSAMPLES or head not in HEADS:
    raise ValueError(f'upsample={upsample!r} / head={head!r} not in {UPSAMPLES} / {HEADS}.')
  conv = lambda size, k, cin, cout: conv_flops(size, k, cin, cout, exact_taps=exact_taps)  # noqa: E731
  total = 0
  cin = in_channels
  first_conv = conv(image_size, 3, in_channels, base_width)
  for level in range(depth + 1):
    size, features = image_size // 2**level, base_width * 2**level
    total += conv(size, 3, cin, features) + conv(size, 3, features, features)
    cin = features
  for level in reversed(range(depth)):
    size, features = image_size // 2**level, base_width * 2**level
    if upsample == 'resize_conv':  # A 2x2 conv on the nearest-upsampled map.
      total += conv(size, 2, 2 * features, features)
    else:  # Each input pixel feeds 4 output pixels through its own 2*features x features matrix.
      total += 2 * (size // 2)**2 * 2 * features * 4 * features
    total += conv(size, 3, 2 * features, features) + conv(size, 3, features, features)
  if head == 'seed':
    total += conv(image_size, 3, base_width, 2) + conv(image_size, 1, 2, 1)
  else:
    total += conv(image_size, 1, base_width, 1)
  return UNetFlops(forward=total, first_conv=first_conv)


# A conv's input map, in the fewest passes over device memory a training step can make when every
# normalization and activation is fused into a neighbouring kernel: written once (forward),
# read by the forward conv and again by the backward's weight gradient, and its gradient written
# once and read twice (the previous layer's input and weight gradients).
TRAIN_PASSES = 6


def conv_input_elements(image_size: int, *, depth: int = 4, base_width: int = 64,
                        upsample: str = 'resize_conv', head: str = 'seed',
                        in_channels: int = 3) -> int:
  """Elements per image of the input maps of every conv (and of the dense upsampling) of
  `models.UNet` with these settings: what a training step must move through memory."""
  if upsample not in UPSAMPLES or head not in HEADS:
    raise ValueError(f'upsample={upsample!r} / head={head!r} not in {UPSAMPLES} / {HEADS}.')
  total = 0
  cin = in_channels
  for level in range(depth + 1):
    size, features = image_size // 2**level, base_width * 2**level
    total += size * size * (cin + features)
    cin = features
  for level in reversed(range(depth)):
    size, features = image_size // 2**level, base_width * 2**level
    # resize_conv convolves the nearest-upsampled map; the other forms read the coarse one.
    up_size = size if upsample == 'resize_conv' else size // 2
    total += up_size * up_size * 2 * features
    total += size * size * (2 * features + features)
  total += image_size * image_size * (base_width + 2 if head == 'seed' else base_width)
  return total


def train_floor_bytes(image_size: int, *, bytes_per_element: int = 2, **model) -> int:
  """Fewest bytes per image one training step moves through device memory: every conv input
  map `TRAIN_PASSES` times, in the compute dtype (2 bytes for bfloat16). Parameters, optimizer
  state and the batch are left out (a few bytes per image at a large batch)."""
  return TRAIN_PASSES * bytes_per_element * conv_input_elements(image_size, **model)
