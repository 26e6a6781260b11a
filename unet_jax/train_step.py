"""The data-parallel train and eval steps, and where their inputs live.

One per-device function computes the loss and gradients of its shard of the batch, averages the
gradients with `lax.pmean` over the 'data' axis (BatchNorm averages its statistics over the same
axis), and applies the optimizer. It is wrapped either way JAX offers:

  * 'shard_map' (default): `jax.jit(jax.shard_map(step, mesh))` over a 1-D mesh of every device
    of every process; the state is replicated (`P()`), batches are global arrays sharded over
    'data' (`P('data')`).
  * 'pmap': `jax.pmap(step, axis_name='data')`; the state carries a leading axis of one copy per
    local device, batches a leading axis of local devices.

`DataParallel` hides the difference from the training loop. No TensorFlow is imported here.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from unet_jax import losses, metrics

AXIS = 'data'
PARALLELISMS = ('shard_map', 'pmap')
PRECISIONS = ('auto', 'float32', 'bfloat16')


class TrainState(train_state.TrainState):
  """Parameters and optimizer state, plus the BatchNorm running statistics."""

  batch_stats: Any = None


def compute_dtype(precision: str) -> Any:
  """The activations' dtype: 'auto' is bfloat16 on GPU/TPU and float32 on CPU."""
  if precision not in PRECISIONS:
    raise ValueError(f'config.precision={precision!r} is not one of {PRECISIONS}.')
  if precision == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  return jnp.dtype(precision)


def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       rng: jax.Array, image_size: int) -> TrainState:
  """Initializes parameters (float32), optimizer state and BatchNorm statistics, on the host's
  default device.

  One jitted program, run once: on a CPU it is compiled without XLA's backend optimizations,
  which take 5-7x longer than the program runs (10 s against 1.5 s for a small U-Net's
  initializers); run op by op instead, the optimizer state alone would be dozens of tiny
  compilations.
  """

  init = _init_fn(model, optimizer, image_size)
  options = {'xla_backend_optimization_level': 0} if jax.default_backend() == 'cpu' else None
  return jax.jit(init).lower(rng).compile(compiler_options=options)(rng)


def abstract_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                         image_size: int) -> TrainState:
  """The train state's structure, shapes and dtypes, computing nothing (a restore target)."""
  return jax.eval_shape(_init_fn(model, optimizer, image_size), jax.random.key(0))


def _init_fn(model, optimizer, image_size) -> Callable:
  def init(rng):
    variables = model.init(rng, jnp.zeros((1, image_size, image_size, 3), jnp.float32),
                           train=False)
    return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=optimizer,
                             batch_stats=variables.get('batch_stats', {}))

  return init


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, loss_name: str,
               preprocess: Callable | None = None) -> tuple[TrainState, dict]:
  """One optimizer step on this device's shard of the batch (runs under a 'data' axis).

  `preprocess(batch, step, first)` (e.g. `augment.make_preprocess`) turns the raw batch into
  model inputs first; `first` is the position of this shard's first example in the global batch,
  so per-example randomness does not depend on how many devices share the batch.
  """
  if preprocess is not None:
    first = jax.lax.axis_index(AXIS) * batch['image'].shape[0]
    batch = preprocess(batch, state.step, first)
  # Each device and each step gets its own dropout key.
  step_rng = jax.random.fold_in(jax.random.fold_in(rng, state.step), jax.lax.axis_index(AXIS))

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        mutable=['batch_stats'], rngs={'dropout': step_rng})
    loss = losses.loss_per_image(loss_name, logits, batch['mask']).mean()
    return loss, updates.get('batch_stats', {})

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  step_metrics = {'loss': jax.lax.pmean(loss, AXIS), 'grad_norm': optax.tree.norm(grads)}
  return new_state, step_metrics


def eval_step(state: TrainState, batch: dict, *, loss_name: str) -> dict:
  """Confusion counts and loss sums of this device's shard, summed over all devices."""
  logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                          batch['image'], train=False)
  counts = metrics.confusion_counts(logits, batch['mask'], batch['valid'])
  valid = batch['valid'].astype(jnp.float32)
  counts['loss_sum'] = jnp.sum(losses.loss_per_image(loss_name, logits, batch['mask']) * valid)
  counts['num_images'] = jnp.sum(batch['valid'], dtype=jnp.int32)
  return jax.lax.psum(counts, AXIS)


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (AXIS,))


