"""Our native-resolution metrics against the official ISIC scorer, `isic-challenge-scoring`.

The same folders go through both: per-image values must agree exactly (both compute float64
ratios of integer counts) and the macro averages to 1e-6 as the challenge reports them. The cases
include every degenerate one the official code special-cases, so a change in either side's
conventions (empty masks, the 0.65 threshold, the > 128 binarization) fails here.
"""

import pathlib

import numpy as np
import official_scorer  # tests/official_scorer.py
import pytest
from isic_challenge_scoring.segmentation import SegmentationScore
from PIL import Image

from unet_jax import native_scoring, results

# The official package's pandas code warns under pandas 3; not ours to fix.
pytestmark = pytest.mark.filterwarnings('ignore:The inplace keyword in Series.rename')

H, W = 23, 31


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """id -> (truth uint8, prediction uint8): ordinary and degenerate pairs."""
  rng = np.random.default_rng(0)
  empty = np.zeros((H, W), np.uint8)
  full = np.full((H, W), 255, np.uint8)
  box = empty.copy()
  box[5:15, 8:20] = 255
  cases = {
    'empty_empty': (empty, empty),  # Jaccard/Dice/sensitivity 1 by convention.
    'empty_truth_false_alarm': (empty, box),  # Sensitivity 1, Jaccard 0.
    'missed_lesion': (box, empty),  # Jaccard 0, specificity 1.
    'full_full': (full, full),  # Specificity 1 by convention.
    'full_truth_partial': (full, box),
    'perfect': (box, box),
  }
  # Just above and just below the 0.65 threshold: Jaccard = 66/100 and 64/100.
  for name, kept in (('above_threshold', 66), ('below_threshold', 64)):
    truth = empty.copy()
    truth.flat[:100] = 255
    pred = empty.copy()
    pred.flat[:kept] = 255
    cases[name] = (truth, pred)
  # Non-binary values: the scorer calls > 128 lesion (128 is not, 129 is).
  grey = rng.integers(0, 256, (H, W)).astype(np.uint8)
  grey.flat[:2] = (128, 129)
  cases['grey_levels'] = (box, grey)
  for k in range(5):
    truth = (rng.random((H, W)) < rng.uniform(0.1, 0.6)).astype(np.uint8) * 255
    pred = truth.copy()
    flip = rng.random((H, W)) < rng.uniform(0.05, 0.4)
    pred[flip] = 255 - pred[flip]
    cases[f'random_{k}'] = (truth, pred)
  # Official ids: 'ISIC_' + 7 digits, which both scorers pair files by.
  return {f'ISIC_{i:07d}': (t, p) for i, (t, p) in enumerate(cases.values())}


@pytest.fixture(scope='module')
def folders(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path, dict]:
  root = tmp_path_factory.mktemp('scoring')
  truth_dir, pred_dir = root / 'truth', root / 'pred'
  truth_dir.mkdir()
  pred_dir.mkdir()
  cases = _cases()
  for ident, (truth, pred) in cases.items():
    Image.fromarray(truth, 'L').save(truth_dir / f'{ident}_segmentation.png')
    Image.fromarray(pred, 'L').save(pred_dir / f'{ident}_segmentation.png')
  (truth_dir / 'LICENSE.txt').write_text('not a mask')  # Official archives ship these.
  return truth_dir, pred_dir, cases


def test_per_image_metrics_equal_the_official_scorer(folders):
  truth_dir, pred_dir, cases = folders
  ours = {s.image_id: s.metrics() for s in native_scoring.score_folders(str(pred_dir),
                                                                       str(truth_dir))}
  official = official_scorer.per_image(truth_dir, pred_dir)
  assert sorted(ours) == sorted(official) == sorted(cases)
  for ident in ours:
    for metric in native_scoring.METRICS:
      assert ours[ident][metric] == pytest.approx(official[ident][metric], abs=1e-12), (
        ident, metric)


