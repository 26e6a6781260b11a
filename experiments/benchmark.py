"""How fast is the train step, against what the hardware can do and against PyTorch?

    python -m experiments.benchmark --preset cpu-small            # JAX vs PyTorch, small U-Net
    python -m experiments.benchmark --preset h200-classic --isolate --out results.json
    python -m experiments.benchmark --mode input --cores 1        # the tf.data pipeline alone

Mode 'train' times the real jitted train step (`parallel.make_data_parallel('shard_map', ...)`
over a mesh of one device, the default optimizer with clipping, BatchNorm, dropout, bce_dice,
and the default augmentation on the device from a uint8 batch, as training runs it) on a
device-resident synthetic batch, for every combination of --upsample, --precisions and
--batch-sizes, and prints one row per combination: compile time, median step time (each step
synchronized, after warm-up), images/s, model FLOPs per image (analytic, `unet_jax.flops`, and
XLA's own count of the compiled step), achieved TFLOP/s and its fraction of the peak of a large
matmul of the same dtype timed in the same process, and memory (XLA's plan for the step, and the
device's peak where it reports one). The JSON rows also carry the two floors of a roofline on
the device: images/s at the matmul's rate (compute) and at the rate of a large copy timed in the
same process over the fewest bytes a step must move (memory, `flops.train_floor_bytes`), and,
with --profile-steps, where the device time of traced steps went (`unet_jax/device_profile.py`).
With --torch, the PyTorch copy of the model (`experiments/torch_unet.py`, parameter count
checked equal) trains on the same batch with its best standard settings (bf16 autocast,
channels_last, torch.compile, fused AdamW on GPU) and each JAX row gets the ratio JAX/PyTorch of
images/s (PyTorch trains on the float batch without augmentation, which only flatters it;
`--no-augment` times JAX that way too).

Mode 'input' times the host's share of the input, `unet_jax.input_pipeline.train_batches`
(synthetic source, or real photos with --data-dir; cached examples, per-epoch order, the
--resize-policy's training crop, uint8 batches) alone, in images/s and
images/s per core; --cores pins the process to that many cores first, so the per-core figure is
measured, not divided.

Train mode imports neither TensorFlow nor ml_collections/clu: it runs on a machine with only
jax, flax, optax (and torch for --torch). Run it from the repository root as a module.
"""

import argparse
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types

if __package__ in (None, ''):  # Run as a file (`python experiments/X.py`): find `experiments`.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from unet_jax import augment, cli, compilation_cache, device_profile, flops, models, optim, parallel
from unet_jax import results as results_io
from unet_jax import train_step as ts

# The presets' model is the seed's (classic) U-Net: BatchNorm after ReLU, dropout 0.5 on level 3
# and the bottleneck, the seed head; 'cpu-small' is the same at a quarter of the width.
PRESETS = {
    'cpu-small': dict(image_size=128, base_width=16, depth=4, batch_sizes='8',
                      precisions='float32', upsample='resize_conv,transpose,dense_d2s',
                      steps=10, warmup=2, matmul_size=1024),
    'h200-classic': dict(image_size=224, base_width=64, depth=4, batch_sizes='32,64,128,256',
                         precisions='bfloat16', upsample='transpose,dense_d2s,resize_conv',
                         steps=30, warmup=5, matmul_size=8192),
}
DEFAULTS = PRESETS['cpu-small']

# The optimizer of configs/default.py (kept here because the accelerator machine has no
# ml_collections; tests/benchmark_test.py checks the two agree).
OPTIM = dict(name='adamw', lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, momentum=0.9, nesterov=True,
             weight_decay=1e-4, grad_clip_norm=1.0, schedule='warmup_cosine', warmup_steps=500,
             end_lr_factor=0.01, step_boundaries=(0.6, 0.85), step_factor=0.1)
# config.augment of configs/default.py, likewise checked: the timed step augments on the device
# as training does (`unet_jax.augment`), from uint8 batches.
AUGMENT = dict(enabled=True, flip=True, rot90=True, min_scale=0.6, brightness=0.1, contrast=0.2,
               hue=0.02)
