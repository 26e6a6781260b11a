"""Losses and metrics against straightforward numpy implementations."""

import jax.numpy as jnp
import numpy as np
import pytest

from unet_jax import losses, metrics


def _data(seed=0, n=3, size=8):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 3, (n, size, size, 1)).astype(np.float32)
  masks = (rng.random((n, size, size, 1)) > 0.6).astype(np.float32)
  return logits, masks


def _np_bce(logits, masks):
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  bce = -(masks * np.log(p) + (1 - masks) * np.log(1 - p))
  return bce.reshape(len(bce), -1).mean(1)


def _np_dice_loss(logits, masks):
  p = (1 / (1 + np.exp(-logits.astype(np.float64)))).reshape(len(logits), -1)
  m = masks.reshape(len(masks), -1)
  return 1 - (2 * (p * m).sum(1) + 1) / (p.sum(1) + m.sum(1) + 1)


@pytest.mark.parametrize('name,reference', [
    ('bce', _np_bce),
    ('dice', _np_dice_loss),
    ('bce_dice', lambda lg, m: _np_bce(lg, m) + _np_dice_loss(lg, m)),
])
def test_losses_match_numpy(name, reference):
  logits, masks = _data()
  np.testing.assert_allclose(losses.loss_per_image(name, jnp.asarray(logits), jnp.asarray(masks)),
                             reference(logits, masks), rtol=1e-5, atol=1e-6)


def test_bce_is_stable_for_large_logits():
  logits = jnp.array([[[[80.0], [-80.0]]]])
  masks = jnp.array([[[[1.0], [0.0]]]])
  assert float(losses.loss_per_image('bce', logits, masks)[0]) == pytest.approx(0.0, abs=1e-6)


def test_dice_loss_of_perfect_and_empty_predictions():
  masks = np.zeros((2, 4, 4, 1), np.float32)
  masks[0, :2] = 1  # 8 lesion pixels; the second mask is empty.
  perfect = np.where(masks > 0, 50.0, -50.0).astype(np.float32)
  np.testing.assert_allclose(losses.loss_per_image('dice', perfect, masks), [0, 0], atol=1e-6)
  # Predicting nothing: 1 - (0 + 1) / (0 + 8 + 1) on the lesion, 1 - 1/1 = 0 on the empty mask.
  empty = np.full(masks.shape, -50.0, np.float32)
  np.testing.assert_allclose(losses.loss_per_image('dice', empty, masks), [8 / 9, 0], atol=1e-6)
  # Predicting everything on the empty mask: 1 - 1 / (16 + 1).
  full = np.full(masks.shape, 50.0, np.float32)
  np.testing.assert_allclose(losses.loss_per_image('dice', full, masks)[1], 16 / 17, atol=1e-6)


def test_unknown_loss_names_the_field():
  with pytest.raises(ValueError, match='config.loss'):
    losses.loss_per_image('focal', jnp.zeros((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1)))


def _np_metrics(logits, masks, valid):
  keep = valid > 0
  pred = logits[keep] >= 0
  true = masks[keep] > 0
  tp, fp = np.sum(pred & true), np.sum(pred & ~true)
  fn, tn = np.sum(~pred & true), np.sum(~pred & ~true)
  return {'dice': 2 * tp / (2 * tp + fp + fn), 'jaccard': tp / (tp + fp + fn),
          'accuracy': (tp + tn) / pred.size, 'sensitivity': tp / (tp + fn),
          'specificity': tn / (tn + fp)}


def test_metrics_from_counts_summed_over_batches_match_numpy_on_the_whole_set():
  logits, masks = _data(seed=1, n=7)
  valid = np.array([1, 1, 1, 1, 1, 0, 0], np.float32)  # The last two are padding.
  total = None
  for start in range(0, 7, 3):  # Batches of 3, 3 and 1 image(s).
    sl = slice(start, start + 3)
    total = metrics.add_counts(total, metrics.confusion_counts(logits[sl], masks[sl], valid[sl]))
  got = metrics.metrics_from_counts(total)
  expected = _np_metrics(logits, masks, valid)
  for key, value in expected.items():
    assert got[key] == pytest.approx(value, rel=1e-9), key
  assert total['tp'] + total['fp'] + total['fn'] + total['tn'] == 5 * 8 * 8


def test_counts_are_exact_integers_past_float32s_range():
  """17.6 million pixels in one batch: float32 sums stop counting single pixels past 2^24."""
  n, side = 5, 2100
  rng = np.random.default_rng(3)
  masks = rng.random((n, side, side, 1)) > 0.5
  logits = np.where(rng.random((n, side, side, 1)) > 0.3, 1.0, -1.0).astype(np.float32)
  valid = np.array([1, 1, 1, 1, 0], np.float32)
  counts = metrics.add_counts(None, metrics.confusion_counts(logits, masks, valid))
  keep = np.arange(n) < 4
  pred, true = logits[keep] >= 0, masks[keep]
  assert counts['tp'] == int(np.count_nonzero(pred & true))
  assert counts['fp'] == int(np.count_nonzero(pred & ~true))
  assert counts['fn'] == int(np.count_nonzero(~pred & true))
  assert counts['tn'] == int(np.count_nonzero(~pred & ~true))
  assert counts['tp'] + counts['fp'] + counts['fn'] + counts['tn'] == 4 * side * side > 2**24


def test_empty_denominators_score_one():
  zeros = np.zeros((1, 2, 2, 1), np.float32)
  counts = metrics.add_counts(None, metrics.confusion_counts(zeros - 1, zeros, np.ones(1)))
  result = metrics.metrics_from_counts(counts)
  assert result['dice'] == result['jaccard'] == result['sensitivity'] == 1.0
  assert result['accuracy'] == result['specificity'] == 1.0
