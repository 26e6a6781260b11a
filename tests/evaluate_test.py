"""Native-resolution evaluation of a trained run, end to end at tiny size.

A real (1-step) run on a folder of mixed-size images: evaluate must score every validation image
at its own size, its CSV must reproduce its summary, and scoring the masks `unet_jax.predict`
writes for the same run -- with our scorer and with the official `isic-challenge-scoring` --
must give the same figures, since evaluation and prediction share one path.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import official_scorer  # tests/official_scorer.py
import pytest
from isic_challenge_scoring.segmentation import SegmentationScore
from PIL import Image

from configs import quickstart
from unet_jax import (
  evaluate,
  figures,
  inference,
  input_pipeline,
  models,
  native_scoring,
  predict,
  resize_policy,
  results,
  run_config,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.filterwarnings('ignore:The inplace keyword in Series.rename')




@pytest.fixture(scope='module')
def run(tiny_folder_run):
  workdir, data_dir = tiny_folder_run
  return workdir, data_dir, inference.load_predictor(workdir, checkpoint='final')


def test_evaluate_run_scores_each_val_image_at_native_size(run):
  workdir, data_dir, _ = run
  summary = evaluate.evaluate_run(workdir)  # Restores the checkpoint itself.
  out = os.path.join(workdir, 'eval_val')
  with open(os.path.join(out, 'summary.json')) as f:
    assert json.load(f) == summary
  scores = results.read_per_image_csv(os.path.join(out, 'per_image.csv'))
  assert len(scores) == summary['num_images'] == 4  # One fold of 12.
  for s in scores:
    truth = native_scoring.read_mask(os.path.join(
      data_dir, 'ISIC2018_Task1_Training_GroundTruth', f'{s.image_id}_segmentation.png'))
    assert (s.height, s.width) == truth.shape
    assert s.tp + s.fn == np.count_nonzero(truth > 128)  # Scored against the native mask.
  assert native_scoring.summarize(scores)['macro_average'] == summary['macro_average']
  assert summary['source']['step'] == 1 and summary['source']['resize_policy'] == 'crop'
  assert summary['kind'] == 'evaluation' and not summary['source']['selected_on_this_split']
  # Where it was computed, as a run records it: a number in a table names its machine.
  assert summary['versions']['jax'] == jax.__version__
  assert (summary['devices']['count'], summary['devices']['backend']) == (8, 'cpu')
  assert summary['host'] == results.read_run_summary(workdir)['host']
  # Trained with config.data.dir='data' from its folder, scored from this one (conftest).
  assert run_config.load(workdir).data.dir == data_dir != os.path.abspath('data')
  cloud = run_config.load(workdir)
  cloud.data.dir = 'gs://bucket/isic'  # tf.io.gfile reads it: a URL, not a relative path.
  assert run_config.with_absolute_data_paths(cloud).data.dir == 'gs://bucket/isic'


def test_predict_then_score_equals_evaluate_the_validation_and_the_official_scorer(run, tmp_path):
  """The official scorer on predict's masks, evaluate, and the training loop's own validation
  (every tile of the 'crop' policy, at native resolution) agree image by image."""
  workdir, _, predictor = run
  config = predictor.config
  _, image_paths, mask_paths = input_pipeline.folder_split(config.data, 'val')
  truth_dir = tmp_path / 'truth'
  truth_dir.mkdir()
  for path in mask_paths:
    os.symlink(path, truth_dir / os.path.basename(path))
  pred_dir = str(tmp_path / 'pred')
  assert predict.predict_files(predictor, image_paths, pred_dir, show_progress=False) == []

  ours = evaluate.evaluate_run(workdir, output_dir=str(tmp_path / 'eval'), predictor=predictor)
  folder = evaluate.evaluate_folders(pred_dir, str(truth_dir), str(tmp_path / 'folder_eval'))
  official = SegmentationScore.from_dir(truth_dir, tmp_path / 'pred')
  for metric in native_scoring.METRICS:
    assert folder['macro_average'][metric] == ours['macro_average'][metric]
    assert ours['macro_average'][metric] == pytest.approx(
      float(official.macro_average[metric]), abs=1e-6)
  in_loop = results.read_per_image_csv(os.path.join(workdir, 'validation', 'step_1.csv'))
  assert in_loop == results.read_per_image_csv(str(tmp_path / 'eval' / 'per_image.csv'))
  per_image = {s.image_id: s.metrics() for s in in_loop}
  reference = official_scorer.per_image(truth_dir, tmp_path / 'pred')
  assert sorted(per_image) == sorted(reference) and len(reference) == 4
  for ident, values in reference.items():
    for metric in native_scoring.METRICS:
      assert per_image[ident][metric] == pytest.approx(values[metric], abs=1e-12)


def test_evaluate_on_a_folder_of_photos_scores_them_as_the_run_scores_its_split(run, tmp_path):
  """`evaluate --images DIR --truth DIR`: the run's validation photos copied to a folder, as
  ISIC 2017 lays one out (a superpixel map beside each photo, scored under the photo's id), give
  the split's per-image scores; the same photo also as a PNG is refused before any model loads,
  as is a photo folder that is not there."""
  workdir, _, predictor = run
  _, image_paths, mask_paths = input_pipeline.folder_split(predictor.config.data, 'val')
  images_dir, truth_dir = tmp_path / 'images', tmp_path / 'truth'
  images_dir.mkdir()
  truth_dir.mkdir()
  for image, mask in zip(image_paths, mask_paths, strict=True):
    shutil.copy(image, images_dir)
    shutil.copy(mask, truth_dir)
    ident = native_scoring.image_id(image)
    noise = np.random.default_rng(0).integers(0, 256, (5, 7, 3), np.uint8)
    Image.fromarray(noise).save(images_dir / f'{ident}_superpixels.png')
  split = evaluate.evaluate_run(workdir, output_dir=str(tmp_path / 'split'), predictor=predictor)
  folder = evaluate.evaluate_run(workdir, images_dir=str(images_dir), truth_dir=str(truth_dir),
                                 output_dir=str(tmp_path / 'folder'), predictor=predictor)
  assert folder['num_images'] == 4 and folder['source']['split'] == 'folder'
  assert folder['macro_average'] == split['macro_average']
  assert folder['source']['images_in_training_split'] == 0
  assert (folder['source']['images'], folder['source']['truth']) == (str(images_dir),
                                                                     str(truth_dir))
  # Named by its truth folder: scoring the validation folder, then the test one, keeps both.
  assert evaluate.default_output('w', 'folder', 'best', str(truth_dir) + '/') == os.path.join(
      'w', 'eval_folder_truth_best')
  # A photo the run trained on is counted (the CLI prints a note: optimistic), by id.
  _, train_images, train_masks = input_pipeline.folder_split(predictor.config.data, 'train')
  shutil.copy(train_images[0], images_dir)
  shutil.copy(train_masks[0], truth_dir)
  mixed = evaluate.evaluate_run(workdir, images_dir=str(images_dir), truth_dir=str(truth_dir),
                                output_dir=str(tmp_path / 'mixed'), predictor=predictor)
  assert mixed['num_images'] == 5 and mixed['source']['images_in_training_split'] == 1
  moved = predictor.config.copy_and_resolve_references()
  moved.data.dir = str(tmp_path / 'moved')  # The run's data is not here: unknown, not an error.
  assert evaluate._images_in_splits(moved, ['x'], 'folder') == {'train': None, 'val': None}
  os.remove(images_dir / os.path.basename(train_images[0]))
  os.remove(truth_dir / os.path.basename(train_masks[0]))
  assert (results.read_per_image_csv(str(tmp_path / 'folder' / 'per_image.csv'))
          == results.read_per_image_csv(str(tmp_path / 'split' / 'per_image.csv')))

  ident = native_scoring.image_id(image_paths[0])
  shutil.copy(image_paths[0], images_dir / f'{ident}.png')
  no_such_run = str(tmp_path / 'no_run')  # Refused before it is looked for.
  with pytest.raises(ValueError, match=rf"'{ident}.jpg' and '{ident}.png' in .* are both "
                     rf"images of '{ident}'; keep one"):
    evaluate.evaluate_run(no_such_run, images_dir=str(images_dir), truth_dir=str(truth_dir))
  with pytest.raises(FileNotFoundError, match=r"--images '.*photos' is not a directory"):
    evaluate.evaluate_run(no_such_run, images_dir=str(tmp_path / 'photos'),
                          truth_dir=str(truth_dir))


def _predictor(policy: str, tta: str = 'none') -> inference.Predictor:
  """A randomly initialized model (BatchNorm-free, so outputs vary) with a given resize policy."""
  config = quickstart.get_config()
  config.unlock()
  config.data.resize_policy = policy
  config.data.image_size = 16
  config.model.depth = 1
  config.model.base_width = 4
  config.model.norm = 'none'
  model = models.create_model(config.model)
  variables = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32), train=False)
  return inference.Predictor(config, dict(variables), batch_size=3, tta=tta)


@pytest.mark.parametrize('policy', resize_policy.POLICIES)
def test_predictor_maps_back_to_native_size_under_each_policy(policy):
  predictor = _predictor(policy)
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for h, w in [(20, 41), (33, 17)]]
  out = list(predictor.predict_images((k, image, None) for k, image in enumerate(images)))
  assert [k for k, _ in out] == [0, 1]
  for (_, probs), image in zip(out, images, strict=True):
    assert probs.shape == image.shape[:2] and probs.dtype == np.float32
    assert 0 <= probs.min() <= probs.max() <= 1
  # Batching across images changes nothing: one image at a time gives the same maps.
  np.testing.assert_allclose(predictor.predict(images[1]), out[1][1], atol=1e-6)


@pytest.mark.parametrize('tta', ['flips', 'dihedral'])
def test_tta_averages_the_predictions_of_each_view_mapped_back(tta):
  """Against numpy: each view of the image (flips, rotations) predicted, turned back, averaged."""
  plain, augmented = _predictor('stretch'), _predictor('stretch', tta=tta)
  image = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
  views = {'flips': [(0, False), (0, True), (2, True), (2, False)],
           'dihedral': [(k, f) for k in range(4) for f in (False, True)]}[tta]

  def view(x, k, flip):
    return np.rot90(np.fliplr(x) if flip else x, k).copy()

  def unview(p, k, flip):
    p = np.rot90(p, -k)
    return np.fliplr(p) if flip else p

  expected = np.mean([unview(plain.predict(view(image, k, f)), k, f) for k, f in views], axis=0)
  np.testing.assert_allclose(augmented.predict(image), expected, atol=1e-6)
  assert not np.allclose(plain.predict(image), expected, atol=1e-4)  # TTA did something.


def test_post_processing_keeps_the_largest_region_and_fills_its_holes():
  probs = np.zeros((12, 12), np.float32)
  probs[1:8, 1:8] = 0.9  # The big region, with a hole.
  probs[4, 4] = 0.1
  probs[10:12, 10:12] = 0.8  # A small separate region.
  plain = inference.Settings().mask(probs)
  assert plain.sum() == 49 - 1 + 4
  big = inference.Settings(largest_component=True).mask(probs)
  assert big.sum() == 48 and not big[10:, 10:].any()
  both = inference.Settings(largest_component=True, fill_holes=True).mask(probs)
  expected = np.zeros((12, 12), bool)
  expected[1:8, 1:8] = True
  np.testing.assert_array_equal(both, expected)
  assert inference.Settings(threshold=0.85).mask(probs).sum() == 48


def test_a_tuned_threshold_is_recorded_and_used_by_evaluate_and_predict(run, tmp_path):
  workdir, _, _ = run
  tuned_dir = tmp_path / 'run'
  shutil.copytree(workdir, tuned_dir)
  record = evaluate.tune_threshold(str(tuned_dir))
  assert record['threshold'] in evaluate.THRESHOLDS and record['tuned_on'] == 'val'
  values = record['macro_threshold_jaccard']
  assert values[str(record['threshold'])] == max(values.values())
  summary = evaluate.evaluate_run(str(tuned_dir), output_dir=str(tmp_path / 'e'))
  assert summary['source']['threshold'] == record['threshold']
  assert summary['source']['threshold_tuned_on_this_split']
  assert summary['overall'] == values[str(record['threshold'])]
  config = inference.run_config.load(str(tuned_dir))
  assert inference.settings(config, str(tuned_dir)).threshold == record['threshold']
  assert inference.settings(config, str(tuned_dir), threshold=0.5).threshold == 0.5
  # A pick at the end of the thresholds tried says the best may lie beyond them.
  for threshold, edge in ((0.8, 'the highest'), (0.2, 'the lowest'), (0.5, None)):
    text = evaluate.tuned_text({**record, 'threshold': threshold, 'macro_threshold_jaccard': {
        str(threshold): 0.5}}, 'f')
    assert text.startswith(f"Tuned threshold {threshold} on 'val' (macro threshold Jaccard "
                           '0.5000); recorded in f.')
    assert (f'It is {edge} of those tried (0.2 to 0.8)' in text) if edge else text.endswith('f.')


def test_cli_scores_a_prediction_folder_and_explains_both_modes(tmp_path):
  truth, pred = tmp_path / 't', tmp_path / 'p'
  truth.mkdir()
  pred.mkdir()
  mask = np.zeros((6, 7), np.uint8)
  mask[1:4, 2:6] = 255
  for folder in (truth, pred):
    with open(folder / 'ISIC_0000001_segmentation.png', 'wb') as f:
      f.write(predict.encode_png(mask))
  env = {**os.environ, 'PYTHONPATH': REPO}
  done = subprocess.run(  # Python's own log of every module the command imported.
    [sys.executable, '-X', 'importtime', '-m', 'unet_jax.evaluate', f'--predictions={pred}',
     f'--truth={truth}'], capture_output=True, text=True, cwd=REPO, env=env, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(str(pred) + '_eval/summary.json') as f:
    assert json.load(f)['overall'] == 1.0
  assert 'threshold_jaccard' in done.stdout
  # Scoring masks needs neither TensorFlow nor the model (5 s of start-up when it imported them).
  imported = {line.rsplit('|', 1)[1].strip() for line in done.stderr.splitlines()
              if line.startswith('import time:')}
  assert 'unet_jax.native_scoring' in imported
  assert not {'tensorflow', 'flax', 'unet_jax.inference'} & imported
  helped = subprocess.run([sys.executable, '-m', 'unet_jax.evaluate', '--helpfull'],
                          capture_output=True, text=True, cwd=REPO, env=env, check=False)
  assert '--predictions' in helped.stdout and '--workdir' in helped.stdout
  assert helped.returncode == 0, helped.stderr[-2000:]


def test_an_ensemble_averages_its_members_probabilities():
  a, b = _predictor('stretch'), _predictor('crop')
  b.variables = jax.tree.map(lambda x: x * 1.5, b.variables)  # Another model.
  ensemble = inference.Ensemble([a, b])
  image = np.random.default_rng(2).integers(0, 256, (20, 27, 3)).astype(np.uint8)
  expected = (a.predict(image) + b.predict(image)) / 2
  np.testing.assert_allclose(ensemble.predict(image), expected, atol=1e-6)
  assert not np.allclose(a.predict(image), b.predict(image), atol=1e-3)


def test_an_ensemble_is_not_evaluated_on_images_a_member_trained_on(run, tmp_path):
  workdir, _, predictor = run
  other_fold = predictor.config.copy_and_resolve_references()
  other_fold.data.fold = 1  # Its training split holds fold 0's validation images.
  ensemble = inference.Ensemble([predictor, inference.Predictor(
      other_fold, predictor.variables, predictor.batch_size, step=1, checkpoint='final')])
  with pytest.raises(ValueError, match=r'in the training split of ensemble member'):
    evaluate.evaluate_run([workdir, workdir], predictor=ensemble, output_dir=str(tmp_path))
  with pytest.raises(ValueError, match='needs --output'):
    evaluate.evaluate_run([workdir, workdir])
  # Two members of the same fold: its validation images are held out from both.
  same = inference.Ensemble([predictor, predictor])
  summary = evaluate.evaluate_run([workdir, workdir], predictor=same, output_dir=str(tmp_path))
  single = evaluate.evaluate_run(workdir, predictor=predictor, output_dir=str(tmp_path / 's'))
  assert summary['macro_average'] == single['macro_average']


@pytest.mark.parametrize('source', ['folder', 'synthetic'])
def test_images_asked_by_id_must_be_of_the_split(run, source):
  """A training image asked for as a validation one was drawn as if it were held out (synthetic)
  or failed with a KeyError in a reader thread (folder): it is refused, named, up front."""
  from unet_jax import evaluation, run_config

  config = run_config.load(run[0])
  if source == 'synthetic':
    config.data.source = 'synthetic'
    config.data.num_examples = 12
  train_ids = evaluation.split_ids(config, 'train')
  val_ids = evaluation.split_ids(config, 'val')
  assert train_ids and val_ids and not set(train_ids) & set(val_ids)
  got = [e.image_id for e in evaluation.iter_split(config, 'val', val_ids[::-1])]
  assert got == val_ids[::-1]  # In the order asked.
  with pytest.raises(ValueError, match=rf"1 id\(s\) are not images of the 'val' split of this "
                     rf"run: {train_ids[0]}; its images are {val_ids[0]}"):
    next(evaluation.iter_split(config, 'val', [val_ids[0], train_ids[0]]))


@pytest.mark.parametrize('source', ['folder', 'synthetic'])
def test_a_split_the_source_lacks_is_refused_not_taken_for_the_validation(run, source):
  """'test' (ISIC only) and a misspelt split were both read as the run's validation split, and
  `evaluate --split test` wrote eval_test/ with the validation images' scores."""
  from unet_jax import evaluation, run_config

  config = run_config.load(run[0])
  config.data.source = source
  config.data.num_examples = 12
  with pytest.raises(ValueError, match=r"split='test' needs config.data.source='isic'"):
    evaluation.split_ids(config, 'test')
  with pytest.raises(ValueError, match=r"split='tset' is not one of \('train', 'val', 'test'\)"):
    next(evaluation.iter_split(config, 'tset'))
  if source == 'synthetic':
    return  # The command once, on the trained folder run.
  done = subprocess.run([sys.executable, '-m', 'unet_jax.evaluate', '--workdir', run[0],
                         '--split', 'test'], cwd=REPO, capture_output=True, text=True,
                        timeout=300, check=False)
  assert done.returncode == 1 and "Error: split='test' needs" in done.stderr, done.stderr[-2000:]
  assert not os.path.exists(os.path.join(run[0], 'eval_test'))


def test_compare_keeps_runs_evaluated_otherwise_apart(tiny_folder_run, tmp_path, capsys):
  """`compare --evaluation`: a run evaluated with TTA is not another seed of one evaluated
  without (the folder's name says neither); a threshold tuned per run splits no group, and a
  group scored at several thresholds is named under the table."""
  from unet_jax import compare

  workdir, _ = tiny_folder_run
  plain = inference.load_predictor(workdir, checkpoint='final')
  flips = inference.load_predictor(workdir, checkpoint='final', tta='flips')
  root = tmp_path / 'sweep'
  for name, predictor, threshold in (('a', plain, None), ('b', plain, 0.4), ('c', flips, None)):
    (root / name).mkdir(parents=True)
    shutil.copy(os.path.join(workdir, results.RUN_SUMMARY), root / name)
    shutil.copytree(os.path.join(workdir, results.VALIDATION_DIR), root / name / 'validation')
    evaluate.evaluate_run(str(root / name), predictor=predictor, threshold=threshold,
                          output_dir=str(root / name / 'eval_val'))
  runs = [compare.load_run(str(root / n), 'final', ['dice'], 'eval_val') for n in 'abc']
  groups, fields = compare.group_runs(runs, None)
  assert fields == ['evaluation.tta']
  assert {k: [r.name for r in v] for k, v in groups.items()} == {'tta=none': ['a', 'b'],
                                                                 'tta=flips': ['c']}
  assert compare.main([str(root), '--evaluation', 'eval_val', '--bootstrap', '10']) == 0
  out = capsys.readouterr().out
  assert '| tta=none (baseline) | none | 2 |' in out and '| tta=flips | flips | 1 |' in out
  assert "The runs of 'tta=none' were thresholded at 0.4, 0.5" in out
  assert 'Optimistic' not in out
  # The best checkpoint, evaluated on the split it was selected on: said under the table.
  evaluate.evaluate_run(str(root / 'c'), predictor=inference.load_predictor(
      workdir, checkpoint='best', tta='flips'), output_dir=str(root / 'c' / 'eval_val'))
  assert compare.main([str(root), '--evaluation', 'eval_val', '--bootstrap', '10']) == 0
  out = capsys.readouterr().out
  assert "Optimistic: in 'checkpoint=best, selected_on_this_split=True, tta=flips', the best " \
      'checkpoint was selected on the images scored.' in out
  with pytest.raises(SystemExit):  # Which checkpoint is the evaluation's.
    compare.main([str(root), '--evaluation', 'eval_val', '--checkpoint', 'best'])
  assert '--checkpoint best with --evaluation eval_val' in capsys.readouterr().err
  # The figures of per-image values group them alike, with the evaluations' values.
  values = figures.per_image([str(root)], None, 'dice', evaluation='eval_val')
  assert list(values) == ['checkpoint=final, selected_on_this_split=False, tta=none',
                          'checkpoint=best, selected_on_this_split=True, tta=flips']
  best = results.read_per_image_csv(str(root / 'c' / 'eval_val' / 'per_image.csv'))
  assert values[list(values)[1]] == {s.image_id: s.metrics()['dice'] for s in best}
  assert figures.main(['profile', str(root), '--evaluation', 'eval_val',
                       '--out', str(tmp_path / 'profile.png')]) == 0
  with pytest.raises(SystemExit):
    figures.main(['profile', str(root), '--evaluation', 'eval_val', '--checkpoint', 'best',
                  '--out', str(tmp_path / 'other.png')])
  assert 'not with --checkpoint' in capsys.readouterr().err
  # Their training validation is one config's: one group.
  assert list(compare.group_runs([compare.load_run(str(root / n), 'final', ['dice'])
                                  for n in 'abc'], None)[0]) == ['all runs']
