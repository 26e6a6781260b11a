r"""Segments images with a trained run, writing masks in the format the ISIC challenge accepts.

  python -m unet_jax.predict --workdir W --input DIR_OR_FILE[,...] --output DIR \
      [--checkpoint best|final|latest|STEP] [--tta none|flips|dihedral] [--threshold T]
      [--[no]largest_component] [--[no]fill_holes] [--overlay_dir DIR]

For each input image `<name>.jpg` it writes `<output>/ISIC_<id>_segmentation.png` (or
`<name>_segmentation.png` for names without an ISIC id): single-channel 8-bit, 0 = skin,
255 = lesion, at the image's own size -- what the challenge's scorer reads. The model sees the
image at the run's training resolution and resize policy, decoded and resized as in training
(unet_jax.photos); the probabilities are mapped back onto the native grid before thresholding
(unet_jax.inference). The default checkpoint is the run's best (by its validation metric).

Each mask is written atomically (temp file + rename), so an interrupted run leaves only complete
masks. A file that cannot be read is reported by name and skipped, the others are still written,
and the exit code is 1. Overlays (image tinted where the lesion is, its outline drawn) go to a
separate folder so the mask folder stays a valid submission.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from absl import app, flags

from unet_jax import cli, figures, native_scoring, results, run_config

# TensorFlow and the model (`photos`, `inference`) are imported where an image is read or
# predicted: `--help` and a wrong call answer in a second, not after their 6 s of start-up.
if TYPE_CHECKING:
  from unet_jax import inference

FLAGS = flags.FLAGS
_OVERLAY_TINT = np.array([255, 64, 0], np.float32)
_OVERLAY_OUTLINE = np.array([0, 255, 0], np.uint8)


def list_inputs(inputs: Sequence[str]) -> list[str]:
  """Image paths from files and folders (a folder's images, sorted, non-recursive)."""
  paths = []
  for entry in inputs:
    if os.path.isdir(entry):
      names = sorted(n for n in os.listdir(entry) if not n.startswith('.')
                     and n.lower().endswith(native_scoring.IMAGE_EXTS))
      paths.extend(os.path.join(entry, n) for n in names)
    elif os.path.exists(entry):
      paths.append(entry)
    else:
      raise FileNotFoundError(f'--input {entry!r} does not exist{cli.home_hint(entry)}.')
  return paths


def no_images_message(inputs: Sequence[str]) -> str:
  """Why --input gave no image, and the subfolders that hold some (folders are not recursed)."""
  nested = [os.path.join(entry, sub) for entry in inputs if os.path.isdir(entry)
            for sub in sorted(os.listdir(entry)) if os.path.isdir(os.path.join(entry, sub))
            and list_inputs([os.path.join(entry, sub)])]
  hint = f'; these subfolders hold images: {", ".join(nested)}' if nested else ''
  return (f'No images ({", ".join(native_scoring.IMAGE_EXTS)}) in --input {",".join(inputs)}; '
          f'a folder is read without its subfolders{hint}.')


def mask_name(path: str) -> str:
  """'ISIC_0012345_segmentation.png' for any file whose name holds ISIC_0012345."""
  return native_scoring.image_id(path) + '_segmentation.png'


def mask_names(paths: Sequence[str]) -> list[str]:
  """Each input's mask name; two inputs that would write the same mask are an error, not an
  overwrite (ISIC 2017's photo folders hold `ISIC_<id>_superpixels.png` beside each photo)."""
  seen: dict[str, str] = {}
  for path in paths:
    name = mask_name(path)
    if name in seen:
      raise ValueError(
          f'{seen[name]!r} and {path!r} would both be written as {name!r}; give --input the '
          'photos alone: a folder of photos only, or the files, comma-separated (e.g. '
          '"$(ls DIR/ISIC_???????.jpg | paste -sd, -)").')
    seen[name] = path
  return list(seen)


def check_output_folders(inputs: Sequence[str], output: str, overlay_dir: str | None) -> None:
  """The masks' folder is neither a folder of the inputs (the masks would lie among the photos,
  and be read as photos by the next `predict` of it) nor the overlays' folder (the challenge's
  scorer, and `evaluate --predictions`, read every PNG of it as a mask)."""
  where = os.path.realpath(output)
  if any(os.path.isdir(p) and os.path.realpath(p) == where for p in inputs):
    raise ValueError(f'--output {output!r} is a folder of --input: the masks would be written '
                     'among the photos; give them a folder of their own.')
  if overlay_dir and os.path.realpath(overlay_dir) == where:
    raise ValueError(f'--overlay_dir {overlay_dir!r} is --output: the scorer reads every PNG of '
                     '--output as a mask; give the overlays a folder of their own.')


def encode_png(array: np.ndarray, compression: int = -1) -> bytes:
  """PNG bytes of uint8 [H, W] (mode L) or [H, W, 3] (RGB); `compression` is zlib's level
  (-1: its default, 6)."""
  import tensorflow as tf

  array = np.asarray(array, np.uint8)
  if array.ndim == 2:
    array = array[..., None]
  return tf.io.encode_png(array, compression=compression).numpy()


# zlib level 1 for the native-size overlays: 0.4 s instead of 3.3 s for a 3024 x 2016 photo, for
# files 15% larger (lossless either way; masks are small and keep the default).
_OVERLAY_COMPRESSION = 1


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """The image tinted where `mask` (bool [H, W]) is lesion, with the lesion's outline drawn."""
  out = np.array(image, np.uint8)
  out[mask] = np.round(0.6 * out[mask].astype(np.float32) + 0.4 * _OVERLAY_TINT).astype(np.uint8)
  out[figures.outline(mask)] = _OVERLAY_OUTLINE
  return out


def photos_trained_on(predictor, paths: Sequence[str]) -> int | None:
  """How many of the photos (by ISIC id) the run, or any run of an ensemble, trained on: its
  masks of those show what it learned, not what it does on new photos. None where a run's data
  is not on this machine to tell (new photos are predict's usual work; nothing to say then)."""
  from unet_jax import evaluation

  ids = {native_scoring.image_id(p) for p in paths}
  seen: set[str] = set()
  for member in getattr(predictor, 'members', [predictor]):
    known = evaluation.split_ids_here(member.config, 'train')
    if known is None:
      return None
    seen |= ids & set(known)
  return len(seen)


def predict_files(
  predictor,
  paths: Sequence[str],
  output_dir: str,
  *,
  overlay_dir: str | None = None,
  settings: inference.Settings | None = None,
  show_progress: bool = True,
) -> list[tuple[str, str]]:
  """Writes a mask (and optionally an overlay) per readable image; returns [(path, error)].

  Unreadable files are reported on stderr by name as they are met and skipped.
  """
  from unet_jax import inference, photos

  names = mask_names(paths)
  os.makedirs(output_dir, exist_ok=True)
  if overlay_dir:
    os.makedirs(overlay_dir, exist_ok=True)
  failures: list[tuple[str, str]] = []
  progress = cli.Progress(len(paths), 'predict ') if show_progress else None

  def readable() -> Iterable[inference.Item]:
    for path, name in zip(paths, names, strict=True):
      try:
        image, native = photos.read_photo(path, predictor.size)
      except ValueError as e:
        failures.append((path, str(e)))
        sys.stderr.write(f'\nSkipped {path}: {e}\n')
        if progress:
          progress.update('(skipped)')
        continue
      yield (path, name), image, native

  settings = settings or inference.Settings()
  for (path, name), probs in predictor.predict_images(readable()):
    mask = settings.mask(probs)
    results.write_atomic(os.path.join(output_dir, name), encode_png(mask.astype(np.uint8) * 255))
    if overlay_dir:
      stem = name[: -len('_segmentation.png')]
      full, _ = photos.read_photo(path, None)  # The model saw a smaller decode.
      results.write_atomic(os.path.join(overlay_dir, stem + '_overlay.png'),
                           encode_png(overlay(full, mask), _OVERLAY_COMPRESSION))
    if progress:
      progress.update(os.path.basename(path))
  if progress:
    progress.close()
  return failures


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program, so that importing this module (tests,
  other tools) never clashes with another CLI's flags of the same name."""
  flags.DEFINE_list('workdir', None, 'Workdir of a training run: its config.json and a '
                    'checkpoint (--checkpoint) are used. Several, comma-separated, predict '
                    'together (an ensemble, e.g. the 5 folds of a cv5 sweep: probabilities '
                    'averaged at native resolution).')
  flags.DEFINE_string('checkpoint', 'best', "Which checkpoint: 'best' (the best validation "
                      "score, the default for new images), 'final' (the end of training), "
                      "'latest', or a step number.")
  flags.DEFINE_list('input', None, 'Image files and/or folders of images (.jpg, .jpeg, .png, .bmp, '
                    '.gif), comma-separated.')
  flags.DEFINE_string('output', None, 'Folder for the <id>_segmentation.png masks (created).')
  flags.DEFINE_string('overlay_dir', None, 'If set, also write <id>_overlay.png previews here. '
                      'Keep it apart from --output, which the challenge scorer reads whole.')
  cli.define_inference_flags()
  flags.DEFINE_integer('batch_size', None, 'Tiles per forward pass; default: the run\'s '
                       'config.eval.batch_size.', lower_bound=1)
  flags.mark_flags_as_required(['workdir', 'input', 'output'])


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}.')
  cli.quiet_library_logs()
  paths = list_inputs(FLAGS.input)
  if not paths:
    raise ValueError(no_images_message(FLAGS.input))
  mask_names(paths)  # Before the model is loaded.
  check_output_folders(FLAGS.input, FLAGS.output, FLAGS.overlay_dir)
  from unet_jax import inference  # After the checks that need no model.

  config = run_config.load(FLAGS.workdir[0])
  settings = inference.settings(config, FLAGS.workdir[0], tta=FLAGS.tta,
                                threshold=FLAGS.threshold,
                                largest_component=FLAGS.largest_component,
                                fill_holes=FLAGS.fill_holes)
  cli.ensure_writable(FLAGS.output, '--output')  # After the checks that need no folder.
  if FLAGS.overlay_dir:
    cli.ensure_writable(FLAGS.overlay_dir, '--overlay_dir')
  predictor = inference.load_predictor(FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                                       tta=settings.tta, batch_size=FLAGS.batch_size)
  print(f'Checkpoint {FLAGS.checkpoint!r}: step {predictor.step}; {len(paths)} image(s); resize '
        f'policy {predictor.policy!r} at {predictor.size} px; TTA {settings.tta}, threshold '
        f'{settings.threshold}, largest component {settings.largest_component}, fill holes '
        f'{settings.fill_holes}'
        f'{f"; an ensemble of {len(FLAGS.workdir)} runs" if len(FLAGS.workdir) > 1 else ""}.',
        flush=True)
  trained_on = photos_trained_on(predictor, paths)
  if trained_on:
    print(f"Note: {trained_on} of the {len(paths)} photos are in the training split of "
          f"{'a run of the ensemble' if len(FLAGS.workdir) > 1 else 'the run'} (by ISIC id): "
          'their masks show what it learned, not how it does on photos it has not seen.',
          flush=True)
  failures = predict_files(predictor, paths, FLAGS.output, overlay_dir=FLAGS.overlay_dir,
                           settings=settings)
  written = len(paths) - len(failures)
  print(f'Wrote {written} mask(s) to {FLAGS.output}.', flush=True)
  if failures:
    print(f'{len(failures)} file(s) could not be read and were skipped:', file=sys.stderr)
    for path, error in failures:
      print(f'  {path}: {error}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  define_flags()
  cli.run_absl(main)
