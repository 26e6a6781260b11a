r"""Scores segmentations at native resolution, as the ISIC 2018 Task 1 challenge does.

Two modes, the same outputs (`per_image.csv`: counts and metrics per image; `summary.json`:
macro averages, the challenge's figures, with 'overall' = mean threshold Jaccard; both files'
schemas are in unet_jax/results.py):

1. A trained run:
     python -m unet_jax.evaluate --workdir W [--checkpoint final|best|latest|STEP] [--split val]
         [--tta none|flips|dihedral] [--threshold T] [--[no]largest_component]
         [--[no]fill_holes] [--tune_threshold] [--output DIR]
   predicts every image of the split (from the run's config and data source, 'isic' included;
   --images/--truth folders instead) at the training resolution, through the same decoding and
   resizing as training (unet_jax.photos), maps the probabilities back onto the image's own grid
   with the run's resize policy, thresholds at --threshold and scores against the native mask.
   Default output: <workdir>/eval_<split>/ (final checkpoint), eval_<split>_<checkpoint>/ (other).
2. Any prediction folder:
     python -m unet_jax.evaluate --predictions DIR --truth DIR [--output DIR]
   scores 8-bit masks made by anything (e.g. unet_jax.predict) against the ground truth, pairing
   files by their ISIC_<id> (else by name without '_segmentation'). Default output: <DIR>_eval/.

Metric definitions follow the official scorer `isic-challenge-scoring` (unet_jax.native_scoring),
so mode 2 on a folder gives its numbers, and mode 1 gives what mode 2 would give on the masks
`unet_jax.predict` writes for the same run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from absl import app, flags, logging

# Mode 2 (a folder of masks) and --help need neither TensorFlow nor the model: `evaluation`
# and `inference` are imported where mode 1 needs them (5 s of start-up spared).
from unet_jax import cli, native_scoring, results

if TYPE_CHECKING:
  from unet_jax import inference

FLAGS = flags.FLAGS


def evaluate_run(
  workdir: str | Sequence[str],
  *,
  checkpoint: str = 'final',
  split: str = 'val',
  images_dir: str | None = None,
  truth_dir: str | None = None,
  output_dir: str | None = None,
  tta: str | None = None,
  threshold: float | None = None,
  largest_component: bool | None = None,
  fill_holes: bool | None = None,
  batch_size: int | None = None,
  show_progress: bool = False,
  predictor: inference.Predictor | None = None,
) -> dict:
  """Mode 1: scores a checkpoint of a run; writes the CSV and summary; returns the summary.

  The inference settings are the run's (`inference.settings`: config.inference, a tuned
  threshold); the arguments that are not None override them. Several workdirs are an ensemble
  (their probabilities averaged): it needs `output_dir`, and a split or folder that any member
  trained on is refused. `predictor` (instead of loading the checkpoint; then `checkpoint`, its
  TTA and `batch_size` are its own) lets a caller that already holds the model score it without
  a restore.
  """
  from unet_jax import evaluation, inference, input_pipeline

  workdirs = [workdir] if isinstance(workdir, str) else list(workdir)
  if bool(images_dir) != bool(truth_dir):
    raise ValueError('--images and --truth go together.')
  # Their pairing is checked before any checkpoint loads.
  folder = evaluation.dir_ids(images_dir, truth_dir) if images_dir else None
  if len(workdirs) > 1 and not output_dir:
    raise ValueError('An ensemble (several --workdir) needs --output: its results belong to no '
                     'single run.')
  if predictor is None:
    config = inference.run_config.load(workdirs[0])
    if not images_dir:  # A split the run's data lacks is refused before any checkpoint loads.
      input_pipeline.check_split(config.data, split)
    tta = inference.settings(config, workdirs[0], tta=tta).tta
    predictor = inference.load_predictor(workdirs, checkpoint=checkpoint, tta=tta,
                                         batch_size=batch_size)
  settings = inference.settings(predictor.config, workdirs[0], tta=predictor.tta,
                                threshold=threshold, largest_component=largest_component,
                                fill_holes=fill_holes)
  ids, examples, split = _examples(predictor, split, folder)
  if isinstance(predictor, inference.Ensemble):
    _refuse_seen_images(predictor, workdirs, ids, split)
  seen = _images_in_splits(predictor.config, ids, split)
  tuned_on = _tuned_on(workdirs[0])
  progress = cli.Progress(len(ids), 'evaluate ') if show_progress else None
  scores = evaluation.score(predictor, examples, settings=settings, progress=progress)
  scores.sort(key=lambda s: s.image_id)
  which = predictor.checkpoint or str(predictor.step)
  output_dir = output_dir or default_output(workdirs[0], split, which, truth_dir)
  folders = {'images': os.path.abspath(images_dir), 'truth': os.path.abspath(truth_dir)} if (
      images_dir) else {}
  source = {'workdir': [os.path.abspath(w) for w in workdirs] if len(workdirs) > 1 else
            os.path.abspath(workdirs[0]), 'split': split, **folders, 'checkpoint': which,
            'step': predictor.step, 'selected_on_this_split': which == 'best' and bool(seen['val']),
            'images_in_training_split': seen['train'],
            'resize_policy': predictor.policy, 'image_size': predictor.size,
            **dataclasses.asdict(settings),
            'threshold_tuned_on_this_split': threshold is None and bool(
                seen.get(tuned_on) if split == 'folder' else tuned_on == split)}
  return results.write_evaluation(scores, output_dir, source, results.devices())


def _examples(predictor, split, folder=None):
  """(ids, examples, what was scored) of a split, or of `folder` (`evaluation.dir_ids`'s pairs)."""
  from unet_jax import evaluation

  if folder:
    ids, paths = folder
    return ids, evaluation.iter_pairs(ids, paths, predictor.size), 'folder'
  ids = evaluation.split_ids(predictor.config, split)
  if not ids:
    raise ValueError(f'The {split!r} split has no examples.')
  return ids, evaluation.iter_split(predictor.config, split, ids), split


THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(4, 17))  # 0.20, 0.25, ..., 0.80.


