"""Segmentation metrics from confusion counts.

Counts (true/false positives/negatives, loss sums, image counts) are summed over batches, devices
and processes, and turned into ratios once, at the end: an average of per-batch ratios would
weight a half-empty last batch like a full one. Works on numpy and jax arrays alike.

Pixel counts are integers: int32 on the device (one batch of one step, far below 2^31 pixels),
Python ints once summed on the host. float32 sums would round past 2^24 (16.7M) pixels, which
one validation pass of a few hundred 256 x 256 images exceeds.

JAX is imported by the two functions that need it, not at import: the run summaries and
per-image CSVs that `python -m unet_jax.sweep status` and `unet_jax.compare` read come through
`unet_jax.results` and `native_scoring` to `metrics_from_counts` here, and importing JAX made
each of those commands take a second more to start.
"""

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
  import jax

COUNT_KEYS = ('tp', 'fp', 'fn', 'tn', 'loss_sum', 'num_images')


def confusion_counts(logits: 'jax.Array', masks: 'jax.Array',
                     valid: 'jax.Array') -> dict[str, 'jax.Array']:
  """Pixel counts over the images with valid == 1, the prediction thresholded at p >= 0.5.

  Args:
    logits: [N, H, W, 1]; p >= 0.5 exactly when logit >= 0.
    masks: [N, H, W, 1] in {0, 1}.
    valid: [N], 1 for real images and 0 for the padding of a last batch.
  """
  import jax.numpy as jnp

  pred = logits >= 0
  truth = masks > 0
  weight = (valid > 0).reshape(-1, 1, 1, 1)

  def count(x):
    return jnp.sum(x & weight, dtype=jnp.int32)

  return {
      'tp': count(pred & truth),
      'fp': count(pred & ~truth),
      'fn': count(~pred & truth),
      'tn': count(~pred & ~truth),
  }


def _ratio(numerator, denominator):
  # An empty denominator (e.g. no positive pixel anywhere) scores 1: nothing to find, none missed.
  return float(numerator / denominator) if denominator > 0 else 1.0


def metrics_from_counts(counts: dict) -> dict[str, float]:
  """Loss, Dice, Jaccard, pixel accuracy, sensitivity and specificity of summed counts."""
  tp, fp, fn, tn = (float(counts[k]) for k in ('tp', 'fp', 'fn', 'tn'))
  result = {
      'dice': _ratio(2 * tp, 2 * tp + fp + fn),
      'jaccard': _ratio(tp, tp + fp + fn),
      'accuracy': _ratio(tp + tn, tp + fp + fn + tn),
      'sensitivity': _ratio(tp, tp + fn),
      'specificity': _ratio(tn, tn + fp),
  }
  if 'loss_sum' in counts and float(counts['num_images']) > 0:
    result['loss'] = float(counts['loss_sum']) / float(counts['num_images'])
  return result


# The ratios `metrics_from_counts` makes of any counts (what `config.eval.best_metric` may name
# for the pooled validation pass, as 'pooled_<name>'), read off it rather than listed again.
RATIOS = tuple(metrics_from_counts({'tp': 0, 'fp': 0, 'fn': 0, 'tn': 0}))


def add_counts(total: dict | None, counts: dict) -> dict:
  """Running sum of two count dicts on the host: exact Python ints for integer counts (the pixel
  counts), floats for the rest (loss sums)."""
  import jax

  counts = {k: (int(v) if np.issubdtype(np.asarray(v).dtype, np.integer) else float(v))
            for k, v in jax.device_get(counts).items()}
  if total is None:
    return counts
  return {k: total[k] + counts[k] for k in total}
