r"""The report's figures, drawn from run directories (never retraining): PNG or PDF by --out.

  python -m unet_jax.figures samples WORKDIR [--split val] [--count 6] --out FILE
  python -m unet_jax.figures predictions WORKDIR [--images best|median|worst|ID,ID...]
      [--count 4] [--checkpoint final] --out FILE
  python -m unet_jax.figures curves RUNS... [--metric val_threshold_jaccard] [--group-by F,...]
      --out FILE
  python -m unet_jax.figures distribution RUNS... | --long results_long.csv [--metric jaccard]
      [--checkpoint final | --evaluation eval_val] --out FILE
  python -m unet_jax.figures profile RUNS... | --long results_long.csv [--metric jaccard]
      [--checkpoint final | --evaluation eval_val] --out FILE

samples       the seed notebook's first figure: photos above their masks, from a run's data
              (any source: synthetic, a folder, ISIC), as the run's pipeline decodes them.
predictions   the seed's second figure: per image, the photo with the outlines of the truth and
              the prediction over it, the truth, the prediction, and its Jaccard; the images by
              id, or the best / median / worst by the run's own per-image validation CSV. It runs
              the run's checkpoint on the images it shows (the run's inference settings).
curves        a validation metric against the training step, per group of runs (runs that differ
              only by seed or fold, as `unet_jax.compare` groups them): the mean and, where a
              group has several runs, a band from its lowest to its highest run, over the
              steps all of the group's runs have logged (runs still training included).
distribution  the per-image values by group: a box (quartiles, whiskers at 1.5 IQR) and every
              image as a point, the challenge's 0.65 threshold as a line, and each group's
              failure rate (images below 0.65) in its label.
profile       a performance profile: the fraction of images whose value is >= t, for t in
              [0, 1], a line per group (rliable's view of a distribution).

RUNS are run workdirs or folders of them (a sweep's --root; files among them, as `ROOT/*` brings,
are skipped); curves draw every run found, finished or not, the others the runs whose final (or
best) checkpoint was validated, or (--evaluation FOLDER) that hold an `evaluate` output in
FOLDER; --long reads `compare`'s long table instead. Colours are the
Okabe-Ito palette (distinguishable with colour-blindness), text is sized for print, axes are
labelled with their units.
"""

import argparse
import collections
import csv
import io
import os
from collections.abc import Sequence

import numpy as np

from unet_jax import cli, native_scoring, results

# Okabe & Ito's colour-blind-safe palette.
COLOURS = ('#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000')
TRUTH_COLOUR, PREDICTION_COLOUR = '#009E73', '#E69F00'  # Bluish green, orange.
THRESHOLD = 0.65


def _pyplot():
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  plt.rcParams.update({'font.size': 9, 'axes.titlesize': 9, 'axes.labelsize': 9,
                       'legend.fontsize': 8, 'figure.dpi': 150, 'savefig.bbox': 'tight'})
  return plt


# A legend whose longest label is longer than this goes under the axes: inside them it covers
# the curves, and matplotlib's 'best' place for it spills over the axis label.
_LEGEND_INSIDE_CHARS = 32


def _legend(ax, loc: str) -> None:
  labels = ax.get_legend_handles_labels()[1]
  if max(map(len, labels), default=0) <= _LEGEND_INSIDE_CHARS:
    ax.legend(loc=loc)
  else:
    ax.legend(loc='upper left', bbox_to_anchor=(0, -0.2), frameon=False, fontsize=7)


def _save(fig, out: str) -> str:
  """Saves as PNG or PDF by the extension, atomically (rendered in memory, then one atomic write):
  a failed save leaves neither a half-written figure nor a temporary file."""
  ext = os.path.splitext(out)[1].lower()
  if ext not in ('.png', '.pdf'):
    raise ValueError(f'--out {out!r}: write a .png or a .pdf.')
  import matplotlib.pyplot as plt

  buffer = io.BytesIO()
  try:
    fig.savefig(buffer, format=ext[1:])
  finally:
    plt.close(fig)
  results.write_atomic(out, buffer.getvalue())
  return out


# ---------------------------------------------------------------------------------------------
# Images.