def tune_threshold(workdir: str, *, checkpoint: str = 'final', split: str = 'val',
                   tta: str | None = None, show_progress: bool = False) -> dict:
  """Picks the threshold with the highest macro threshold Jaccard on `split` (the run's
  validation split) over THRESHOLDS, with the run's other inference settings, and records it in
  `<workdir>/inference.json`, where `predict` and `evaluate` find it. Ties go to the threshold
  closest to 0.5. Numbers reported on the same split afterwards are optimistic, and say so."""
  from unet_jax import evaluation, inference

  config = inference.run_config.load(workdir)
  base = inference.settings(config, None, tta=tta)  # Not an earlier tuned threshold.
  predictor = inference.load_predictor(workdir, checkpoint=checkpoint, tta=base.tta)
  ids, examples, split = _examples(predictor, split)
  progress = cli.Progress(len(ids), 'tune ') if show_progress else None
  per_image = evaluation.score(predictor, examples, settings=base, progress=progress,
                               thresholds=THRESHOLDS)
  values = {t: native_scoring.summarize([scores[i] for scores in per_image])['overall']
            for i, t in enumerate(THRESHOLDS)}
  best = max(THRESHOLDS, key=lambda t: (values[t], -abs(t - 0.5)))
  record = {'threshold': best, 'tuned_on': split, 'checkpoint': checkpoint,
            'step': predictor.step, 'tta': base.tta, 'largest_component': base.largest_component,
            'fill_holes': base.fill_holes,
            'macro_threshold_jaccard': {str(t): v for t, v in values.items()}}
  results.write_json(os.path.join(workdir, inference.TUNED), record)
  return record


def tuned_text(tuned: dict, path: str) -> str:
  """What `--tune_threshold` says of its pick (`tune_threshold`'s record, written to `path`); a
  pick at the end of THRESHOLDS says so: the best threshold may lie beyond those tried."""
  threshold = tuned['threshold']
  text = (f"Tuned threshold {threshold} on {tuned['tuned_on']!r} (macro threshold Jaccard "
          f"{tuned['macro_threshold_jaccard'][str(threshold)]:.4f}); recorded in {path}.")
  edge = {THRESHOLDS[0]: 'lowest', THRESHOLDS[-1]: 'highest'}.get(threshold)
  if edge:
    text += (f' It is the {edge} of those tried ({THRESHOLDS[0]} to {THRESHOLDS[-1]}): the best '
             'may lie beyond them (an undertrained model?).')
  return text