LOSS = 'bce_dice'
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Spec:
  """One benchmarked configuration."""

  upsample: str
  precision: str
  batch_size: int
  image_size: int
  base_width: int
  depth: int
  norm_position: str = 'after_act'
  head: str = 'seed'
  dropout_rate: float = 0.5
  dropout_levels: tuple = (3, 4)
  augment: bool = True  # The JAX step augments its uint8 batch on the device, as training does.
  pool: str = 'reduce_window'  # How JAX computes the max pooling (models.UNet.pool); same values.

  def model_kwargs(self) -> dict:
    return dict(depth=self.depth, base_width=self.base_width, norm='batch',
                norm_position=self.norm_position, dropout_rate=self.dropout_rate,
                dropout_levels=tuple(lvl for lvl in self.dropout_levels if lvl <= self.depth),
                upsample=self.upsample, head=self.head)

  def jax_model_kwargs(self) -> dict:
    return dict(self.model_kwargs(), pool=self.pool)

  def analytic_flops(self) -> flops.UNetFlops:
    return flops.unet_flops(self.image_size, depth=self.depth, base_width=self.base_width,
                            upsample=self.upsample, head=self.head)


def synthetic_batch(batch_size: int, image_size: int, seed: int = 0) -> dict:
  """Random uint8 images and binary masks, as the input pipeline ships them: the step's speed
  ignores content."""
  rng = np.random.default_rng(seed)
  return {'image': rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8),
          'mask': (rng.uniform(size=(batch_size, image_size, image_size, 1)) > 0.5)
                  .astype(np.uint8)}


def model_inputs(batch_np: dict) -> dict:
  """The batch as the model sees it (float32, 0..1), for steps that do not preprocess."""
  return {'image': batch_np['image'].astype(np.float32) / 255.0,
          'mask': batch_np['mask'].astype(np.float32)}


def median_step_s(step, steps: int, warmup: int) -> float:
  """Median wall time of `step()` (which must block until its results are ready)."""
  for _ in range(warmup):
    step()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def pipelined_step_s(dispatch, wait, steps: int) -> float:
  """Mean wall time of `steps` calls of `dispatch()` (which must not block) followed by one
  `wait()`: steps queued back to back, as the training loop runs them (it waits only when it
  logs), where `median_step_s` waits for each step and so also times its dispatch and return."""
  start = time.perf_counter()
  for _ in range(steps):
    dispatch()
  wait()
  return (time.perf_counter() - start) / steps


@functools.cache
def matmul_peak_flops(dtype_name: str, size: int, chain: int = 8, reps: int = 5) -> float:
  """FLOP/s of a chain of size x size matmuls in `dtype`: the ceiling MFU is measured against.

  A chain inside one jitted loop keeps launch overhead out; the weights are scaled by
  1/sqrt(size) so values stay finite however long the chain.
  """
  dtype = jnp.dtype(dtype_name)
  k1, k2 = jax.random.split(jax.random.key(0))
  a = jax.random.normal(k1, (size, size), dtype)
  w = (jax.random.normal(k2, (size, size), jnp.float32) / np.sqrt(size)).astype(dtype)
  fn = jax.jit(lambda a, w: jax.lax.fori_loop(0, chain, lambda _, x: x @ w, a))
  fn(a, w).block_until_ready()
  seconds = median_step_s(lambda: fn(a, w).block_until_ready(), reps, 1)
  return 2 * size**3 * chain / seconds


@functools.cache
def copy_bandwidth(dtype_name: str, elements: int, reps: int = 5) -> float:
  """Bytes/s of one pass over a large array on the device (bytes read plus bytes written): the
  memory ceiling the floor of `flops.train_floor_bytes` is measured against, as the matmul is
  the compute ceiling. Random values, not zeros, which some hardware moves faster."""
  x = jax.random.normal(jax.random.key(2), (elements,), jnp.dtype(dtype_name))
  fn = jax.jit(lambda x: x * 2)
  fn(x).block_until_ready()
  seconds = median_step_s(lambda: fn(x).block_until_ready(), reps, 1)
  return 2 * x.nbytes / seconds


def cost_flops(compiled) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, list | tuple):  # Older jax: one dict per computation.
    cost = cost[0] if cost else None
  return float(cost['flops']) if cost and 'flops' in cost else None


