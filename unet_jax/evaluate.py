r"""Scores segmentations at native resolution, as the ISIC 2018 Task 1 challenge does.

Two modes, the same outputs (`per_image.csv`: counts and metrics per image; `summary.json`:
macro averages, the challenge's figures, with 'overall' = mean threshold Jaccard):

1. A trained run:
     python -m unet_jax.evaluate --workdir W [--split val] [--tta] [--output DIR]
   predicts every image of the split (from the run's config; --images/--truth folders instead)
   at the training resolution, maps the probabilities back onto the image's own grid with the
   run's resize policy, thresholds at --threshold and scores against the native mask.
   Default output: <workdir>/eval_<split>/.
2. Any prediction folder:
     python -m unet_jax.evaluate --predictions DIR --truth DIR [--output DIR]
   scores 8-bit masks made by anything (e.g. unet_jax.predict) against the ground truth, pairing
   files by their ISIC_<id> (else by name without '_segmentation'). Default output: <DIR>_eval/.

Metric definitions follow the official scorer `isic-challenge-scoring` (unet_jax.native_scoring),
so mode 2 on a folder gives its numbers, and mode 1 gives what mode 2 would give on the masks
`unet_jax.predict` writes for the same run.
"""

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Sequence

import ml_collections
import numpy as np
from absl import app, flags, logging

from unet_jax import (
  checkpointing,
  inference,
  input_pipeline,
  native_scoring,
  resize_policy,
  synthetic,
)

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Example:
  """One image to evaluate, loaded on demand (ISIC photos are tens of megabytes decoded)."""

  image_id: str
  load_image: Callable[[], np.ndarray]  # uint8 [H, W, 3]
  load_truth: Callable[[], np.ndarray]  # bool [H', W'], the native ground truth


def folder_examples(image_paths: Sequence[str], truth_paths: Sequence[str]) -> list[Example]:
  """Examples from matching lists of image files and 8-bit mask files."""
  return [
    Example(native_scoring.image_id(image),
            lambda p=image: inference.read_image(p),
            lambda p=truth: native_scoring.binarize(native_scoring.read_mask(p)))
    for image, truth in zip(image_paths, truth_paths, strict=True)
  ]


def dir_examples(images_dir: str, truth_dir: str) -> list[Example]:
  """Every mask in `truth_dir` with its image in `images_dir`, paired by id."""
  truth = native_scoring.list_masks(truth_dir)
  images = {}
  for name in sorted(os.listdir(images_dir)):
    if not name.startswith('.') and name.lower().endswith(inference.IMAGE_EXTS):
      images.setdefault(native_scoring.image_id(name), os.path.join(images_dir, name))
  missing = sorted(set(truth) - set(images))
  if missing:
    raise FileNotFoundError(f'{len(missing)} truth mask(s) have no image in {images_dir!r}, '
                            f'e.g. {missing[:5]}.')
  ids = sorted(truth)
  return folder_examples([images[i] for i in ids], [truth[i] for i in ids])


def split_examples(config: ml_collections.ConfigDict, split: str) -> list[Example]:
  """The examples of a split of the run's data source, at their native resolution.

  'folder': the k-fold split's files. 'synthetic': the split's images drawn at
  config.data.synthetic_size, before the pipeline's resize. Other sources: pass --images/--truth.
  """
  data = config.data
  if data.source == 'folder':
    _, image_paths, mask_paths = input_pipeline.folder_split(data, split)
    return folder_examples(image_paths, mask_paths)
  if data.source == 'synthetic':
    n = data.num_train if split == 'train' else data.num_val
    seed = config.seed
    if split != 'train':  # The pipeline's validation seed (input_pipeline._uncached_source).
      seed += input_pipeline.SYNTHETIC_VAL_SEED_OFFSET
    images, masks = synthetic.make_dataset(n, data.synthetic_size, data.synthetic_size, seed)
    return [Example(f'synthetic_{split}_{k:05d}', lambda k=k: images[k],
                    lambda k=k: masks[k].astype(bool)) for k in range(n)]
  raise ValueError(f'Evaluating config.data.source={data.source!r} from the config is not '
                   'supported; pass --images and --truth folders instead.')


def score_examples(
  predictor: inference.Predictor,
  examples: Sequence[Example],
  *,
  threshold: float = 0.5,
  show_progress: bool = False,
) -> list[native_scoring.ImageScore]:
  """Predicts and scores each example at the truth mask's resolution.

  When the stored image is smaller than its truth mask (a prepared dataset keeps images at the
  training scale, masks at native size), the probabilities are resized onto the mask's grid
  before thresholding, exactly as for a native image.
  """
  progress = inference.Progress(len(examples), 'evaluate ') if show_progress else None

  def items() -> Iterator[tuple[Example, np.ndarray]]:
    for example in examples:
      yield example, example.load_image()

  scores = []
  for example, probs in predictor.predict_images(items()):
    truth = example.load_truth()
    if probs.shape != truth.shape:
      probs = resize_policy.resize_2d(probs, *truth.shape)
    scores.append(native_scoring.score_image(example.image_id, truth, probs >= threshold))
    if progress:
      progress.update(example.image_id)
  if progress:
    progress.close()
  return scores


