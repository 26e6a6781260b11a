"""Scoring at native resolution, with the ISIC 2018 Task 1 challenge's own metric definitions.

The challenge scores each image at its original size and then averages over images (a *macro*
average): a small lesion counts as much as a large one. Its headline number is the thresholded
Jaccard, which is the image's Jaccard index when that is >= 0.65 and 0 otherwise, so a
segmentation that is only roughly right scores nothing. These definitions follow the official
scorer, `isic-challenge-scoring` (isic_challenge_scoring/metrics.py, segmentation.py), and
tests/native_scoring_test.py checks our numbers against that package on the same folders:

- a mask pixel is "lesion" when its 8-bit value is > 128 (truth and prediction alike);
- accuracy = (TP + TN) / all pixels;
- sensitivity = TP / (TP + FN), and 1 when the truth has no lesion pixel;
- specificity = TN / (TN + FP), and 1 when the truth is all lesion;
- Jaccard = TP / (TP + FP + FN) and Dice = 2TP / (2TP + FP + FN), both 1 when TP + FP + FN = 0
  (an empty prediction of an empty mask is perfect); threshold Jaccard inherits that 1.

Counts are Python ints and ratios Python floats (float64), as in the official code, so per-image
values agree exactly and macro averages to rounding.
"""

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np

from unet_jax import cli, metrics

THRESHOLD = 0.65
METRICS = ('accuracy', 'sensitivity', 'specificity', 'jaccard', 'threshold_jaccard', 'dice')
COUNTS = ('tp', 'fp', 'fn', 'tn')
# 8-bit mask values above this are lesion, as the official scorer binarizes both masks.
BINARIZE_ABOVE = 128

# The files taken for photos: `predict`'s inputs, and the images `evaluate --images --truth`
# pairs with masks (`evaluation.dir_ids`). Here, not in `photos`, so that listing files imports no
# TensorFlow.
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')

_ISIC_ID = re.compile(r'ISIC_[0-9]{7}')
_MASK_EXTS = ('.png',)
_MASK_SUFFIX = '_segmentation'


@dataclasses.dataclass(frozen=True)
class ImageScore:
  """One image's confusion counts and metrics; a row of a per-image CSV (unet_jax.results)."""

  image_id: str
  height: int
  width: int
  tp: int
  fp: int
  fn: int
  tn: int

  def metrics(self) -> dict[str, float]:
    return metrics_from_counts(self.tp, self.fp, self.fn, self.tn)

  def row(self) -> dict:
    return {**dataclasses.asdict(self), **self.metrics()}


def binarize(mask: np.ndarray) -> np.ndarray:
  """Boolean lesion map of an 8-bit mask (0/255 expected; anything > 128 is lesion)."""
  return np.asarray(mask) > BINARIZE_ABOVE


def confusion(truth: np.ndarray, prediction: np.ndarray) -> tuple[int, int, int, int]:
  """(TP, FP, FN, TN) of two boolean maps of the same shape."""
  truth = np.asarray(truth, bool)
  prediction = np.asarray(prediction, bool)
  if truth.shape != prediction.shape:
    raise ValueError(f'Prediction shape {prediction.shape} differs from truth shape {truth.shape}.')
  tp = int(np.count_nonzero(truth & prediction))
  fp = int(np.count_nonzero(prediction)) - tp
  fn = int(np.count_nonzero(truth)) - tp
  tn = truth.size - tp - fp - fn
  return tp, fp, fn, tn


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
  """The official per-image metrics of one confusion matrix (see the module docstring).

  The ratios (and their empty-denominator convention) are the training loop's
  `unet_jax.metrics.metrics_from_counts`; the challenge adds the thresholded Jaccard.
  """
  result = metrics.metrics_from_counts({'tp': tp, 'fp': fp, 'fn': fn, 'tn': tn})
  result['threshold_jaccard'] = result['jaccard'] if result['jaccard'] >= THRESHOLD else 0.0
  return {name: result[name] for name in METRICS}


def score_image(image_id: str, truth: np.ndarray, prediction: np.ndarray) -> ImageScore:
  """Scores boolean maps (use `binarize` on 8-bit masks first)."""
  tp, fp, fn, tn = confusion(truth, prediction)
  height, width = np.shape(truth)[:2]
  return ImageScore(image_id, int(height), int(width), tp, fp, fn, tn)


def summarize(scores: Sequence[ImageScore]) -> dict:
  """Macro averages (the challenge's figures) plus pooled-pixel metrics, for summary.json.

  'overall' is the macro-averaged threshold Jaccard, the challenge's ranking number, under the
  same key the official scorer's JSON uses; 'pooled' sums the counts over images first, which
  weights large lesions more, for comparison with the training loop's own metrics.
  """
  if not scores:
    raise ValueError('Nothing to summarize: no image was scored.')
  per_image = [s.metrics() for s in scores]
  macro = {m: float(np.mean([row[m] for row in per_image])) for m in METRICS}
  totals = {c: sum(getattr(s, c) for s in scores) for c in COUNTS}
  return {
    'overall': macro['threshold_jaccard'],
    'macro_average': macro,
    'pooled': metrics_from_counts(*(totals[c] for c in COUNTS)),
    'num_images': len(scores),
  }


