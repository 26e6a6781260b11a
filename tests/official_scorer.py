"""The official ISIC scorer (`isic-challenge-scoring`) as a reference for tests."""

from isic_challenge_scoring import metrics as official_metrics
from isic_challenge_scoring.confusion import create_binary_confusion_matrix
from isic_challenge_scoring.load_image import iter_image_pairs


def per_image(truth_dir, pred_dir) -> dict[str, dict[str, float]]:
  """Per-image metrics computed by the official package's own functions."""
  out = {}
  for pair in iter_image_pairs(truth_dir, pred_dir):
    cm = create_binary_confusion_matrix(pair.truth_image > 128, pair.prediction_image > 128)
    out[pair.image_id] = {
      'accuracy': official_metrics.binary_accuracy(cm),
      'sensitivity': official_metrics.binary_sensitivity(cm),
      'specificity': official_metrics.binary_specificity(cm),
      'jaccard': official_metrics.binary_jaccard(cm),
      'threshold_jaccard': official_metrics.binary_threshold_jaccard(cm, threshold=0.65),
      'dice': official_metrics.binary_dice(cm),
    }
  return out
