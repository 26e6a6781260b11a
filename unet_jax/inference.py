"""A trained run as a function from native images to native-resolution lesion probabilities.

`load_predictor(workdir)` rebuilds what training built -- the config from `<workdir>/config.json`,
the model from `config.model`, the latest checkpoint -- and returns a `Predictor`. Its
`predict_images` turns each image into the model's tiles with the run's resize policy
(`unet_jax.resize_policy`), normalizes them as training did, runs one jitted forward pass per
batch of tiles, and maps the probabilities back onto the image's own H x W grid. Evaluation
(`unet_jax.evaluate`) and prediction (`unet_jax.predict`) share this path, so the masks we score
are exactly the masks we would submit.

Tiles of consecutive images are batched together and the last batch is padded to the fixed batch
size, so the forward pass compiles once whatever the number of images or tiles per image.
"""

import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tensorflow as tf

# Imported for its side effect: it hides TF's GPUs/TPUs, as TF only decodes images here.
from unet_jax import (
  checkpointing,
  input_pipeline,  # noqa: F401
  models,
  normalization,
  optim,
  resize_policy,
)
from unet_jax import train_step as ts

Key = TypeVar('Key')


def resize_policy_of(config: ml_collections.ConfigDict) -> str:
  """The run's resize policy; runs from before the setting existed stretched their images."""
  return config.data.get('resize_policy', 'stretch')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run wrote into its workdir (train.write_config)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path!r} does not exist: is {workdir!r} the workdir of a training '
                            'run (python -m unet_jax.main --workdir ...)?')
  with open(path, encoding='utf-8') as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_variables(config: ml_collections.ConfigDict, workdir: str) -> tuple[dict, int]:
  """({'params', 'batch_stats'}, step) of the latest checkpoint in `<workdir>/checkpoints`.

  The restore target is the whole train state as training builds it, so orbax checks every shape
  and dtype against the config instead of trusting the files; it is abstract (`jax.eval_shape`),
  so nothing is initialized or compiled just to be overwritten.
  """
  model = models.create_model(config.model)
  optimizer = optim.create_optimizer(config.optim, config.num_train_steps)
  abstract = jax.eval_shape(lambda: ts.create_train_state(
    model, optimizer, jax.random.key(0), config.data.image_size))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          abstract)
  ckpt_dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
  manager = checkpointing.create_manager(ckpt_dir, every_steps=config.checkpoint_every_steps,
                                         max_to_keep=config.max_checkpoints_to_keep)
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {ckpt_dir!r}; train the run first.')
    state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  finally:
    manager.close()
  return {'params': state.params, 'batch_stats': state.batch_stats}, int(step)


@dataclasses.dataclass
class Predictor:
  """Native image -> native probability map, for one model and its variables.

  Attributes:
    config: the run's config (image_size, normalize, resize policy, model).
    variables: {'params', 'batch_stats'}.
    batch_size: tiles per forward pass (the last batch is padded to it).
    tta: average the probabilities of the image and its horizontal, vertical and double flips
      (the flips training augments with), at 4x the compute.
    step: the checkpoint's step, for the record.
  """

  config: ml_collections.ConfigDict
  variables: dict
  batch_size: int
  tta: bool = False
  step: int | None = None
  _forward: Callable | None = dataclasses.field(default=None, repr=False)

  def __post_init__(self):
    if self.batch_size <= 0:
      raise ValueError(f'batch_size={self.batch_size} must be positive.')
    resize_policy.check_policy(self.policy)
    dtype = ts.compute_dtype(self.config.precision)
    model = models.create_model(self.config.model, dtype=dtype)
    self._forward = jax.jit(functools.partial(_probabilities, model, self.tta))

  @property
  def size(self) -> int:
    return int(self.config.data.image_size)

  @property
  def policy(self) -> str:
    return resize_policy_of(self.config)

  def tile_probs(self, tiles: np.ndarray) -> np.ndarray:
    """float32 [n, S, S] probabilities of raw 0..255 tiles [n, S, S, 3], n of any size."""
    tiles = normalization.normalize(np.asarray(tiles, np.float32), self.config.data.normalize)
    n = tiles.shape[0]
    out = []
    for start in range(0, n, self.batch_size):
      chunk = tiles[start : start + self.batch_size]
      pad = self.batch_size - chunk.shape[0]
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
      out.append(np.asarray(self._forward(self.variables, chunk))[: self.batch_size - pad])
    return np.concatenate(out) if out else np.zeros((0, self.size, self.size), np.float32)

  def predict(self, image: np.ndarray) -> np.ndarray:
    """float32 [H, W] lesion probabilities of one uint8 [H, W, 3] image."""
    return next(self.predict_images([(None, image)]))[1]

  def predict_images(
    self, items: Iterable[tuple[Key, np.ndarray]]
  ) -> Iterator[tuple[Key, np.ndarray]]:
    """(key, probabilities [H, W]) for each (key, uint8 image [H, W, 3]), in order.

    Tiles of up to `batch_size` images share forward passes; keys pass through untouched, so a
    caller can carry a path or a truth mask along.
    """
    pending: list[tuple[Key, Any]] = []
    tiles: list[np.ndarray] = []

    def flush():
      probs = self.tile_probs(np.concatenate(tiles))
      start = 0
      for key, placement in pending:
        stop = start + placement.num_tiles
        yield key, resize_policy.probs_to_native(probs[start:stop], placement)
        start = stop
      pending.clear()
      tiles.clear()

    for key, image in items:
      image_tiles, placement = resize_policy.model_inputs(_rgb(image), self.size, self.policy)
      pending.append((key, placement))
      tiles.append(image_tiles)
      if sum(t.shape[0] for t in tiles) >= self.batch_size:
        yield from flush()
    if pending:
      yield from flush()