def check_batch_divides(batch_size: int, num_devices: int, field: str = 'config.batch_size'):
  """A batch that does not split evenly over the devices is a config error, caught early."""
  if batch_size % num_devices:
    raise ValueError(
        f'{field}={batch_size} does not divide by the {num_devices} devices this run uses; '
        f'set it to a multiple of {num_devices} (e.g. {num_devices * max(1, batch_size // num_devices)}).')


@dataclasses.dataclass(frozen=True)
class DataParallel:
  """The wrapped steps plus how state and batches are placed for them.

  Attributes:
    mode: 'shard_map' or 'pmap'.
    mesh: the 1-D 'data' mesh (in 'pmap' mode only its local devices matter).
    train_step: (state, batch, rng) -> (state, metrics); donates the state.
    eval_step: (state, batch) -> summed counts.
  """

  mode: str
  mesh: Mesh
  train_step: Callable
  eval_step: Callable

  @property
  def num_devices(self) -> int:
    return self.mesh.devices.size

  def place_state(self, state):
    """Host/unreplicated state -> the replicated form the steps take."""
    if self.mode == 'shard_map':
      return jax.device_put(state, NamedSharding(self.mesh, P()))
    local = jax.local_devices()
    sharding = NamedSharding(Mesh(np.asarray(local), (AXIS,)), P(AXIS))
    return jax.tree.map(
        lambda x: jax.device_put(np.broadcast_to(x, (len(local), *np.shape(x))), sharding),
        jax.device_get(state))

  def fetch_state(self, state):
    """Replicated state -> one copy (for checkpoints and evaluation on the host)."""
    if self.mode == 'shard_map':
      return state
    return jax.tree.map(lambda x: x[0], state)

  def local_variables(self, state) -> dict:
    """{'params', 'batch_stats'} on this process's first device, for host-driven inference (the
    native validation), without a copy to the host."""
    state = self.fetch_state(state)
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    if self.mode == 'shard_map':
      return jax.tree.map(lambda x: x.addressable_data(0), variables)
    return variables

  def place_batch(self, local_batch: dict):
    """This process's part of a global batch (numpy) -> device arrays for the steps."""
    if self.mode == 'shard_map':
      sharding = NamedSharding(self.mesh, P(AXIS))
      return jax.tree.map(
          lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
    n = jax.local_device_count()
    return jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n, *x.shape[1:])), local_batch)

  def fetch_metrics(self, step_metrics) -> dict:
    """Replicated metrics -> host numpy scalars."""
    if self.mode == 'pmap':
      step_metrics = jax.tree.map(lambda x: x[0], step_metrics)
    return jax.device_get(step_metrics)


def make_data_parallel(mode: str, loss_name: str, mesh: Mesh | None = None,
                       preprocess: Callable | None = None) -> DataParallel:
  """Wraps `train_step` (with `preprocess`, see there) and `eval_step` with shard_map over
  `mesh` or with pmap."""
  mesh = make_mesh() if mesh is None else mesh
  train_fn = functools.partial(train_step, loss_name=loss_name, preprocess=preprocess)
  eval_fn = functools.partial(eval_step, loss_name=loss_name)
  if mode == 'shard_map':
    # check_vma=False keeps pmap's semantics inside the body: gradients are per device until
    # the explicit pmean (with it on, grad of a replicated input is already summed over devices).
    train = jax.jit(
        jax.shard_map(train_fn, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()),
                      check_vma=False),
        donate_argnums=0)
    evaluate = jax.jit(
        jax.shard_map(eval_fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(),
                      check_vma=False))
  elif mode == 'pmap':
    train = jax.pmap(train_fn, axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=0)
    evaluate = jax.pmap(eval_fn, axis_name=AXIS)
  else:
    raise ValueError(f'config.parallelism={mode!r} is not one of {PARALLELISMS}.')
  return DataParallel(mode=mode, mesh=mesh, train_step=train, eval_step=evaluate)
