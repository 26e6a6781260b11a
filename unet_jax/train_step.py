"""The per-device train and eval steps: what one device computes on its shard of a batch.

The train step computes the loss and gradients of its shard, averages the gradients with
`lax.pmean` over the 'data' axis (BatchNorm averages its statistics over the same axis), and
applies the optimizer; the eval step sums confusion counts over the axis. How the steps are
wrapped for many devices (shard_map over a mesh, or pmap) is `unet_jax.parallel`. No TensorFlow
is imported here.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from unet_jax import losses, metrics

AXIS = 'data'


class TrainState(train_state.TrainState):
  """Parameters and optimizer state, plus the BatchNorm running statistics."""

  batch_stats: Any = None


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
                         image_size: int, sharding: jax.sharding.Sharding | None = None
                         ) -> TrainState:
  """The train state's structure, shapes and dtypes, computing nothing (a restore target, the
  arrays placed by `sharding` when given)."""
  abstract = jax.eval_shape(_init_fn(model, optimizer, image_size), jax.random.key(0))
  if sharding is None:
    return abstract
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      abstract)


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