def outline(mask: np.ndarray) -> np.ndarray:
  """The boundary pixels of a boolean mask (lesion pixels with a 4-neighbour outside it)."""
  inner = mask.copy()
  inner[1:] &= mask[:-1]
  inner[:-1] &= mask[1:]
  inner[:, 1:] &= mask[:, :-1]
  inner[:, :-1] &= mask[:, 1:]
  return mask & ~inner


def _thick(edge: np.ndarray, width: int) -> np.ndarray:
  from scipy import ndimage

  return ndimage.binary_dilation(edge, iterations=max(0, width - 1)) if width > 1 else edge


def _overlay(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray | None) -> np.ndarray:
  """The photo at native size with the truth's outline (and the prediction's) drawn on it."""
  out = np.asarray(image, np.uint8).copy()
  width = max(1, max(truth.shape) // 250)
  pairs = [(truth, TRUTH_COLOUR)] + ([(prediction, PREDICTION_COLOUR)] if prediction is not None
                                     else [])
  for mask, colour in pairs:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], np.uint8)
    out[_thick(outline(mask), width)] = rgb
  return out


def _native_photo(example):
  """The example's photo at its native size (the decode may be libjpeg's 1/8 scale)."""
  from unet_jax import resize_policy

  if example.image.shape[:2] == tuple(example.native_shape):
    return example.image
  channels = [resize_policy.resize_2d(example.image[..., c].astype(np.float32),
                                      *example.native_shape) for c in range(3)]
  return np.clip(np.round(np.stack(channels, -1)), 0, 255).astype(np.uint8)


def samples(workdir: str, out: str, *, split: str = 'val', count: int = 6) -> str:
  """Photos above their masks (the seed notebook's first figure)."""
  import itertools

  from unet_jax import evaluation, run_config

  config = run_config.load(workdir)
  examples = list(itertools.islice(evaluation.iter_split(
      config, split, evaluation.split_ids(config, split)[:count]), count))
  plt = _pyplot()
  fig, axes = plt.subplots(2, len(examples), figsize=(1.6 * len(examples), 3.4), squeeze=False)
  for column, example in enumerate(examples):
    axes[0, column].imshow(_native_photo(example))
    axes[0, column].set_title(example.image_id.replace('synthetic_', '#'), fontsize=7)
    axes[1, column].imshow(example.truth, cmap='gray', vmin=0, vmax=1)
    for row in (0, 1):
      axes[row, column].set_xticks([])
      axes[row, column].set_yticks([])
  axes[0, 0].set_ylabel('photo')
  axes[1, 0].set_ylabel('lesion mask')
  many = len(examples) != 1
  fig.suptitle(f'{len(examples)} {split} image{"s" * many} of {config.data.source!r} data and '
               f'{"their masks" if many else "its mask"}')
  return _save(fig, out)