def evaluate_run(
  workdir: str,
  *,
  split: str | None = None,
  images_dir: str | None = None,
  truth_dir: str | None = None,
  output_dir: str | None = None,
  tta: bool = False,
  threshold: float = 0.5,
  batch_size: int | None = None,
  show_progress: bool = False,
  predictor: inference.Predictor | None = None,
) -> dict:
  """Mode 1: scores a run's latest checkpoint; writes the CSV and summary; returns the summary.

  `predictor` (instead of loading the checkpoint; then `tta` and `batch_size` are its own) lets a
  caller that already holds the model, e.g. a training loop, score it without a restore.
  """
  if predictor is None:
    predictor = inference.load_predictor(workdir, tta=tta, batch_size=batch_size)
  if images_dir or truth_dir:
    if not (images_dir and truth_dir):
      raise ValueError('--images and --truth go together.')
    examples, split = dir_examples(images_dir, truth_dir), split or 'folder'
  else:
    split = split or predictor.config.data.get('eval_split', 'val')
    examples = split_examples(predictor.config, split)
  if not examples:
    raise ValueError(f'The {split!r} split has no examples.')
  scores = score_examples(predictor, examples, threshold=threshold, show_progress=show_progress)
  output_dir = output_dir or os.path.join(workdir, f'eval_{split}')
  extra = {'workdir': os.path.abspath(workdir), 'split': split, 'step': predictor.step,
           'resize_policy': predictor.policy, 'image_size': predictor.size, 'tta': predictor.tta,
           'threshold': threshold}
  return native_scoring.write_outputs(scores, output_dir, extra)


def evaluate_folders(predictions_dir: str, truth_dir: str, output_dir: str | None = None) -> dict:
  """Mode 2: scores a folder of masks against the truth; writes the CSV and summary."""
  scores = native_scoring.score_folders(predictions_dir, truth_dir)
  output_dir = output_dir or os.path.normpath(predictions_dir) + '_eval'
  extra = {'predictions': os.path.abspath(predictions_dir), 'truth': os.path.abspath(truth_dir)}
  return native_scoring.write_outputs(scores, output_dir, extra)


def format_summary(summary: dict) -> str:
  macro = summary['macro_average']
  lines = [f'{summary["num_images"]} images, macro averages (as the ISIC challenge):']
  lines += [f'  {name:<18} {macro[name]:.6f}' for name in native_scoring.METRICS]
  return '\n'.join(lines)


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program, so importing the module never clashes
  with another CLI's flags (unet_jax.predict has flags of the same names)."""
  flags.DEFINE_string('workdir', None, 'Mode 1: a training run to evaluate (latest checkpoint).')
  flags.DEFINE_string('split', None, "Mode 1: the split to evaluate ('val' or 'train'); "
                      "default: config.data.eval_split if the run has it, else 'val'.")
  flags.DEFINE_string('images', None, 'Mode 1: evaluate these images instead of a split (with '
                      '--truth).')
  flags.DEFINE_string('truth', None, 'Ground-truth masks (8-bit, lesion > 128), e.g. '
                      'ISIC2018_Task1_Training_GroundTruth. Mode 2 needs it; mode 1 with --images.')
  flags.DEFINE_string('predictions', None, 'Mode 2: a folder of predicted masks to score.')
  flags.DEFINE_string('output', None, 'Where per_image.csv and summary.json go. Default: '
                      '<workdir>/eval_<split> (mode 1), <predictions>_eval (mode 2).')
  flags.DEFINE_bool('tta', False, 'Mode 1: flip test-time augmentation (4x compute).')
  flags.DEFINE_float('threshold', 0.5, 'Mode 1: lesion where the probability >= this.')
  flags.DEFINE_integer('batch_size', None, "Mode 1: tiles per forward pass; default: the run's "
                       'eval_batch_size.')


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}.')
  logging.get_absl_handler().addFilter(checkpointing.QuietOrbax())
  if bool(FLAGS.workdir) == bool(FLAGS.predictions):
    raise app.UsageError('Pass either --workdir (evaluate a run) or --predictions with --truth '
                         '(score a folder of masks); see --help.')
  if FLAGS.predictions:
    if not FLAGS.truth:
      raise app.UsageError('--predictions needs --truth.')
    summary = evaluate_folders(FLAGS.predictions, FLAGS.truth, FLAGS.output)
  else:
    summary = evaluate_run(FLAGS.workdir, split=FLAGS.split, images_dir=FLAGS.images,
                           truth_dir=FLAGS.truth, output_dir=FLAGS.output, tta=FLAGS.tta,
                           threshold=FLAGS.threshold, batch_size=FLAGS.batch_size,
                           show_progress=True)
  print(format_summary(summary), flush=True)
  out = FLAGS.output or (os.path.join(FLAGS.workdir, f'eval_{summary["split"]}') if FLAGS.workdir
                         else os.path.normpath(FLAGS.predictions) + '_eval')
  print(f'Wrote {os.path.join(out, "per_image.csv")} and summary.json.', flush=True)
  logging.flush()
  return 0


if __name__ == '__main__':
  define_flags()
  sys.exit(app.run(main))