def test_macro_averages_equal_the_official_scorer(folders, tmp_path):
  truth_dir, pred_dir, _ = folders
  official = SegmentationScore.from_dir(truth_dir, pred_dir)
  scores = native_scoring.score_folders(str(pred_dir), str(truth_dir))
  summary = results.write_evaluation(scores, str(tmp_path), {})
  for metric in native_scoring.METRICS:
    assert summary['macro_average'][metric] == pytest.approx(
      float(official.macro_average[metric]), abs=1e-6), metric
  assert summary['overall'] == pytest.approx(float(official.overall), abs=1e-6)


def test_degenerate_cases_by_hand():
  m = native_scoring.metrics_from_counts
  assert m(0, 0, 0, 10) == {'accuracy': 1.0, 'sensitivity': 1.0, 'specificity': 1.0,
                            'jaccard': 1.0, 'threshold_jaccard': 1.0, 'dice': 1.0}
  false_alarm = m(0, 4, 0, 6)
  assert (false_alarm['sensitivity'], false_alarm['jaccard'], false_alarm['dice']) == (1.0, 0, 0)
  assert m(10, 0, 0, 0)['specificity'] == 1.0
  assert m(65, 0, 35, 0)['threshold_jaccard'] == 0.65  # At the threshold: kept.
  assert m(64, 0, 36, 0)['threshold_jaccard'] == 0.0


def test_csv_round_trips_and_reproduces_the_summary(folders, tmp_path):
  truth_dir, pred_dir, cases = folders
  scores = native_scoring.score_folders(str(pred_dir), str(truth_dir))
  summary = results.write_evaluation(scores, str(tmp_path), {'note': 'x'})
  header = (tmp_path / 'per_image.csv').read_text().splitlines()[0]
  assert header.split(',') == list(results.CSV_COLUMNS)
  again = results.read_per_image_csv(str(tmp_path / 'per_image.csv'))
  assert again == scores
  assert [s.image_id for s in again] == sorted(cases)
  assert native_scoring.summarize(again)['macro_average'] == summary['macro_average']
  assert summary['num_images'] == len(cases) and summary['source'] == {'note': 'x'}
  assert summary['kind'] == 'evaluation' and summary['per_image_csv'] == 'per_image.csv'
  assert results.read_json(str(tmp_path / 'summary.json')) == summary
  assert sorted(p.name for p in tmp_path.iterdir()) == ['per_image.csv', 'summary.json']


def test_missing_prediction_is_named(folders, tmp_path):
  truth_dir, pred_dir, _ = folders
  partial = tmp_path / 'partial'
  partial.mkdir()
  for path in sorted(pred_dir.iterdir())[1:]:
    (partial / path.name).write_bytes(path.read_bytes())
  with pytest.raises(FileNotFoundError, match='ISIC_0000000'):
    native_scoring.score_folders(str(partial), str(truth_dir))


def test_wrong_size_and_colour_predictions_are_rejected(tmp_path):
  truth_dir, pred_dir = tmp_path / 't', tmp_path / 'p'
  truth_dir.mkdir()
  pred_dir.mkdir()
  Image.fromarray(np.zeros((8, 9), np.uint8), 'L').save(truth_dir / 'ISIC_0000001_segmentation.png')
  Image.fromarray(np.zeros((9, 8), np.uint8), 'L').save(pred_dir / 'ISIC_0000001_segmentation.png')
  with pytest.raises(ValueError, match='native size'):
    native_scoring.score_folders(str(pred_dir), str(truth_dir))
  Image.fromarray(np.zeros((8, 9, 3), np.uint8), 'RGB').save(
    pred_dir / 'ISIC_0000001_segmentation.png')
  with pytest.raises(ValueError, match='mode'):
    native_scoring.score_folders(str(pred_dir), str(truth_dir))


def test_image_id():
  assert native_scoring.image_id('/a/ISIC_0012345_segmentation.png') == 'ISIC_0012345'
  assert native_scoring.image_id('ISIC_0012345.jpg') == 'ISIC_0012345'
  assert native_scoring.image_id('lesion7_segmentation.png') == 'lesion7'
  assert native_scoring.image_id('lesion7.jpg') == 'lesion7'
