"""A trained run as a function from photos to native-resolution lesion probabilities.

`load_predictor(workdir, checkpoint=...)` rebuilds what training built -- the config from
`<workdir>/config.json`, the model from `config.model`, the chosen checkpoint -- and returns a
`Predictor`. Its `predict_images` takes each photo as `unet_jax.photos` decodes it (the one
preprocessing path training takes too), makes the model's tiles with the run's resize policy
(`unet_jax.resize_policy`), normalizes them as training did, runs one jitted forward pass per
batch of tiles, and maps the probabilities back onto the photo's native H x W grid. The in-loop
validation (`unet_jax.validation`), `evaluate` and `predict` share this path, so the masks we
score are exactly the masks we would submit.

Tiles of consecutive images are batched together and the last batch is padded to the fixed batch
size, so the forward pass compiles once whatever the number of images or tiles per image.
"""

import dataclasses
import functools
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

# input_pipeline is imported for its side effect: it hides TF's GPUs/TPUs (TF only decodes here).
from unet_jax import (
  checkpointing,
  input_pipeline,  # noqa: F401
  models,
  normalization,
  optim,
  parallel,
  resize_policy,
  results,
  run_config,
)
from unet_jax import train_step as ts

Key = TypeVar('Key')
# An image to predict: (key, uint8 [h, w, 3] as `unet_jax.photos` decoded it, native (H, W) or
# None when the image is at its native size).
Item = tuple[Any, np.ndarray, tuple[int, int] | None]
# One model's output for one image: its tiles' probabilities and where they go.
Part = tuple[np.ndarray, resize_policy.Placement]