def _plan_bytes(compiled) -> int | None:
  """Device bytes XLA's buffer assignment needs for the step (arguments, outputs, temporaries)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # Not every backend implements it.
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
             + m.temp_size_in_bytes)


def _device_peak_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def bench_jax(spec: Spec, batch_np: dict, steps: int, warmup: int, matmul_size: int,
              compile_only: bool = False, profile_steps: int = 0) -> dict:
  """Compiles and times the real data-parallel train step on one device.

  With `compile_only`, stops after compiling: compile time, XLA's FLOPs and memory plan only
  (what a configuration would need, e.g. the classic U-Net at batch 256, on a CPU machine).
  With `profile_steps`, then traces that many more steps and adds where their device time went
  (`unet_jax/device_profile.py`) as the row's 'profile' (or why not, as 'profile_error').
  """
  dtype = parallel.compute_dtype(spec.precision)
  model = models.UNet(**spec.jax_model_kwargs(), dtype=dtype, bn_axis_name=ts.AXIS)
  tx = optim.create_optimizer(types.SimpleNamespace(**OPTIM), num_train_steps=10_000)
  preprocess = None
  if spec.augment:
    preprocess = augment.make_preprocess(types.SimpleNamespace(**AUGMENT), 'unit', seed=0)
  else:
    batch_np = model_inputs(batch_np)
  dp = parallel.make_data_parallel('shard_map', LOSS, parallel.make_mesh(jax.devices()[:1]),
                             preprocess=preprocess)
  state = dp.place_state(ts.create_train_state(model, tx, jax.random.key(0), spec.image_size))
  batch = dp.place_batch(batch_np)
  rng = jax.random.key(1)
  jax.block_until_ready((state, batch))

  start = time.perf_counter()
  compiled = dp.train_step.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - start
  analytic = spec.analytic_flops()
  xla_flops = cost_flops(compiled)
  row = dict(framework='jax', **dataclasses.asdict(spec), compile_s=compile_s,
             gflop_per_image=analytic.train / 1e9,
             xla_gflop_per_image=None if xla_flops is None else xla_flops / spec.batch_size / 1e9,
             plan_gib=_none_or(_plan_bytes(compiled), GIB),
             params=models.count_params(state.params))
  if compile_only:
    return dict(row, first_step_s=None, step_ms=None, images_per_s=None, pipelined_step_ms=None,
                pipelined_images_per_s=None, tflops=None,
                matmul_peak_tflops=None, mfu=None, copy_gbps=None,
                compute_floor_images_per_s=None, memory_floor_images_per_s=None, peak_gib=None,
                loss=None)
  start = time.perf_counter()
  state, step_metrics = compiled(state, batch, rng)
  jax.block_until_ready((state, step_metrics))
  first_step_s = time.perf_counter() - start

  def dispatch():
    nonlocal state, step_metrics
    state, step_metrics = compiled(state, batch, rng)

  def wait():
    jax.block_until_ready((state, step_metrics))

  def step():
    dispatch()
    wait()

  step_s = median_step_s(step, steps, warmup)
  pipelined_s = pipelined_step_s(dispatch, wait, steps)
  achieved = analytic.train * spec.batch_size / step_s
  peak_gib = _none_or(_device_peak_bytes(), GIB)  # The step's, before the ceilings' arrays.
  peak = matmul_peak_flops(jnp.dtype(dtype).name, matmul_size)
  # The two floors of a roofline on this device: FLOPs at the matmul's rate, and the fewest
  # bytes a step must move at the copy's rate (an array of 16 matmuls' elements: 2 GiB at 8192).
  bandwidth = copy_bandwidth(jnp.dtype(dtype).name, 16 * matmul_size**2)
  floor_bytes = flops.train_floor_bytes(
      spec.image_size, bytes_per_element=jnp.dtype(dtype).itemsize, depth=spec.depth,
      base_width=spec.base_width, upsample=spec.upsample, head=spec.head)
  row = dict(row, first_step_s=first_step_s, step_ms=1e3 * step_s,
             images_per_s=spec.batch_size / step_s, pipelined_step_ms=1e3 * pipelined_s,
             pipelined_images_per_s=spec.batch_size / pipelined_s, tflops=achieved / 1e12,
             matmul_peak_tflops=peak / 1e12, mfu=achieved / peak, copy_gbps=bandwidth / 1e9,
             compute_floor_images_per_s=peak / analytic.train,
             memory_floor_images_per_s=bandwidth / floor_bytes,
             peak_gib=peak_gib, loss=float(step_metrics['loss']))
  if profile_steps:
    try:  # A diagnosis: its failure (no CUPTI, a changed trace format) must not lose the row.
      row['profile'] = device_profile.profile_steps(step, profile_steps,
                                                    hlo_text=compiled.as_text())
    except Exception as error:
      row['profile_error'] = f'{type(error).__name__}: {error}'[:500]
  return row


def bench_torch(spec: Spec, batch_np: dict, steps: int, warmup: int, compile_mode: str | None,
                jax_params: int, peak_flops: float | None) -> dict:
  """The same model, batch and optimizer in PyTorch, with its best standard settings."""
  import torch

  from experiments import torch_unet

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.manual_seed(0)
  # TF32 for float32 convs/matmuls, as XLA uses by default on GPUs that have it.
  torch.backends.cudnn.benchmark = True
  torch.backends.cuda.matmul.allow_tf32 = True
  torch.backends.cudnn.allow_tf32 = True
  model = torch_unet.UNet(**spec.model_kwargs()).to(device, memory_format=torch.channels_last)
  params, _ = torch_unet.count_params(model)
  if params != jax_params:
    raise AssertionError(f'PyTorch model has {params} parameters, JAX {jax_params}.')
  # Weight decay on conv kernels only, as optim.decay_mask.
  decay = [p for p in model.parameters() if p.ndim > 1]
  no_decay = [p for p in model.parameters() if p.ndim <= 1]
  optimizer = torch.optim.AdamW(
      [{'params': decay, 'weight_decay': OPTIM['weight_decay']},
       {'params': no_decay, 'weight_decay': 0.0}],
      lr=OPTIM['lr'], betas=(OPTIM['b1'], OPTIM['b2']), eps=OPTIM['eps'],
      **({'fused': True} if device == 'cuda' else {'foreach': True}))
  forward = model if compile_mode is None else torch.compile(model, mode=compile_mode)
  images = torch.from_numpy(batch_np['image']).permute(0, 3, 1, 2).to(
      device, memory_format=torch.channels_last)
  masks = torch.from_numpy(batch_np['mask']).permute(0, 3, 1, 2).to(
      device, memory_format=torch.channels_last)
  bf16 = spec.precision == 'bfloat16'
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  model.train()

  def dispatch():
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
      logits = forward(images)
    loss = torch_unet.loss_per_image(logits, masks).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIM['grad_clip_norm'], foreach=True)
    optimizer.step()
    return loss

  def step():
    loss = dispatch()
    sync()
    return loss

  if device == 'cuda':
    torch.cuda.reset_peak_memory_stats()
  start = time.perf_counter()
  step()
  first_step_s = time.perf_counter() - start  # Includes torch.compile's compilation.
  step_s = median_step_s(step, steps, warmup)
  pipelined_s = pipelined_step_s(dispatch, sync, steps)
  loss = float(step().item())
  analytic = spec.analytic_flops()
  achieved = analytic.train * spec.batch_size / step_s
  peak_gib = torch.cuda.max_memory_allocated() / GIB if device == 'cuda' else None
  # PyTorch trains on the float batch, never augmented, whatever the JAX rows beside it do.
  row = dict(framework='torch', **dataclasses.asdict(dataclasses.replace(spec, augment=False)),
             compile_s=None,
             first_step_s=first_step_s, step_ms=1e3 * step_s,
             images_per_s=spec.batch_size / step_s, pipelined_step_ms=1e3 * pipelined_s,
             pipelined_images_per_s=spec.batch_size / pipelined_s,
             gflop_per_image=analytic.train / 1e9,
             xla_gflop_per_image=None, tflops=achieved / 1e12,
             matmul_peak_tflops=None if peak_flops is None else peak_flops / 1e12,
             mfu=None if peak_flops is None else achieved / peak_flops, plan_gib=None,
             peak_gib=peak_gib, loss=loss, params=params, torch_compile=compile_mode,
             # Where PyTorch ran: the result's `env` line describes JAX, which the GPU check's
             # PyTorch part keeps on the CPU so that the two never share the card.
             torch_device=torch.cuda.get_device_name() if device == 'cuda' else 'cpu',
             torch_version=torch.__version__, torch_cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version() if device == 'cuda' else None)
  return row


def _none_or(value, scale):
  return None if value is None else value / scale


def torch_matmul_peak_flops(size: int, chain: int = 8, reps: int = 5) -> float:
  """FLOP/s of bf16 (or float32 on CPU) size x size matmuls in PyTorch, for the PyTorch-only
  process (`--frameworks torch`), where JAX must not touch the GPU."""
  import torch

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  dtype = torch.bfloat16 if device == 'cuda' else torch.float32
  a = torch.randn(size, size, device=device, dtype=dtype)

  def run():
    x = a
    for _ in range(chain):
      x = x @ a
    if device == 'cuda':
      torch.cuda.synchronize()

  run()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return 2 * chain * size**3 / statistics.median(times)


def run_spec(spec: Spec, args) -> list[dict]:
  """The JAX row (and the PyTorch row, with the ratio) of one configuration; `--frameworks
  torch` gives the PyTorch row alone (JAX only counts the parameters, on the CPU)."""
  batch_np = synthetic_batch(spec.batch_size, spec.image_size)
  if args.frameworks == 'torch':
    model = models.UNet(**spec.model_kwargs())
    params = models.count_params(jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, spec.image_size, spec.image_size, 3)),
        train=False))['params'])
    return [bench_torch_or_eager(spec, model_inputs(batch_np), args, params,
                                 torch_matmul_peak_flops(args.matmul_size))]
  rows = [bench_jax(spec, batch_np, args.steps, args.warmup, args.matmul_size,
                    args.compile_only, args.profile_steps)]
  if 'torch' in _frameworks(args):
    rows.append(bench_torch_or_eager(spec, model_inputs(batch_np), args, rows[0]['params'],
                                     rows[0]['matmul_peak_tflops'] * 1e12))
    rows[0]['jax_over_torch'] = rows[0]['images_per_s'] / rows[1]['images_per_s']
  return rows


def bench_torch_or_eager(spec: Spec, batch_np: dict, args, params: int, peak_flops) -> dict:
  """`bench_torch` with `--torch-compile`; if torch.compile fails (a missing compiler, a Triton
  error on a machine nobody could test first), eager PyTorch instead, the failure in the row
  (`torch_compile_error`): a blind GPU session still gets a PyTorch figure, marked as eager."""
  compile_mode = None if args.torch_compile == 'none' else args.torch_compile
  try:
    return bench_torch(spec, batch_np, args.steps, args.warmup, compile_mode, params, peak_flops)
  except Exception as error:
    if compile_mode is None or 'out of memory' in str(error).lower():
      raise
    failure = ' '.join(f'{type(error).__name__}: {error}'.split())[:300]  # One line.
    print(f'torch.compile failed ({failure}); measuring eager PyTorch instead.', file=sys.stderr,
          flush=True)
  row = bench_torch(spec, batch_np, args.steps, args.warmup, None, params, peak_flops)
  row['torch_compile_error'] = failure
  return row


def run_isolated(spec: Spec, argv: list[str]) -> list[dict]:
  """Runs one configuration in a fresh process: its own compile time and memory peak."""
  cmd = [sys.executable, '-m', 'experiments.benchmark', *argv, '--worker-spec',
         json.dumps(dataclasses.asdict(spec))]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith('RESULT '):
      return json.loads(line[len('RESULT '):])
  sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
  return [dict(framework='error', **dataclasses.asdict(spec), error=proc.stderr[-500:])]


def environment() -> dict:
  """The hardware and versions line every result carries."""
  import flax
  import optax

  host = results_io.host()
  env = dict(date=datetime.datetime.now().isoformat(timespec='seconds'),
             device=str(jax.devices()[0].device_kind), backend=jax.default_backend(),
             num_devices=jax.device_count(), cpu=host['cpu'], cpu_cores=os.cpu_count(),
             usable_cores=host['usable_cores'], python=platform.python_version(),
             jax=jax.__version__, jaxlib=jax.lib.__version__ if hasattr(jax.lib, '__version__')
             else None, flax=flax.__version__, optax=optax.__version__,
             xla_flags=os.environ.get('XLA_FLAGS', ''))
  # Read from the installed package's metadata: importing torch only for its version costs a JAX
  # process seconds.
  try:
    env['torch'] = importlib.metadata.version('torch')
  except importlib.metadata.PackageNotFoundError:
    env['torch'] = None
  return env


def _fmt(value, spec: str = '.1f') -> str:
  return 'n/a' if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
  header = ('framework', 'upsample', 'prec', 'aug', 'batch', 'compile s', '1st step s', 'step ms',
            'img/s', 'GFLOP/img', 'XLA GFLOP/img', 'TFLOP/s', 'MFU', 'plan GiB', 'peak GiB',
            'JAX/torch')
  lines = [' | '.join(header), ' | '.join('---' for _ in header)]
  for r in rows:
    if r['framework'] == 'error':
      lines.append(f"error | {r['upsample']} | {r['precision']} | {r['batch_size']} | "
                   + r['error'].replace('\n', ' ')[-200:])
      continue
    lines.append(' | '.join([
        r['framework'], r['upsample'], r['precision'].replace('float', 'f'),
        'yes' if r.get('augment', True) and r['framework'] == 'jax' else 'no',
        str(r['batch_size']), _fmt(r['compile_s']), _fmt(r['first_step_s']),
        _fmt(r['step_ms']), _fmt(r['images_per_s']), _fmt(r['gflop_per_image']),
        _fmt(r['xla_gflop_per_image']), _fmt(r['tflops'], '.3f'),
        _fmt(None if r['mfu'] is None else 100 * r['mfu'], '.1f') + ('%' if r['mfu'] else ''),
        _fmt(r['plan_gib'], '.2f'), _fmt(r['peak_gib'], '.2f'),
        _fmt(r.get('jax_over_torch'), '.2f')]))
  return '\n'.join(lines)


def _earlier_rows(path: str) -> list[dict]:
  """The rows of an earlier run's --out file (one cut short, say), marked as kept from it."""
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [dict(r, resumed_from=r.get('resumed_from', path)) for r in json.load(f)['rows']]