# ---------------------------------------------------------------------------------------------
# Mask files.


def image_id(filename: str) -> str:
  """The id a file scores under: 'ISIC_<7 digits>' when present (as the official scorer matches),
  else the file's stem without a trailing '_segmentation'."""
  match = _ISIC_ID.search(os.path.basename(filename))
  if match:
    return match.group(0)
  stem = os.path.splitext(os.path.basename(filename))[0]
  return stem[: -len(_MASK_SUFFIX)] if stem.endswith(_MASK_SUFFIX) else stem


def read_mask(path: str) -> np.ndarray:
  """An 8-bit single-channel mask as uint8 [H, W], read the way the official scorer reads it.

  Like the official scorer, rejects colour images rather than guessing which channel is the mask:
  a submission in that form would not be scored by the challenge either.
  """
  from PIL import Image  # Lazy: only scoring reads masks with Pillow.

  with Image.open(path) as image:
    image.load()
    if image.mode == '1':
      image = image.convert('L')
    if image.mode != 'L':
      raise ValueError(f'Mask {path!r} has mode {image.mode!r}; expected a single-channel '
                       '8-bit image (mode L), as the ISIC scorer requires.')
    mask = np.asarray(image).copy()
  if np.any((mask != 0) & (mask != 255)):
    from absl import logging

    logging.warning('Mask %s has values other than 0 and 255; binarized at > %d, as the ISIC '
                    'scorer does.', path, BINARIZE_ABOVE)
  return mask


def list_masks(directory: str) -> dict[str, str]:
  """{id: path} of the mask PNGs in a folder; other files (LICENSE.txt, ...) are ignored."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'{directory!r} is not a directory{cli.home_hint(directory)}.')
  found: dict[str, str] = {}
  for name in sorted(os.listdir(directory)):
    if name.startswith('.') or not name.lower().endswith(_MASK_EXTS):
      continue
    ident = image_id(name)
    if ident in found:
      raise ValueError(f'Two masks in {directory!r} score as {ident!r}: '
                       f'{os.path.basename(found[ident])!r} and {name!r}.')
    found[ident] = os.path.join(directory, name)
  return found


def subfolder_holding(folder: str, holds) -> str | None:
  """The first subfolder of `folder` (sorted, not hidden) for which `holds(path)` is true, else
  None: where the files are when a folder above the ISIC archive's folder was given for it."""
  for name in sorted(os.listdir(folder)):
    inside = os.path.join(folder, name)
    if not name.startswith('.') and os.path.isdir(inside) and holds(inside):
      return inside
  return None


def list_truth_masks(directory: str) -> dict[str, str]:
  """`list_masks` of a truth folder, which must hold some: a folder without any (the parent of
  the ISIC archive's mask folder, say) is an error that names the subfolder holding them."""
  truth = list_masks(directory)
  if not truth:
    inside = subfolder_holding(directory, list_masks)
    hint = (f'; its subfolder {os.path.basename(inside)!r} holds {len(list_masks(inside))}: '
            f'give {inside!r}') if inside else ''
    raise FileNotFoundError(f'No mask PNGs in the truth folder {directory!r}{hint}.')
  return truth


def score_folders(predictions_dir: str, truth_dir: str) -> list[ImageScore]:
  """Scores every truth mask against the prediction with the same id (sorted by id).

  The two folders must hold the same ids: a truth mask without a prediction (the challenge
  fails such a submission) or a prediction without a truth mask (the wrong folder?) is an error
  that names them.
  """
  truth = list_truth_masks(truth_dir)
  predictions = list_masks(predictions_dir)
  missing = sorted(set(truth) - set(predictions))
  if missing:
    raise FileNotFoundError(
      f'{len(missing)} of {len(truth)} truth masks have no prediction in {predictions_dir!r}: '
      f'{_some(missing)}.')
  extra = sorted(set(predictions) - set(truth))
  if extra:
    raise ValueError(
      f'{len(extra)} prediction(s) in {predictions_dir!r} have no truth mask in {truth_dir!r}: '
      f'{_some(extra)}. Score against the truth folder of the same images, or remove them.')
  return [_score_files(ident, truth[ident], predictions[ident]) for ident in sorted(truth)]


def _some(ids: Sequence[str]) -> str:
  return ', '.join(ids[:10]) + (' ...' if len(ids) > 10 else '')


def _score_files(ident: str, truth_path: str, prediction_path: str) -> ImageScore:
  truth = read_mask(truth_path)
  prediction = read_mask(prediction_path)
  if prediction.shape != truth.shape:
    raise ValueError(f'Prediction {prediction_path!r} is {prediction.shape[1]}x'
                     f'{prediction.shape[0]} (WxH) but its truth mask is {truth.shape[1]}x'
                     f'{truth.shape[0]}: predictions must be at the image\'s native size.')
  return score_image(ident, binarize(truth), binarize(prediction))

