r"""Scores segmentations at native resolution, as the ISIC 2018 Task 1 challenge does.

Two modes, the same outputs (`per_image.csv`: counts and metrics per image; `summary.json`:
macro averages, the challenge's figures, with 'overall' = mean threshold Jaccard; both files'
schemas are in unet_jax/results.py):

1. A trained run:
     python -m unet_jax.evaluate --workdir W [--checkpoint final|best|latest|STEP] [--split val]
         [--tta] [--output DIR]
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

import os
import sys
from collections.abc import Sequence

from absl import app, flags, logging

from unet_jax import checkpointing, cli, evaluation, inference, native_scoring, results

FLAGS = flags.FLAGS


def evaluate_run(
  workdir: str | Sequence[str],
  *,
  checkpoint: str = 'final',
  split: str = 'val',
  images_dir: str | None = None,
  truth_dir: str | None = None,
  output_dir: str | None = None,
  tta: bool = False,
  threshold: float = 0.5,
  batch_size: int | None = None,
  show_progress: bool = False,
  predictor: inference.Predictor | None = None,
) -> dict:
  """Mode 1: scores a checkpoint of a run; writes the CSV and summary; returns the summary.

  Several workdirs are an ensemble (their probabilities averaged): it needs `output_dir`, and a
  split or folder that any member trained on is refused. `predictor` (instead of loading the
  checkpoint; then `checkpoint`, `tta` and `batch_size` are its own) lets a caller that already
  holds the model score it without a restore.
  """
  workdirs = [workdir] if isinstance(workdir, str) else list(workdir)
  if len(workdirs) > 1 and not output_dir:
    raise ValueError('An ensemble (several --workdir) needs --output: its results belong to no '
                     'single run.')
  if predictor is None:
    predictor = inference.load_predictor(workdirs, checkpoint=checkpoint, tta=tta,
                                         batch_size=batch_size)
  if bool(images_dir) != bool(truth_dir):
    raise ValueError('--images and --truth go together.')
  if images_dir:
    split = 'folder'
    ids, _ = evaluation.dir_ids(images_dir, truth_dir)
    examples = evaluation.iter_dirs(images_dir, truth_dir, predictor.size)
  else:
    ids = evaluation.split_ids(predictor.config, split)
    examples = evaluation.iter_split(predictor.config, split, ids)
  if not ids:
    raise ValueError(f'The {split!r} split has no examples.')
  if isinstance(predictor, inference.Ensemble):
    _refuse_seen_images(predictor, workdirs, ids, split)
  progress = cli.Progress(len(ids), 'evaluate ') if show_progress else None
  scores = evaluation.score(predictor, examples, threshold=threshold, progress=progress)
  scores.sort(key=lambda s: s.image_id)
  which = predictor.checkpoint or str(predictor.step)
  output_dir = output_dir or default_output(workdirs[0], split, which)
  source = {'workdir': [os.path.abspath(w) for w in workdirs] if len(workdirs) > 1 else
            os.path.abspath(workdirs[0]), 'split': split, 'checkpoint': which,
            'step': predictor.step, 'selected_on_this_split': which == 'best' and split == 'val',
            'resize_policy': predictor.policy, 'image_size': predictor.size, 'tta': predictor.tta,
            'threshold': threshold}
  return results.write_evaluation(scores, output_dir, source)


def _refuse_seen_images(ensemble: inference.Ensemble, workdirs: Sequence[str],
                        ids: Sequence[str], split: str) -> None:
  """An ensemble scored on images any member trained on would report its memory."""
  for workdir, member in zip(workdirs, ensemble.members, strict=True):
    seen = set(ids) & set(evaluation.split_ids(member.config, 'train'))
    if seen:
      raise ValueError(
        f'{len(seen)} of the {len(ids)} images of {split!r} are in the training split of '
        f'ensemble member {workdir!r} (e.g. {sorted(seen)[0]}); evaluate an ensemble on images '
        'none of its members trained on (--images/--truth, or a held-out split).')


def default_output(workdir: str, split: str, checkpoint: str) -> str:
  """<workdir>/eval_<split> for the final checkpoint, eval_<split>_<checkpoint> for another."""
  suffix = '' if checkpoint == 'final' else f'_{checkpoint}'
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
                      '<workdir>/eval_<split>_<checkpoint> for another (mode 1), '
                      '<predictions>_eval (mode 2).')
  flags.DEFINE_bool('tta', False, 'Mode 1: flip test-time augmentation (4x compute).')
  flags.DEFINE_float('threshold', 0.5, 'Mode 1: lesion where the probability >= this.')
  flags.DEFINE_integer('batch_size', None, "Mode 1: tiles per forward pass; default: the run's "
                       'config.eval.batch_size.')


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}.')
  logging.get_absl_handler().addFilter(checkpointing.QuietOrbax())
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
    predictor = inference.load_predictor(FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                                         tta=FLAGS.tta, batch_size=FLAGS.batch_size)
    print(f'Checkpoint {FLAGS.checkpoint!r}: step {predictor.step}.', flush=True)
    summary = evaluate_run(FLAGS.workdir, split=FLAGS.split, images_dir=FLAGS.images,
                           truth_dir=FLAGS.truth, output_dir=FLAGS.output,
                           threshold=FLAGS.threshold, show_progress=True, predictor=predictor)
    if summary['source']['selected_on_this_split']:
      print("Note: the 'best' checkpoint was selected on this split; its numbers here are "
            'optimistic. Report the final checkpoint, or another split.', flush=True)
  print(format_summary(summary), flush=True)
  if FLAGS.predictions:
    out = FLAGS.output or os.path.normpath(FLAGS.predictions) + '_eval'
  else:
    out = FLAGS.output or default_output(FLAGS.workdir[0], summary['source']['split'],
                                         summary['source']['checkpoint'])
  print(f'Wrote {os.path.join(out, "per_image.csv")} and summary.json.', flush=True)
  logging.flush()
  return 0


if __name__ == '__main__':
  define_flags()
  sys.exit(app.run(main))
