r"""What the per-image validation at native resolution costs, stage by stage, on real photos.

  python -m experiments.native_validation_cost [--data ../shared/data/isic_sample/native]
      [--sizes 224,256] [--policies stretch,crop] [--repeats 3] [--threads 1]

For each photo of an ISIC-layout folder (the sample's `native/` holds 4 full-size ISIC photos,
up to 4288 x 2848) it times the host stages of `unet_jax.evaluation.score`, the ones the pooled
S x S pass does not have: decoding the photo at its libjpeg scale (`photos.read_photo`), making
the model's tiles (`resize_policy.model_inputs`), reading the truth mask at native size (as the
official scorer reads it), mapping the tiles' probabilities back onto the native grid
(`resize_policy.probs_to_native`), thresholding them and counting the confusion matrix. The model's forward pass
is left out: it is the same work as the pooled pass's (one per tile), and on a GPU it is a few
milliseconds per image. Prints a table (median seconds per image over --repeats) and the
projection for one fold of ISIC 2018 (519 photos).
"""

import argparse
import os
import statistics
import sys
import time
from functools import partial

if __package__ in (None, ''):  # `python experiments/native_validation_cost.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from unet_jax import native_scoring  # photos, resize_policy (TensorFlow) where they work.

FOLD_IMAGES = 519  # One of 5 folds of the 2594 ISIC 2018 training photos.


def _time(fn, repeats):
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), result


def _read_truth(path):
  return native_scoring.binarize(native_scoring.read_mask(path))


def _count(truth, probs):
  return native_scoring.confusion(truth, probs >= 0.5)


def measure(data: str, sizes, policies, repeats: int) -> list[dict]:
  from unet_jax import photos, resize_policy

  image_dir = os.path.join(data, 'ISIC2018_Task1-2_Training_Input')
  truth_dir = os.path.join(data, 'ISIC2018_Task1_Training_GroundTruth')
  names = sorted(n for n in os.listdir(image_dir) if n.endswith('.jpg'))
  if not names:
    raise FileNotFoundError(f'No .jpg photos in {image_dir!r}; pass --data.')
  rows = []
  rng = np.random.default_rng(0)
  for name in names:
    ident = name[:-4]
    image_path = os.path.join(image_dir, name)
    truth_path = os.path.join(truth_dir, f'{ident}_segmentation.png')
    t_truth, truth = _time(partial(_read_truth, truth_path), repeats)
    for size in sizes:
      t_decode, (image, native) = _time(partial(photos.read_photo, image_path, size), repeats)
      for policy in policies:
        t_tiles, (tiles, placement) = _time(
            partial(resize_policy.model_inputs, image, size, policy, native), repeats)
        probs = rng.random(tiles.shape[:3], np.float32)  # Stands in for the model's output.
        t_native, native_probs = _time(
            partial(resize_policy.probs_to_native, probs, placement), repeats)
        t_count, _ = _time(partial(_count, truth, native_probs), repeats)
        rows.append({'image': ident, 'native': f'{native[1]}x{native[0]}', 'size': size,
                     'policy': policy, 'tiles': placement.num_tiles, 'decode': t_decode,
                     'tiles_s': t_tiles, 'truth': t_truth, 'to_native': t_native,
                     'count': t_count})
  return rows


def table(rows) -> str:
  lines = ['| image | native WxH | S | policy | tiles | decode | tiles | truth | to native | '
           'count | total s |', '|' + '---|' * 11]
  for r in rows:
    total = r['decode'] + r['tiles_s'] + r['truth'] + r['to_native'] + r['count']
    r['total'] = total
    lines.append(f"| {r['image']} | {r['native']} | {r['size']} | {r['policy']} | {r['tiles']} "
                 f"| {r['decode']:.3f} | {r['tiles_s']:.3f} | {r['truth']:.3f} | "
                 f"{r['to_native']:.3f} | {r['count']:.3f} | {total:.3f} |")
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  parser.add_argument('--data', default=os.path.join(repo, '..', 'shared', 'data', 'isic_sample',
                                                     'native'),
                      help='An ISIC-layout folder of photos and masks (default: the sample\'s '
                      'native/).')
  parser.add_argument('--sizes', default='224,256', help='Training resolutions S, comma-separated.')
  parser.add_argument('--policies', default='stretch,crop', help='Resize policies.')
  parser.add_argument('--repeats', type=int, default=3, help='Timings per stage (median kept).')
  args = parser.parse_args(argv)
  rows = measure(args.data, [int(s) for s in args.sizes.split(',')], args.policies.split(','),
                 args.repeats)
  print(table(rows))
  print()
  for size in sorted({r['size'] for r in rows}):
    for policy in sorted({r['policy'] for r in rows}):
      totals = [r['total'] for r in rows if r['size'] == size and r['policy'] == policy]
      mean = statistics.mean(totals)
      print(f'S={size} {policy}: {mean:.3f} s per photo on one core (mean of {len(totals)} '
            f'photos); one fold of {FOLD_IMAGES}: {mean * FOLD_IMAGES:.0f} s on one core.')


if __name__ == '__main__':
  main()
