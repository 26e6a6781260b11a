"""Data parallelism: the device mesh, where state and batches live, and the two wrappers.

The per-device steps of `unet_jax.train_step` are wrapped either way JAX offers:

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

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from unet_jax import train_step as ts
from unet_jax.train_step import AXIS

PARALLELISMS = ('shard_map', 'pmap')
PRECISIONS = ('auto', 'float32', 'bfloat16')


def compute_dtype(precision: str) -> Any:
  """The activations' dtype: 'auto' is bfloat16 on GPU/TPU and float32 on CPU."""
  if precision not in PRECISIONS:
    raise ValueError(f'config.precision={precision!r} is not one of {PRECISIONS}.')
  if precision == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  return jnp.dtype(precision)


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

  @property
  def state_sharding(self) -> jax.sharding.Sharding:
    """Where a state lives before `place_state` (a checkpoint is restored into it): replicated
    over the mesh for shard_map, as `place_state` leaves it; this process's first device for
    pmap, whose `place_state` replicates it."""
    if self.mode == 'shard_map':
      return NamedSharding(self.mesh, P())
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def place_state(self, state):
    """Host/unreplicated state -> the replicated form the steps take."""
    if self.mode == 'shard_map':
      return jax.device_put(state, self.state_sharding)
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
  train_fn = functools.partial(ts.train_step, loss_name=loss_name, preprocess=preprocess)
  eval_fn = functools.partial(ts.eval_step, loss_name=loss_name)
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