def pick_images(workdir: str, which: str, count: int, checkpoint: str = 'final') -> list[str]:
  """Image ids by name ('ID,ID'), or the `count` best / median / worst by Jaccard in the run's
  per-image validation CSV of `checkpoint`."""
  if which not in ('best', 'median', 'worst'):
    return which.split(',')
  summary = results.read_run_summary(workdir)
  entry = summary.get(checkpoint)
  if not entry or not entry.get('per_image_csv'):
    raise ValueError(f'{workdir}: no {checkpoint} per-image validation to pick images from.')
  scores = sorted(results.read_per_image_csv(os.path.join(workdir, entry['per_image_csv'])),
                  key=lambda s: (s.metrics()['jaccard'], s.image_id))
  if which == 'best':
    return [s.image_id for s in scores[::-1][:count]]
  if which == 'worst':
    return [s.image_id for s in scores[:count]]
  middle = max(0, len(scores) // 2 - count // 2)
  return [s.image_id for s in scores[middle:middle + count]]


def predictions(workdir: str, out: str, *, images: str = 'median', count: int = 4,
                checkpoint: str = 'final', split: str = 'val') -> str:
  """Per image: the photo with both outlines, the truth, the prediction, and its Jaccard."""
  from unet_jax import evaluation, inference, run_config

  config = run_config.load(workdir)
  ids = pick_images(workdir, images, count, checkpoint)
  # Read first: an id not of the split is refused before the checkpoint is loaded.
  examples = {e.image_id: e for e in evaluation.iter_split(config, split, ids)}
  settings = inference.settings(config, workdir)
  predictor = inference.load_predictor(workdir, checkpoint=checkpoint, tta=settings.tta)
  plt = _pyplot()
  # Fixed inches for the title above and the legend below, whatever the number of rows.
  height = 2.1 * len(ids) + 0.9
  fig, axes = plt.subplots(len(ids), 3, figsize=(6.3, height), squeeze=False)
  for row, ident in enumerate(ids):
    example = examples[ident]
    mask = settings.mask(predictor.predict(example.image, example.native_shape))
    jaccard = native_scoring.score_image(ident, example.truth, mask).metrics()['jaccard']
    axes[row, 0].imshow(_overlay(_native_photo(example), example.truth, mask))
    axes[row, 0].set_ylabel(f'{ident.replace("synthetic_", "#")}\nJaccard {jaccard:.3f}' +
                            ('\n(< 0.65: scores 0)' if jaccard < THRESHOLD else ''), fontsize=8)
    axes[row, 1].imshow(example.truth, cmap='gray', vmin=0, vmax=1)
    axes[row, 2].imshow(mask, cmap='gray', vmin=0, vmax=1)
    for column in range(3):
      axes[row, column].set_xticks([])
      axes[row, column].set_yticks([])
  axes[0, 0].set_title('photo, both outlines')
  axes[0, 1].set_title('truth (generated mask)' if config.data.source == 'synthetic'
                      else 'truth (expert mask)')
  axes[0, 2].set_title('prediction')
  from matplotlib.lines import Line2D

  fig.legend(handles=[Line2D([], [], color=TRUTH_COLOUR, lw=2, label='truth outline'),
                      Line2D([], [], color=PREDICTION_COLOUR, lw=2, label='prediction outline')],
             loc='lower center', ncol=2, frameon=False, bbox_to_anchor=(0.5, 0.0))
  fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.45 / height))
  fig.suptitle(f'{images} validation images, checkpoint {checkpoint!r} (step {predictor.step})')
  return _save(fig, out)


# ---------------------------------------------------------------------------------------------
# Runs and groups.


def _groups(paths: Sequence[str], group_by: Sequence[str] | None, metric: str | None,
            checkpoint: str = 'final', evaluation: str | None = None) -> dict:
  """{group label: [RunScores]} of the runs under `paths` that have a `checkpoint` validation
  (or an `evaluate` output in their folder `evaluation`, grouped as `compare --evaluation` groups
  them), or, with no `metric` (the curves, read from the runs' logs), of every run, finished or
  not."""
  from unet_jax import compare

  if metric is None:
    return compare.group_runs([compare.load_run_config(w) for w in compare.find_runs(paths)],
                              group_by)[0]
  runs = [r for r in (compare.load_run(w, checkpoint, [metric], evaluation)
                      for w in compare.find_runs(paths)) if r]
  if not runs:
    what = f'an evaluation in {evaluation}/' if evaluation else f'a {checkpoint} validation'
    raise ValueError(f'No run with {what} under {list(paths)}.')
  return compare.group_runs(runs, group_by)[0]


def _long_values(path: str, metric: str) -> dict[str, dict[str, float]]:
  """{group: {image: value averaged over the group's runs}} from compare's long table."""
  values = collections.defaultdict(lambda: collections.defaultdict(list))
  with open(path, newline='', encoding='utf-8') as f:
    for row in csv.DictReader(f):
      if row['metric'] == metric:
        values[row['group']][row['image']].append(float(row['value']))
  if not values:
    raise ValueError(f'{path} has no {metric!r} rows.')
  return {g: {i: float(np.mean(v)) for i, v in images.items()} for g, images in values.items()}


def per_image(paths: Sequence[str], long: str | None, metric: str,
              group_by: Sequence[str] | None = None, checkpoint: str = 'final',
              evaluation: str | None = None) -> dict[str, dict[str, float]]:
  if long:
    return _long_values(long, metric)
  from unet_jax import compare

  return {label: compare.image_means(members, metric)
          for label, members in _groups(paths, group_by, metric, checkpoint, evaluation).items()}