def _probabilities(model, tta: bool, variables: dict, images: jax.Array) -> jax.Array:
  """sigmoid(logits) [n, S, S] in float32; with tta, averaged over the four flips."""
  if not tta:
    return jax.nn.sigmoid(model.apply(variables, images, train=False)[..., 0].astype(jnp.float32))
  flips = ((), (2,), (1,), (1, 2))  # Axes of [n, S, S, C]: none, horizontal, vertical, both.
  batch = jnp.concatenate([jnp.flip(images, axis) if axis else images for axis in flips])
  probs = jax.nn.sigmoid(model.apply(variables, batch, train=False)[..., 0].astype(jnp.float32))
  probs = jnp.split(probs, len(flips))
  # Flip each prediction back before averaging; the probability axes are [n, S, S].
  return sum(jnp.flip(p, axis) if axis else p for p, axis in zip(probs, flips, strict=True)) / 4


def _rgb(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] from greyscale [H, W] / [H, W, 1] or RGBA [H, W, 4]."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  if image.shape[-1] == 4:
    return image[..., :3]
  return image


def load_predictor(
  workdir: str, *, tta: bool = False, batch_size: int | None = None
) -> Predictor:
  """The latest checkpoint of a run as a Predictor (batch size: the run's eval_batch_size)."""
  config = load_config(workdir)
  variables, step = restore_variables(config, workdir)
  return Predictor(config, variables, batch_size or int(config.eval_batch_size), tta=tta,
                   step=step)


IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] of an image file, decoded as the training pipeline decodes it (TF).

  Raises ValueError naming the file when it cannot be read or decoded.
  """
  try:
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.OpError, OSError) as e:
    message = getattr(e, 'message', None) or str(e)
    raise ValueError(f'Cannot read image {path!r}: {message.strip()}') from e
  return image.numpy()


class Progress:
  """A dependency-free progress bar on stderr: redrawn in place on a terminal, else every ~5%.

  Logs from a batch job stay readable (no carriage-return spam) while a terminal gets a live bar.
  """

  def __init__(self, total: int, label: str = '', stream=None, width: int = 30):
    self.total, self.label, self.width = total, label, width
    self.stream = stream if stream is not None else sys.stderr
    self.done = 0
    self.start = time.perf_counter()
    self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
    self._every = max(1, total // 20)

  def update(self, note: str = '') -> None:
    self.done += 1
    if self.tty:
      self.stream.write('\r' + self._line(note)[:160].ljust(100))
    elif self.done % self._every == 0 or self.done == self.total:
      self.stream.write(self._line(note) + '\n')
    self.stream.flush()

  def close(self) -> None:
    if self.tty:
      self.stream.write('\n')
      self.stream.flush()

  def _line(self, note: str) -> str:
    elapsed = time.perf_counter() - self.start
    rate = self.done / elapsed if elapsed > 0 else 0.0
    filled = self.width * self.done // max(self.total, 1)
    eta = (self.total - self.done) / rate if rate > 0 else 0.0
    bar = '#' * filled + '.' * (self.width - filled)
    return (f'{self.label}[{bar}] {self.done}/{self.total} {rate:.2f} img/s '
            f'ETA {eta:.0f}s {note}').rstrip()