def _tuned_on(workdir: str) -> str | None:
  from unet_jax import inference

  path = os.path.join(workdir, inference.TUNED)
  return results.read_json(path)['tuned_on'] if os.path.exists(path) else None


def _images_in_splits(config, ids: Sequence[str], split: str) -> dict[str, int | None]:
  """How many of the scored images are in the run's training and validation splits: a split's
  own by definition, a folder's by id (None where the run's data is not here to tell)."""
  from unet_jax import evaluation

  if split != 'folder':
    return {name: len(ids) if split == name else 0 for name in ('train', 'val')}
  counts = {}
  for name in ('train', 'val'):
    known = evaluation.split_ids_here(config, name)
    counts[name] = None if known is None else len(set(ids) & set(known))
  return counts


def _refuse_seen_images(ensemble: inference.Ensemble, workdirs: Sequence[str],
                        ids: Sequence[str], split: str) -> None:
  """An ensemble scored on images any member trained on would report its memory."""
  from unet_jax import evaluation

  for workdir, member in zip(workdirs, ensemble.members, strict=True):
    seen = set(ids) & set(evaluation.split_ids(member.config, 'train'))
    if seen:
      raise ValueError(
        f'{len(seen)} of the {len(ids)} images of {split!r} are in the training split of '
        f'ensemble member {workdir!r} (e.g. {sorted(seen)[0]}); evaluate an ensemble on images '
        'none of its members trained on (--images/--truth, or a held-out split).')


def default_output(workdir: str, split: str, checkpoint: str, truth_dir: str | None = None) -> str:
  """<workdir>/eval_<split> for the final checkpoint, eval_<split>_<checkpoint> for another; a
  folder of photos (split 'folder') is named by its truth folder, eval_folder_<name>[...], so
  that scoring a second folder does not overwrite the first."""
  suffix = '' if checkpoint == 'final' else f'_{checkpoint}'
  if split == 'folder' and truth_dir:
    split = f'folder_{os.path.basename(os.path.normpath(os.path.abspath(truth_dir)))}'
  return os.path.join(workdir, f'eval_{split}{suffix}')


def evaluate_folders(predictions_dir: str, truth_dir: str, output_dir: str | None = None) -> dict:
  """Mode 2: scores a folder of masks against the truth; writes the CSV and summary."""
  scores = native_scoring.score_folders(predictions_dir, truth_dir)
  output_dir = output_dir or os.path.normpath(predictions_dir) + '_eval'
  source = {'predictions': os.path.abspath(predictions_dir), 'truth': os.path.abspath(truth_dir)}
  return results.write_evaluation(scores, output_dir, source)


