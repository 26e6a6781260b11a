"""Scoring a model the way the ISIC challenge scores: per image, at the mask's native resolution.

The library under `python -m unet_jax.evaluate` and the training loop's validation (`val_*`):

  * `split_ids` / `iter_split`: the images of a split of any source ('synthetic', 'folder',
    'isic'), decoded by `unet_jax.photos` (the one preprocessing path), with their ground truth
    at native resolution ('isic': the stored native masks; 'synthetic': the images are drawn at
    `config.data.synthetic_size`, which is their native size).
  * `score`: the predictor's tiles over the whole image (every tile of the 'crop' policy, the
    content box of 'pad', never only a central crop), mapped back onto the native grid,
    thresholded and counted against the truth (`unet_jax.native_scoring`: the official scorer's
    definitions). The native-resolution mapping runs in threads (numpy releases the GIL).
  * `NativeValidation`: the same on a training process's slice of the validation split, with the
    live state's variables, the counts gathered over processes.
"""

import concurrent.futures
import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Sequence

import jax
import ml_collections
import numpy as np

from unet_jax import (
  cli,
  faults,
  inference,
  input_pipeline,
  isic_source,
  native_scoring,
  photos,
)
from unet_jax import synthetic as synthetic_data

# Images decoded ahead of the forward pass, and native-resolution mappings in flight.
_WORKERS = min(8, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Example:
  """One image to score: the photo as decoded for the model, the truth at native size."""

  image_id: str
  image: np.ndarray  # uint8 [h, w, 3], `photos.decode_photo`'s scale.
  native_shape: tuple[int, int]  # (H, W)
  truth: np.ndarray  # bool [H, W]


def split_ids(config: ml_collections.ConfigDict, split: str) -> list[str]:
  """The sorted image ids of a split of the run's data source."""
  data = config.data
  input_pipeline.check_split(data, split)
  if data.source == 'folder':
    return input_pipeline.folder_split(data, split)[0]
  if data.source == 'isic':
    return isic_source.split(data, split)[1]
  if data.source == 'synthetic':
    return [input_pipeline.synthetic_id(k) for k in input_pipeline.synthetic_indices(data, split)]
  raise ValueError(f'config.data.source={data.source!r} is not one of '
                   "('synthetic', 'folder', 'isic').")


def split_ids_here(config: ml_collections.ConfigDict, split: str) -> list[str] | None:
  """`split_ids`, or None where the run's data is not on this machine as it was (its folder
  moved or changed, its TFDS dataset not prepared here), which `split_ids` would fail on or
  prepare: for notes that such data must not stop."""
  data = config.data
  if data.source == 'isic' and not isic_source.is_prepared(data):
    return None
  try:
    return split_ids(config, split)
  except (FileNotFoundError, ValueError):  # The folder source's checks of its folder.
    return None


def iter_split(config: ml_collections.ConfigDict, split: str,
               ids: Sequence[str] | None = None) -> Iterator[Example]:
  """The examples of `ids` (default: all of the split), decoded a few ahead in threads.

  'folder' and 'synthetic' yield them in the order of `ids`; 'isic' in the dataset's stored
  order (a TFDS split is read sequentially).
  """
  data = config.data
  if data.source == 'folder':  # Its listing gives the files' paths too: listed once.
    input_pipeline.check_split(data, split)
    every, image_paths, mask_paths = input_pipeline.folder_split(data, split)
  else:
    every = split_ids(config, split)
  if ids is None:
    ids = every
  else:
    ids = list(ids)
    if unknown := sorted(set(ids) - set(every)):
      raise ValueError(
          f'{len(unknown)} id(s) are not images of the {split!r} split of this run: '
          f'{", ".join(unknown[:5])}{", ..." * (len(unknown) > 5)}; its images are '
          f'{", ".join(every[:3])}, ... ({len(every)} in all).')
  size = data.image_size
  if data.source == 'isic':
    for x in isic_source.records(data, split, ids, native_mask=True).as_numpy_iterator():
      yield Example(x['id'].decode(), x['image'], tuple(int(v) for v in x['native']),
                    x['mask_native'].astype(bool))
    return
  if data.source == 'folder':
    where = {i: (p, m) for i, p, m in zip(every, image_paths, mask_paths, strict=True)}

    def load(ident):
      image_path, mask_path = where[ident]
      return folder_example(ident, image_path, mask_path, size)
  elif data.source == 'synthetic':
    side = data.synthetic_size

    def load(ident):
      image, mask = synthetic_data.make_example(data.synthetic_seed, int(ident.rsplit('_', 1)[1]),
                                                side, side)
      return Example(ident, image, (side, side), mask.astype(bool))
  else:
    return  # split_ids raised for an unknown source.
  yield from _prefetch(load, ids)


def folder_example(ident: str, image_path: str, mask_path: str, size: int) -> Example:
  """One image file and its mask file: the photo decoded for `size`, the mask read and binarized
  as the official scorer reads it."""
  image, native = photos.read_photo(image_path, size)
  truth = native_scoring.binarize(native_scoring.read_mask(mask_path))
  if truth.shape != native:
    raise ValueError(f'Mask {mask_path!r} is {truth.shape[0]}x{truth.shape[1]} (HxW) but its '
                     f'image {image_path!r} is {native[0]}x{native[1]}.')
  return Example(ident, image, native, truth)


def dir_ids(images_dir: str, truth_dir: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
  """Every mask in `truth_dir` with its image in `images_dir`, paired by id: (ids, {id: paths}).

  A file named as its id (`ISIC_0000000.jpg`) is the image of that id before any other file the
  id is found in (ISIC 2017's `ISIC_0000000_superpixels.png` beside it); two such files (the
  photo as .jpg and as .png) are an error, not a guess."""
  truth = native_scoring.list_truth_masks(truth_dir)
  if not os.path.isdir(images_dir):
    raise FileNotFoundError(f'--images {images_dir!r} is not a directory'
                            f'{cli.home_hint(images_dir)}.')
  found: dict[str, list[str]] = {}
  for name in sorted(os.listdir(images_dir)):
    if not name.startswith('.') and name.lower().endswith(native_scoring.IMAGE_EXTS):
      found.setdefault(native_scoring.image_id(name), []).append(name)
  images = {}
  for ident, names in found.items():
    named_as_id = [n for n in names if os.path.splitext(n)[0] == ident] or names
    if len(named_as_id) > 1 and ident in truth:
      raise ValueError(f'{named_as_id[0]!r} and {named_as_id[1]!r} in {images_dir!r} are both '
                       f"images of {ident!r}; keep one of them there (or move the other out).")
    images[ident] = os.path.join(images_dir, named_as_id[0])
  missing = sorted(set(truth) - set(images))
  if missing:
    inside = None if images else native_scoring.subfolder_holding(images_dir, lambda d: any(
        n.lower().endswith(native_scoring.IMAGE_EXTS) and native_scoring.image_id(n) in truth
        for n in os.listdir(d)))
    hint = f'; its subfolder {os.path.basename(inside)!r} holds them: give {inside!r}' if (
        inside) else ''
    raise FileNotFoundError(f'{len(missing)} truth mask(s) have no image in {images_dir!r}, '
                            f'e.g. {missing[:5]}{hint}.')
  ids = sorted(truth)
  return ids, {i: (images[i], truth[i]) for i in ids}


def iter_pairs(ids: Sequence[str], paths: dict[str, tuple[str, str]],
               size: int) -> Iterator[Example]:
  """The examples of `dir_ids`'s pairs, in the order of `ids`, decoded a few ahead in threads."""
  yield from _prefetch(lambda i: folder_example(i, *paths[i], size), ids)


def _prefetch(load, keys: Sequence, ahead: int = 2 * _WORKERS) -> Iterator:
  """load(key) for each key, in order, computed up to `ahead` keys ahead in threads."""
  with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
    futures = [pool.submit(load, k) for k in keys[:ahead]]
    for i in range(len(keys)):
      if i + ahead < len(keys):
        futures.append(pool.submit(load, keys[i + ahead]))
      yield futures[i].result()
      futures[i] = None


def _score_one(example: Example, parts, settings: inference.Settings, thresholds=None):
  probs = inference.to_native(parts)
  if thresholds is not None:  # One score per threshold, from the same probabilities.
    return [native_scoring.score_image(example.image_id, example.truth, dataclasses.replace(
        settings, threshold=t).mask(probs)) for t in thresholds]
  return native_scoring.score_image(example.image_id, example.truth, settings.mask(probs))


def score(predictor: inference.Predictor | inference.Ensemble, examples: Iterable[Example], *,
          settings: inference.Settings | None = None, progress=None,
          thresholds: Sequence[float] | None = None) -> list:
  """Each example predicted (with the predictor's TTA), mapped to its native grid, made a mask
  by `settings` (threshold, post-processing) and scored; in the examples' order. With
  `thresholds`, each example's scores at each of them instead (for tuning the threshold)."""
  settings = settings or inference.Settings()
  items = ((e, e.image, e.native_shape) for e in examples)
  with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
    futures = []
    for example, parts in predictor.predict_parts(items):
      futures.append(pool.submit(_score_one, example, parts, settings, thresholds))
      if progress:
        progress.update(example.image_id)
    scores = [f.result() for f in futures]
  if progress:
    progress.close()
  return scores


class NativeValidation:
  """`val_*` during training: this process's slice of the validation split, scored per image at
  native resolution with the live state, the counts gathered so every process holds them all.

  Process p of P scores images [p*n//P, (p+1)*n//P) of the sorted ids on its first local device
  (no collective: processes need not be in lockstep here); the results are exchanged once.
  """

  def __init__(self, config: ml_collections.ConfigDict, split: str = 'val'):
    self.config = config
    self.split = split
    self.ids = split_ids(config, split)
    if not self.ids:
      raise ValueError(f'The {split!r} split is empty; check config.data.')
    count, index = jax.process_count(), jax.process_index()
    n = len(self.ids)
    self._mine = self.ids[index * n // count:(index + 1) * n // count]
    self.settings = (inference.settings(config) if config.eval.use_inference
                     else inference.Settings())
    self._predictor = inference.Predictor(config, variables={},
                                          batch_size=int(config.eval.batch_size),
                                          tta=self.settings.tta)
    self.seconds = 0.0

  def __call__(self, variables: dict, step: int = 0) -> list[native_scoring.ImageScore]:
    """The ImageScores of every image of the split, sorted by id."""
    start = time.perf_counter()
    self._predictor.variables = variables
    halfway = _Halfway(len(self._mine), lambda: faults.fire('validation', step))
    scores = score(self._predictor, iter_split(self.config, self.split, self._mine),
                   settings=self.settings, progress=halfway)
    if jax.process_count() > 1:
      scores = _gather(scores, self.ids)
    self.seconds = time.perf_counter() - start
    return sorted(scores, key=lambda s: s.image_id)


class _Halfway:
  """A progress sink that calls `action` once, halfway through (the fault tests' hook)."""

  def __init__(self, total: int, action):
    self.done, self.total, self.action = 0, total, action

  def update(self, note: str = ''):
    self.done += 1
    if self.done == max(1, self.total // 2):
      self.action()

  def close(self):
    pass


def _gather(local: list[native_scoring.ImageScore],
            ids: list[str]) -> list[native_scoring.ImageScore]:
  """Every process's scores on every process: rows [index, H, W, tp, fp, fn, tn] (int32; one
  image has at most ~30 million pixels) padded to the largest slice, then all-gathered."""
  from jax.experimental import multihost_utils

  position = {ident: i for i, ident in enumerate(ids)}
  rows = np.full((-(-len(ids) // jax.process_count()), 7), -1, np.int32)
  for r, s in enumerate(local):
    rows[r] = (position[s.image_id], s.height, s.width, s.tp, s.fp, s.fn, s.tn)
  gathered = np.asarray(multihost_utils.process_allgather(rows)).reshape(-1, 7)
  return [native_scoring.ImageScore(ids[row[0]], *(int(v) for v in row[1:]))
          for row in gathered if row[0] >= 0]