def _frameworks(args) -> set[str]:
  """The frameworks each configuration gets a row of."""
  if args.frameworks == 'torch':
    return {'torch'}
  both = args.torch and args.frameworks == 'both' and not args.compile_only
  return {'jax', 'torch'} if both else {'jax'}


def _rows_of(spec: Spec, rows: list[dict], frameworks: set[str]) -> list[dict]:
  """`rows` measured for `spec`, if there is one for every framework (errors don't count)."""
  fields = json.loads(json.dumps(dataclasses.asdict(spec)))  # Tuples as JSON gives them back.
  mine = [r for r in rows if r['framework'] in frameworks
          and all(r.get(k) == v for k, v in fields.items()
                  if k != 'augment' or r['framework'] == 'jax')]  # PyTorch's never augments.
  return mine if {r['framework'] for r in mine} == frameworks else []


def train_mode(args, argv: list[str]) -> dict:
  if args.worker_spec:
    spec = Spec(**{k: tuple(v) if isinstance(v, list) else v
                   for k, v in json.loads(args.worker_spec).items()})
    print('RESULT ' + json.dumps(run_spec(spec, args)), flush=True)
    return {}
  specs = [Spec(upsample=u, precision=p, batch_size=b, image_size=args.image_size,
                base_width=args.base_width, depth=args.depth, norm_position=args.norm_position,
                head=args.head, augment=args.augment, pool=args.pool)
           for u in _split(args.upsample) for p in _split(args.precisions)
           for b in map(int, _split(args.batch_sizes))]
  env = environment()
  print(' '.join(f'{k}={v}' for k, v in env.items()), flush=True)
  # 'complete' turns true after the last configuration: a file cut short by a time limit keeps
  # what it measured and says so (experiments/gpu_check.sh then measures only what it lacks).
  # The output's name alone: a path of the machine that measured (the GPU machine's $OUT) means
  # nothing where the file is kept.
  results = dict(env=env, args=dict(vars(args), out=os.path.basename(args.out)), rows=[],
                 complete=False)
  earlier = _earlier_rows(args.resume_from) if args.resume_from else []
  for i, spec in enumerate(specs):
    rows = _rows_of(spec, earlier, _frameworks(args))
    if rows:
      print(f'{spec}: measured in {args.resume_from}, kept', flush=True)
    else:
      rows = run_isolated(spec, argv) if args.isolate else run_spec(spec, args)
    results['rows'].extend(rows)
    for r in rows:
      print(json.dumps(r), flush=True)
      if 'profile' in r:
        print(f"Device time, batch {r['batch_size']}: "
              + device_profile.format_breakdown(r['profile']), flush=True)
    results['complete'] = i == len(specs) - 1
    if args.out:  # Written after each configuration, whole or not at all (a rename).
      results_io.write_json(args.out, results)
  print(format_table(results['rows']), flush=True)
  return results