def format_summary(summary: dict) -> str:
  macro = summary['macro_average']
  lines = [f'{summary["num_images"]} images, macro averages (as the ISIC challenge):']
  lines += [f'  {name:<18} {macro[name]:.6f}' for name in native_scoring.METRICS]
  return '\n'.join(lines)


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program, so importing the module never clashes
  with another CLI's flags (unet_jax.predict has flags of the same names)."""
  flags.DEFINE_list('workdir', None, 'Mode 1: a training run to evaluate; several, '
                    'comma-separated, are an ensemble (probabilities averaged; needs --output).')
  flags.DEFINE_string('checkpoint', 'final', "Mode 1: which checkpoint: 'final' (the end of "
                      "training), 'best' (the best validation score; selected on the 'val' "
                      "split, so its 'val' numbers are optimistic), 'latest', or a step number.")
  flags.DEFINE_string('split', 'val', "Mode 1: the split to evaluate: 'val', 'train', or 'test' "
                      "(ISIC source only); 'val' is the run's own validation split (its fold).")
  flags.DEFINE_string('images', None, 'Mode 1: evaluate these images instead of a split (with '
                      '--truth).')
  flags.DEFINE_string('truth', None, 'Ground-truth masks (8-bit, lesion > 128), e.g. '
                      'ISIC2018_Task1_Training_GroundTruth. Mode 2 needs it; mode 1 with --images.')
  flags.DEFINE_string('predictions', None, 'Mode 2: a folder of predicted masks to score.')
  flags.DEFINE_string('output', None, 'Where per_image.csv and summary.json go. Default: '
                      '<workdir>/eval_<split> for the final checkpoint, '
                      '<workdir>/eval_<split>_<checkpoint> for another (mode 1; with --images, '
                      '<split> is folder_<name of the --truth folder>), '
                      '<predictions>_eval (mode 2).')
  cli.define_inference_flags('Mode 1: ')
  flags.DEFINE_bool('tune_threshold', False, 'Mode 1: first pick the threshold with the best '
                    'threshold Jaccard on --split (0.20 to 0.80 by 0.05) and record it in '
                    '<workdir>/inference.json, where predict and evaluate then find it. Picked '
                    'on the validation split, it makes that split\'s numbers optimistic.')
  flags.DEFINE_integer('batch_size', None, "Mode 1: tiles per forward pass; default: the run's "
                       'config.eval.batch_size.', lower_bound=1)


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}.')
  cli.quiet_library_logs()
  if bool(FLAGS.workdir) == bool(FLAGS.predictions):
    raise app.UsageError('Pass either --workdir (evaluate a run) or --predictions with --truth '
                         '(score a folder of masks); see --help.')
  if FLAGS.output:
    cli.ensure_writable(FLAGS.output, '--output')
  if FLAGS.predictions:
    if not FLAGS.truth:
      raise app.UsageError('--predictions needs --truth.')
    summary = evaluate_folders(FLAGS.predictions, FLAGS.truth, FLAGS.output)
  else:
    if FLAGS.tune_threshold:
      from unet_jax import inference  # Mode 1 only (see the imports above).

      if len(FLAGS.workdir) > 1:
        raise app.UsageError('--tune_threshold tunes one run at a time.')
      tuned = tune_threshold(FLAGS.workdir[0], checkpoint=FLAGS.checkpoint, split=FLAGS.split,
                             tta=FLAGS.tta, show_progress=True)
      print(tuned_text(tuned, os.path.join(FLAGS.workdir[0], inference.TUNED)), flush=True)
    summary = evaluate_run(FLAGS.workdir, checkpoint=FLAGS.checkpoint, split=FLAGS.split,
                           images_dir=FLAGS.images, truth_dir=FLAGS.truth,
                           output_dir=FLAGS.output, tta=FLAGS.tta, threshold=FLAGS.threshold,
                           largest_component=FLAGS.largest_component,
                           fill_holes=FLAGS.fill_holes, batch_size=FLAGS.batch_size,
                           show_progress=True)
    source = summary['source']
    print(f"Checkpoint {source['checkpoint']!r}: step {source['step']}; TTA {source['tta']}, "
          f"threshold {source['threshold']}, largest component {source['largest_component']}, "
          f"fill holes {source['fill_holes']}.", flush=True)
    if source['selected_on_this_split']:
      print("Note: the 'best' checkpoint was selected on the validation split, which holds "
            'these images (or some of them): its numbers here are optimistic. Report the final '
            'checkpoint, or other images.', flush=True)
    if source['threshold_tuned_on_this_split']:
      print('Note: the threshold was tuned on these images (or some of them); its numbers here '
            'are optimistic.', flush=True)
    if source['images_in_training_split']:
      print(f"Note: {source['images_in_training_split']} of the {summary['num_images']} images "
            "are in this run's training split: its numbers on them are optimistic. Score "
            'images it did not train on (its validation split, or another folder).', flush=True)
    elif source['images_in_training_split'] is None:
      print("Note: this run's data is not on this machine, so whether it trained on these "
            'images is unknown.', flush=True)
  print(format_summary(summary), flush=True)
  if FLAGS.predictions:
    out = FLAGS.output or os.path.normpath(FLAGS.predictions) + '_eval'
  else:
    out = FLAGS.output or default_output(FLAGS.workdir[0], summary['source']['split'],
                                         summary['source']['checkpoint'], FLAGS.truth)
  print(f'Wrote {os.path.join(out, "per_image.csv")} and summary.json.', flush=True)
  logging.flush()
  return 0


if __name__ == '__main__':
  define_flags()
  cli.run_absl(main)