def curves(groups: dict[str, Sequence[str]], out: str, *, metric: str = 'val_threshold_jaccard',
           title: str = '') -> str:
  """The mean of `metric` over each group's runs ({label: workdirs}) against the step, with a
  band from the group's lowest to its highest run."""
  from unet_jax import metric_logging

  logged = {workdir: metric_logging.read_jsonl(os.path.join(workdir, metric_logging.JSONL))
            for members in groups.values() for workdir in members}
  if not any(metric in row for rows in logged.values() for row in rows):
    names = sorted({k for rows in logged.values() for row in rows for k in row} - {'step'})
    raise ValueError(f'--metric {metric!r}: no run logged it in {metric_logging.JSONL}; '
                     f'they logged {names}.')
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.8, 3.0))
  for colour, (label, members) in zip(COLOURS, groups.items(), strict=False):
    series = [{r['step']: r[metric] for r in logged[workdir] if metric in r}
              for workdir in members]
    steps = sorted(set.intersection(*(set(s) for s in series)))
    if not steps:
      continue
    values = np.array([[s[step] for step in steps] for s in series])
    ax.plot(steps, values.mean(0), color=colour, lw=1.6, marker='o' if len(steps) == 1 else None,
            ms=4, label=f'{label} ({len(members)} run{"s" if len(members) > 1 else ""})')
    if len(members) > 1:
      ax.fill_between(steps, values.min(0), values.max(0), color=colour, alpha=0.2, lw=0)
  ax.set_xlabel('training step')
  ax.set_ylabel(metric.replace('val_', 'validation ').replace('_', ' '))
  ax.grid(alpha=0.3)
  _legend(ax, 'best')
  ax.set_title(title or 'validation during training: mean over runs, band: lowest to highest')
  return _save(fig, out)


def distribution(values: dict[str, dict[str, float]], out: str, *, metric: str = 'jaccard',
                 title: str = '') -> str:
  """Per-image values by group: box plus points, the 0.65 line, each group's failure rate."""
  plt = _pyplot()
  labels = list(values)
  # A label of several fields ('loss=bce, tta=flips') a line each, its column as wide as its
  # longest line (7 pt text: about 0.06 inch a character), so that neighbours do not overlap.
  lines = [g.split(', ') for g in labels]
  column = max(1.3, 0.06 * max(len(line) for group in lines for line in group))
  fig, ax = plt.subplots(figsize=(max(3.2, column * len(labels) + 1.5), 3.2 + 0.1 * max(
      len(group) for group in lines)))
  data = [np.array(list(values[g].values())) for g in labels]
  ax.boxplot(data, widths=0.5, showfliers=False, medianprops={'color': '#000000'})
  rng = np.random.default_rng(0)
  for k, (colour, points) in enumerate(zip(COLOURS, data, strict=False), start=1):
    ax.scatter(k + rng.uniform(-0.15, 0.15, len(points)), points, s=9, color=colour, alpha=0.7,
               lw=0, zorder=3)
  ax.axhline(THRESHOLD, color=COLOURS[3], ls='--', lw=1)
  # In the right margin, beside the line: inside the axes it would cover points and boxes.
  ax.annotate('0.65: below it,\nan image\nscores 0', xy=(1, THRESHOLD),
              xycoords=('axes fraction', 'data'), xytext=(4, 0), textcoords='offset points',
              color=COLOURS[3], fontsize=7, va='center', ha='left')
  ax.set_xticks(range(1, len(labels) + 1),
                ['\n'.join(group) + f'\nfailure {np.mean(d < THRESHOLD):.0%} of {len(d)}'
                 for group, d in zip(lines, data, strict=True)], fontsize=7)
  ax.set_ylabel(f'per-image {metric.replace("_", " ")}')
  ax.set_ylim(-0.02, 1.02)
  ax.grid(axis='y', alpha=0.3)
  ax.set_title(title or f'per-image {metric.replace("_", " ")} by group')
  return _save(fig, out)