def input_mode(args) -> dict:
  """images/s of the tf.data pipeline alone, on `--cores` cores (TensorFlow imported here)."""
  if args.cores:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:args.cores]))
  from configs import default
  from unet_jax import input_pipeline

  config = default.get_config()
  config.data.image_size = args.image_size
  config.data.resize_policy = args.resize_policy
  if args.data_dir:  # Real photos in the ISIC layout, e.g. ../shared/data/isic_sample.
    config.data.source = 'folder'
    config.data.dir = args.data_dir
  else:
    config.data.source = 'synthetic'
    config.data.synthetic_size = args.image_size
    config.data.num_examples = 2 * args.input_examples
    config.data.num_folds = 2  # Half of them train: --input-examples in the training cache.
  batch_size = int(_split(args.batch_sizes)[0])
  config.batch_size = batch_size
  cores = len(os.sched_getaffinity(0))
  start = time.perf_counter()
  batches = input_pipeline.train_batches(config)
  next(batches)  # Builds the cache (decode + resize once): not part of the steady state.
  setup_s = time.perf_counter() - start
  for _ in range(args.warmup):
    next(batches)
  start = time.perf_counter()
  for _ in range(args.steps):
    next(batches)
  seconds = time.perf_counter() - start
  rate = args.steps * batch_size / seconds
  row = dict(mode='input', source=config.data.source, resize_policy=args.resize_policy,
             image_size=args.image_size, batch_size=batch_size, cores=cores,
             setup_s=setup_s, images_per_s=rate, images_per_s_per_core=rate / cores,
             cpu=environment()['cpu'])
  print(json.dumps(row))
  print(f'input pipeline (host part; augmentation runs in the train step), {config.data.source} '
        f'source, {args.resize_policy} policy, {args.image_size}x{args.image_size}: {rate:.0f} '
        f'images/s on {cores} core(s) = {rate / cores:.0f} images/s per core')
  if args.out:
    results_io.write_json(args.out, row)
  return row