def restore_variables(config: ml_collections.ConfigDict, workdir: str,
                      checkpoint: str = 'latest', option: str = '--checkpoint'
                      ) -> tuple[dict, int]:
  """({'params', 'batch_stats'}, step) of a checkpoint in `<workdir>/checkpoints`.

  `checkpoint` is 'best', 'final', 'latest' or a step (`checkpointing.resolve_step`; its errors
  name `option`, where it was given). The restore target is the whole train state as training
  builds it, so orbax checks every shape and dtype against the config instead of trusting the
  files; it is abstract (`jax.eval_shape`), so nothing is initialized or compiled just to be
  overwritten.
  """
  model = models.create_model(config.model)
  optimizer = optim.create_optimizer(config.optim, config.num_train_steps)
  abstract = ts.abstract_train_state(model, optimizer, config.data.image_size,
                                     jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  ckpt_dir = os.path.join(os.path.abspath(workdir), results.CHECKPOINTS_DIR)
  manager = checkpointing.open_for_reading(ckpt_dir)  # The run may be training now.
  try:
    step = checkpointing.resolve_step(manager, checkpoint, config.num_train_steps, option)
    state = checkpointing.restore(manager, step, abstract)
  finally:
    manager.close()
  return {'params': state.params, 'batch_stats': state.batch_stats}, int(step)


@dataclasses.dataclass
class Predictor:
  """Native image -> native probability map, for one model and its variables.

  Attributes:
    config: the run's config (image_size, normalize, resize policy, model).
    variables: {'params', 'batch_stats'}; the training loop swaps in the live state's.
    batch_size: tiles per forward pass (the last batch is padded to it).
    tta: 'none', 'flips' or 'dihedral': average the probabilities over the views of
      `TTA_VIEWS` (4x or 8x the compute).
    step: the checkpoint's step, for the record.
    checkpoint: which checkpoint that is ('best', 'final', 'latest' or the step), for the record.
  """

  config: ml_collections.ConfigDict
  variables: dict
  batch_size: int
  tta: str = 'none'
  step: int | None = None
  checkpoint: str | None = None
  _forward: Callable | None = dataclasses.field(default=None, repr=False)

  def __post_init__(self):
    if self.batch_size <= 0:
      raise ValueError(f'batch_size={self.batch_size} must be positive.')
    resize_policy.check_policy(self.policy)
    dtype = parallel.compute_dtype(self.config.precision)
    model = models.create_model(self.config.model, dtype=dtype)
    self._forward = jax.jit(functools.partial(_probabilities, model, self.tta))

  @property
  def size(self) -> int:
    return int(self.config.data.image_size)

  @property
  def policy(self) -> str:
    return self.config.data.resize_policy

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

  def predict(self, image: np.ndarray, native_shape: tuple[int, int] | None = None) -> np.ndarray:
    """float32 [H, W] lesion probabilities of one uint8 image (see `Item`)."""
    return next(self.predict_images([(None, image, native_shape)]))[1]

  def predict_parts(self, items: Iterable[Item]) -> Iterator[tuple[Any, list[Part]]]:
    """(key, [(tile probabilities [k, S, S], placement)]) for each item, in order.

    Tiles of up to `batch_size` images share forward passes; keys pass through untouched, so a
    caller can carry a path or a truth mask along. Mapping the tiles back to the native grid
    (`to_native`) is left to the caller, who may run it in threads. One part per model (an
    `Ensemble` gives one per member).
    """
    pending: list[tuple[Any, resize_policy.Placement]] = []
    tiles: list[np.ndarray] = []

    def flush():
      probs = self.tile_probs(np.concatenate(tiles))
      start = 0
      for key, placement in pending:
        stop = start + placement.num_tiles
        yield key, [(probs[start:stop], placement)]
        start = stop
      pending.clear()
      tiles.clear()

    for key, image, native_shape in items:
      image_tiles, placement = resize_policy.model_inputs(
        _rgb(image), self.size, self.policy, native_shape)
      pending.append((key, placement))
      tiles.append(image_tiles)
      if sum(t.shape[0] for t in tiles) >= self.batch_size:
        yield from flush()
    if pending:
      yield from flush()

  def predict_images(self, items: Iterable[Item]) -> Iterator[tuple[Any, np.ndarray]]:
    """(key, float32 [H, W] probabilities on the native grid) for each item, in order."""
    for key, parts in self.predict_parts(items):
      yield key, to_native(parts)


def to_native(parts: Sequence[Part]) -> np.ndarray:
  """float32 [H, W]: each model's tiles mapped to the native grid, averaged over the models."""
  maps = [resize_policy.probs_to_native(probs, placement) for probs, placement in parts]
  return maps[0] if len(maps) == 1 else np.mean(maps, axis=0)


@dataclasses.dataclass
class Ensemble:
  """Several runs predicting together: their probabilities averaged on the native grid (the 5
  fold models of a cross-validation, say). All members decode photos at the same image size."""

  members: list[Predictor]

  def __post_init__(self):
    sizes = {m.size for m in self.members}
    if len(sizes) != 1:
      raise ValueError(f'An ensemble needs one config.data.image_size; its members have {sizes}.')

  config = property(lambda self: self.members[0].config)
  size = property(lambda self: self.members[0].size)
  policy = property(lambda self: '+'.join(sorted({m.policy for m in self.members})))
  tta = property(lambda self: self.members[0].tta)
  step = property(lambda self: [m.step for m in self.members])
  checkpoint = property(lambda self: self.members[0].checkpoint)

  def predict_parts(self, items: Iterable[Item]) -> Iterator[tuple[Any, list[Part]]]:
    """Each member's parts, one image's after another's; members batch a chunk at a time."""
    chunk_size = self.members[0].batch_size
    items = iter(items)
    while chunk := list(itertools.islice(items, chunk_size)):
      outputs = [list(m.predict_parts(chunk)) for m in self.members]
      for per_member in zip(*outputs, strict=True):
        yield per_member[0][0], [part for _, parts in per_member for part in parts]

  predict_images = Predictor.predict_images
  predict = Predictor.predict


# Test-time augmentation: (rot90 turns, horizontal flip) of each view. 'flips' are the image and
# its horizontal, vertical and double flips; 'dihedral' the 8 flips and rotations that the
# training augmentation draws from (unet_jax.augment).
TTA_VIEWS = {
  'none': ((0, False),),
  'flips': ((0, False), (0, True), (2, True), (2, False)),
  'dihedral': tuple((k, flip) for k in range(4) for flip in (False, True)),
}


def _view(x: jax.Array, k: int, flip: bool) -> jax.Array:
  """A view of [n, S, S, ...]: flipped horizontally (optional), then turned k times."""
  if flip:
    x = jnp.flip(x, 2)
  return jnp.rot90(x, k, axes=(1, 2))


def _unview(p: jax.Array, k: int, flip: bool) -> jax.Array:
  """The inverse of `_view` on probabilities [n, S, S]."""
  p = jnp.rot90(p, -k, axes=(1, 2))
  return jnp.flip(p, 2) if flip else p


def _probabilities(model, tta: str, variables: dict, images: jax.Array) -> jax.Array:
  """sigmoid(logits) [n, S, S] in float32, averaged over the `tta` views, each mapped back."""
  views = TTA_VIEWS[tta]
  batch = jnp.concatenate([_view(images, k, flip) for k, flip in views])
  probs = jax.nn.sigmoid(model.apply(variables, batch, train=False)[..., 0].astype(jnp.float32))
  probs = jnp.split(probs, len(views))
  return sum(_unview(p, k, flip) for p, (k, flip) in zip(probs, views, strict=True)) / len(views)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How probabilities become a submitted mask (`config.inference`; flags override it).

  Attributes:
    tta: 'none', 'flips' (4 views) or 'dihedral' (the 8 views of the training augmentation).
    threshold: lesion where the native-resolution probability >= this.
    largest_component: keep only the largest connected lesion region.
    fill_holes: fill the holes inside lesion regions. With `largest_component`, the challenge's
      shape: one contiguous region without holes.
  """

  tta: str = 'none'
  threshold: float = 0.5
  largest_component: bool = False
  fill_holes: bool = False

  def mask(self, probs: np.ndarray) -> np.ndarray:
    """bool [H, W]: thresholded, then post-processed."""
    return postprocess(probs >= self.threshold, self.largest_component, self.fill_holes)


def postprocess(mask: np.ndarray, largest_component: bool, fill_holes: bool) -> np.ndarray:
  """The largest 8-connected region (optional), then its holes filled (optional)."""
  from scipy import ndimage

  if largest_component and mask.any():
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count > 1:
      sizes = np.bincount(labels.ravel())
      sizes[0] = 0
      mask = labels == int(np.argmax(sizes))
  if fill_holes:
    mask = ndimage.binary_fill_holes(mask)
  return mask


TUNED = 'inference.json'  # Written by `evaluate --tune-threshold` in the run's workdir.


def settings(config: ml_collections.ConfigDict, workdir: str | None = None,
             **overrides) -> Settings:
  """The run's inference settings: `config.inference`, then a threshold tuned by
  `evaluate --tune-threshold` (`<workdir>/inference.json`), then `overrides` not None."""
  values = dataclasses.asdict(Settings())  # For runs from before config.inference existed.
  values.update(dict(config.inference) if 'inference' in config else {})
  if workdir and os.path.exists(os.path.join(workdir, TUNED)):
    with open(os.path.join(workdir, TUNED), encoding='utf-8') as f:
      values['threshold'] = json.load(f)['threshold']
  values.update({k: v for k, v in overrides.items() if v is not None})
  if values.get('tta') not in TTA_VIEWS:
    raise ValueError(f'TTA {values.get("tta")!r} is not one of {tuple(TTA_VIEWS)} (--tta; the '
                     "run's config.inference.tta).")
  if not 0 < values['threshold'] < 1:  # 0 would mark every pixel, 1 none.
    raise ValueError(f'The threshold {values["threshold"]!r} must be a probability strictly '
                     'between 0 and 1 (--threshold; the run\'s config.inference.threshold).')
  return Settings(**values)


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
  workdir: str | Sequence[str], *, checkpoint: str = 'latest', tta: str = 'none',
  batch_size: int | None = None
) -> Predictor | Ensemble:
  """A checkpoint of a run ('best', 'final', 'latest' or a step) as a Predictor (batch size:
  the run's config.eval.batch_size); several workdirs give an Ensemble of their checkpoints."""
  if not isinstance(workdir, str):
    members = [load_predictor(w, checkpoint=checkpoint, tta=tta, batch_size=batch_size)
               for w in workdir]
    return members[0] if len(members) == 1 else Ensemble(members)
  config = run_config.load(workdir)
  variables, step = restore_variables(config, workdir, checkpoint)
  return Predictor(config, variables, batch_size or int(config.eval.batch_size), tta=tta,
                   step=step, checkpoint=checkpoint)