def profile(values: dict[str, dict[str, float]], out: str, *, metric: str = 'jaccard',
            title: str = '') -> str:
  """The fraction of images with value >= t, for t in [0, 1], a line per group."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.8, 3.0))
  grid = np.linspace(0, 1, 201)
  for colour, (label, images) in zip(COLOURS, values.items(), strict=False):
    points = np.array(list(images.values()))
    ax.plot(grid, [(points >= t).mean() for t in grid], color=colour, lw=1.6,
            label=f'{label} ({len(points)} images)')
  ax.axvline(THRESHOLD, color='#777777', ls='--', lw=1)
  ax.set_xlabel(f'{metric.replace("_", " ")} threshold t')
  ax.set_ylabel('fraction of images >= t')
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.grid(alpha=0.3)
  _legend(ax, 'lower left')
  ax.set_title(title or 'performance profile')
  return _save(fig, out)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m unet_jax.figures',
                                   description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('kind', choices=('samples', 'predictions', 'curves', 'distribution',
                                       'profile'))
  parser.add_argument('paths', nargs='*', help='A run workdir (samples, predictions), or runs '
                      'and folders of runs (the others).')
  parser.add_argument('--out', required=True, help='The figure: FILE.png or FILE.pdf.')
  parser.add_argument('--split', default='val',
                      help="samples, predictions: the run's split the images come from.")
  parser.add_argument('--count', type=int, default=None, help='Images shown (6 / 4).')
  parser.add_argument('--images', default='median',
                      help="predictions: 'best', 'median', 'worst' or ids, comma-separated.")
  parser.add_argument('--checkpoint', default=None, choices=('final', 'best'),
                      help='predictions, distribution, profile: the validation of the final '
                      '(the default) or of the best checkpoint (best was picked on that split: '
                      'optimistic).')
  parser.add_argument('--evaluation', default=None,
                      help="distribution, profile: each run's `evaluate` output in this folder "
                      'of the run (e.g. eval_val: its inference settings applied) instead of its '
                      'training validation, grouped as `compare --evaluation` groups them.')
  parser.add_argument('--metric', default=None, help="curves: a metrics.jsonl scalar (default "
                      "val_threshold_jaccard); distribution, profile: a per-image metric "
                      "(default jaccard).")
  parser.add_argument('--group-by', default='', help='Config fields to group runs by.')
  parser.add_argument('--long', default=None, help="compare's results_long.csv instead of runs.")
  parser.add_argument('--title', default='', help="The figure's title (default: what it shows).")
  args = parser.parse_args(argv)
  if os.path.isdir(args.out):
    parser.error(f'--out {args.out!r} is a folder: give the figure\'s file, FILE.png or FILE.pdf.')
  cli.check_can_be_file(args.out, '--out')
  group_by = [f for f in args.group_by.split(',') if f] or None
  if args.evaluation and (args.checkpoint or args.long or args.kind not in ('distribution',
                                                                           'profile')):
    parser.error('--evaluation is for distribution and profile from runs: not with '
                 '--checkpoint (the evaluation scored its own) or --long.')
  args.checkpoint = args.checkpoint or 'final'
  if (args.kind in ('distribution', 'profile') and args.metric
      and args.metric not in native_scoring.METRICS):
    parser.error(f'--metric {args.metric!r}: a per-image metric, one of {native_scoring.METRICS}.')
  if args.kind in ('samples', 'predictions') and len(args.paths) != 1:
    parser.error(f'{args.kind} takes one run workdir.')
  if args.kind == 'samples':
    out = samples(args.paths[0], args.out, split=args.split, count=args.count or 6)
  elif args.kind == 'predictions':
    out = predictions(args.paths[0], args.out, images=args.images, count=args.count or 4,
                      checkpoint=args.checkpoint, split=args.split)
  elif args.kind == 'curves':
    groups = {label: [r.workdir for r in runs]
              for label, runs in _groups(args.paths, group_by, None).items()}
    out = curves(groups, args.out, metric=args.metric or 'val_threshold_jaccard',
                 title=args.title)
  else:
    if not (args.paths or args.long):
      parser.error(f'{args.kind} needs runs or --long.')
    if args.long and not os.path.isfile(args.long):
      parser.error(f"--long {args.long!r}: no such file (compare --out DIR writes "
                   'DIR/results_long.csv).')
    metric = args.metric or 'jaccard'
    values = per_image(args.paths, args.long, metric, group_by, args.checkpoint,
                       args.evaluation)
    draw = distribution if args.kind == 'distribution' else profile
    title = args.title
    if not title and args.checkpoint == 'best' and not args.long:
      title = (f'per-image {metric.replace("_", " ")}, best checkpoints (picked on these '
               'images: optimistic)')
    out = draw(values, args.out, metric=metric, title=title)
  print(f'Wrote {out}.')
  return 0


if __name__ == '__main__':
  cli.run(main)