def _split(text: str) -> list[str]:
  return [t for t in text.split(',') if t]


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='Presets (flags left unset take these values): ' + '; '.join(
          f'{name}: ' + ', '.join(f'{k}={v}' for k, v in values.items())
          for name, values in PRESETS.items()))
  parser.add_argument('--mode', choices=('train', 'input'), default='train',
                      help='train: time the jitted train step (and PyTorch); input: time the '
                           'tf.data pipeline alone. Default: %(default)s.')
  parser.add_argument('--preset', choices=sorted(PRESETS), default='cpu-small',
                      help='Defaults for the flags left unset (see the end of this help). Default: '
                           '%(default)s.')
  parser.add_argument('--image-size', type=int, help='Square input size in pixels.')
  parser.add_argument('--base-width', type=int, help='Filters at the top level.')
  parser.add_argument('--depth', type=int, help='Number of 2x2 poolings.')
  parser.add_argument('--upsample', help='Comma-separated: resize_conv, transpose, dense_d2s.')
  parser.add_argument('--norm-position', default='after_act', choices=models.NORM_POSITIONS,
                      help='BatchNorm after the ReLU (the seed) or before it. Default: %(default)s.')
  parser.add_argument('--head', default='seed', choices=models.HEADS, help='Output head. Default: %(default)s.')
  parser.add_argument('--pool', default='reduce_window', choices=models.POOLS,
                      help="How JAX computes the 2x2 max pooling: nn.max_pool's reduce-window or "
                           'a reshape and a max, with the same values and gradients '
                           '(models.max_pool_2x2). Default: %(default)s.')
  parser.add_argument('--batch-sizes', help='Comma-separated global batch sizes (input mode: '
                                            'the first one).')
  parser.add_argument('--precisions', help='Comma-separated: float32, bfloat16, auto.')
  parser.add_argument('--steps', type=int, help='Timed steps (batches in input mode).')
  parser.add_argument('--warmup', type=int, help='Untimed steps after the first one.')
  parser.add_argument('--matmul-size', type=int,
                      help='Side of the square matmul whose speed is the MFU reference.')
  parser.add_argument('--augment', action=argparse.BooleanOptionalAction, default=True,
                      help='Train mode: the JAX step augments its uint8 batch on the device, as '
                           'training does (PyTorch gets the float batch unaugmented). Default: on.')
  parser.add_argument('--compile-only', action='store_true',
                      help='Train mode: compile each JAX step and report compile time, XLA '
                           'FLOPs and memory plan, without running it (no PyTorch).')
  parser.add_argument('--profile-steps', type=int, default=0,
                      help='Train mode: after timing, trace this many JAX steps with '
                           "jax.profiler and add where their device time went to the row "
                           "('profile': by kind of operation and the top HLO instructions; "
                           'unet_jax/device_profile.py). Default: 0 (no trace).')
  parser.add_argument('--torch', action=argparse.BooleanOptionalAction, default=True,
                      help='Also train the PyTorch reference on the same batch. Default: on.')
  parser.add_argument('--frameworks', choices=('both', 'jax', 'torch'), default='both',
                      help="Which to time in this process: 'both' (JAX, then PyTorch if "
                           "--torch), 'jax', or 'torch' alone (run it with JAX_PLATFORMS=cpu "
                           'on a GPU, so that JAX takes no GPU memory). Default: %(default)s.')
  parser.add_argument('--torch-compile', default='default',
                      help="torch.compile mode ('default', 'max-autotune', ...) or 'none'. Default: "
                           "%(default)s.")
  parser.add_argument('--isolate', action=argparse.BooleanOptionalAction, default=False,
                      help='Run each configuration in its own process, so compile times and '
                           'device memory peaks are per configuration, not cumulative. Default: off.')
  parser.add_argument('--compilation-cache', default=os.path.join(
      os.path.expanduser('~'), '.cache', 'unet_jax_xla'),
                      help="Persistent XLA compilation cache directory; '' disables it. Default: "
                           "%(default)s.")
  parser.add_argument('--cores', type=int, default=0,
                      help='Input mode: pin the process to this many cores (0: all).')
  parser.add_argument('--input-examples', type=int, default=256,
                      help='Input mode: synthetic training examples in the cache.')
  parser.add_argument('--data-dir', default='',
                      help='Input mode: a folder in the ISIC layout to read instead of synthetic '
                           'data (e.g. ../shared/data/isic_sample).')
  parser.add_argument('--resize-policy', default='stretch', choices=('stretch', 'pad', 'crop'),
                      help='Input mode: config.data.resize_policy. Default: %(default)s.')
  parser.add_argument('--out', default='', help='Write the results as JSON here.')
  parser.add_argument('--resume-from', default='',
                      help="Train mode: an earlier --out file (one cut short by a time limit, "
                           "say): configurations it measured are kept from it, not run again.")
  parser.add_argument('--worker-spec', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  for key, value in PRESETS[args.preset].items():
    if getattr(args, key) is None:
      setattr(args, key, value)
  return args


def main(argv: list[str] | None = None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if args.out:  # Written after the measurements: a path that cannot be fails now, not then.
    cli.check_can_be_file(args.out, '--out')
  # JAX would otherwise take 75% of GPU memory at start, leaving PyTorch the rest. Read when
  # the backend starts (the first device query), so setting it here is early enough.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  if args.compilation_cache:
    compilation_cache.enable_compilation_cache(args.compilation_cache)
  if args.mode == 'input':
    return input_mode(args)
  return train_mode(args, argv)


if __name__ == '__main__':
  main()
