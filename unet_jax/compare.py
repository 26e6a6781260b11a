r"""Compare runs with honest statistics: per-image values, paired tests, confidence intervals.

  python -m unet_jax.compare DIR_OR_WORKDIR... [--baseline NAME] [--metric M[,M...]]
      [--group-by FIELD[,FIELD...]] [--checkpoint final|best] [--evaluation FOLDER] [--out DIR]
      [--bootstrap 2000]

Each argument is a run's workdir or a folder of them (a sweep's --root; files among them, as
`ROOT/*` brings, are skipped). Runs are read only
through their files (unet_jax/results.py): summary.json for the config, and the per-image CSV of
the validation of the final checkpoint (or the best one, --checkpoint best; it was selected on
that same split, so its numbers are optimistic, and the table says so).

Groups. Runs that differ only by seed or fold (config.seed, config.data.fold) form a group: the
seeds or folds of one configuration. How often a run logs, validates and checkpoints
(CADENCE_FIELDS: a resume may change them) does not split a group, nor does a field a run's
config lacks (added since it ran: it counts at its default) or a data path spelt otherwise
('/a/../data' is '/data'; a path under the current folder shows relative). --group-by FIELD,...
groups by those config fields instead. With --evaluation, how each run was evaluated counts as its
config does (EVALUATION_FIELDS: split, checkpoint, TTA, post-processing), but for the threshold,
which `evaluate --tune_threshold` tunes per run: a group scored at several is named under the
table.
A group's label (what --baseline takes) is its runs' name without the seed and fold parts,
where they share it and no other group does (a sweep's runs 'ours-fold=0' ... 'ours-fold=4':
'ours'), and otherwise the fields it differs by, 'loss=bce, lr=0.001' (always with --group-by).
The table shows, per group, only the config fields that differ between groups, then:

  runs              how many runs the group has (seeds x folds)
  images            how many distinct images its runs scored
  mean ± std        the metric's mean over the group's runs, each run's value its macro average
                    over its images (the challenge's number), and its standard deviation over
                    runs (n-1): the seed / fold variance
  95% CI (images)   a bootstrap confidence interval of the per-image mean: each image's value is
                    first averaged over the group's runs that scored it, then images are
                    resampled with replacement (--bootstrap times); the 2.5 and 97.5 percentiles
  95% CI (runs, images)  a two-level bootstrap: runs resampled, then each run's images; it
                    widens with the seed variance that the images-only interval hides
  vs baseline       paired on the images both groups scored (per-image values averaged over each
                    group's runs): the mean difference with its bootstrap 95% CI; the Wilcoxon
                    signed-rank test's two-sided p-value, Holm-corrected over the groups compared
                    with the baseline (per metric); and how many images are better / worse.
                    Groups that share no image (other folds) get no test: n/a.
                    Ties (a difference of exactly 0, common under the threshold Jaccard, where
                    every image below 0.65 scores 0 for both) are kept in the ranking and then
                    dropped (Pratt's method, scipy's zero_method='pratt'), so they neither count
                    as evidence nor shift the other ranks.

k-fold cross-validation is a comparison over folds: `sweep launch experiments/sweeps/cv5.py:CFG`
then `compare ROOT` gives nnU-Net's cross-validation summary, with confidence intervals.

Under the table: groups whose runs were thresholded at different values, groups whose numbers
are optimistic (with --evaluation; or runs started, config.init_from, from a run that trained
on their validation images), and runs resumed under other devices or packages. Runs started
from the runs of another cross-validation group by fold: from ROOT/pre-fold=0 ... as one.

Outputs (with --out): comparison.md and comparison.csv (the table, one row per group and metric),
and results_long.csv, every per-image value in one long table (run, group, fold, seed, image,
metric, value) that any other tool can read.
"""

import argparse
import collections
import csv
import dataclasses
import functools
import io
import json
import os
import sys
from collections.abc import Sequence

import numpy as np

from unet_jax import cli, config_files, native_scoring, results, run_config

SPLIT_FIELDS = ('seed', 'data.fold')  # What varies inside a group.
# How often a run logs, validates and checkpoints, and how it caches: what a resume may change
# (run_config.MAY_CHANGE_ON_RESUME) without changing what the run trains or its final scores.
# A run resumed with another of them still belongs with its seeds.
CADENCE_FIELDS = ('log_every_steps', 'checkpoint_every_steps', 'max_checkpoints_to_keep',
                  'profile_steps', 'data.cache', 'eval.every_steps', 'eval.pooled_every_steps',
                  'eval.batch_size', 'eval.metrics')
DEFAULT_METRICS = ('threshold_jaccard', 'jaccard', 'dice')
# With --evaluation: what an evaluation's scores depend on besides the run, which `evaluate`'s
# flags set (its summary's source). Runs scored otherwise (one with --tta dihedral, one without)
# are other groups, as runs of other configs are.
EVALUATION_FIELDS = ('split', 'images', 'truth', 'checkpoint', 'tta', 'largest_component',
                     'fill_holes', 'selected_on_this_split', 'threshold_tuned_on_this_split')
# A threshold tuned per run (`evaluate --tune_threshold`) differs between seeds by design: it
# splits no group, and a group scored at several is named under the table.
THRESHOLD_FIELD = 'evaluation.threshold'
INIT_FROM = run_config.INIT_FROM
# The parts of a run's name (`hyper.run_name` joins them with '-') that name its seed or fold.
_SPLIT_PARTS = ('seed=', 'fold=', 'data.fold=')


@dataclasses.dataclass
class RunScores:
  name: str
  workdir: str
  config: dict  # Flattened: {'optim.lr': ..., ...}
  step: int
  per_image: dict  # metric -> {image_id: value}
  environments: int = 1  # How many its summary lists: >1, resumed under other devices/packages.
  # How many of its validation images the run it started from trained on (config.init_from).
  source_saw: int = 0


@functools.cache
def _defaults() -> dict:
  """configs/default.py's {dotted field: value}."""
  from configs import default

  return run_config.leaves(json.loads(default.get_config().to_json_best_effort()))


def _flatten(tree: dict) -> dict:
  """{dotted field: value}, lists as tuples (a group's key must hash), as a config of today:
  - A field the run's config.json lacks (added since the run) at its default: the run ran as
    that default does (a resume says so too), and groups with today's runs that keep it.
  - Data paths normalized: '/a/../shared/x' and '/shared/x' are one folder, not two recipes.
  - The run a run started from (`init_from.workdir`) without its seed and fold: the fold-k run
    of a cross-validation that starts from the fold-k run of another belongs with its folds."""
  fields = {**_defaults(), **run_config.leaves(tree)}
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
  for field in run_config.DATA_PATH_FIELDS:
    if isinstance(path := fields.get(field), str) and path and '://' not in path:
      fields[field] = os.path.normpath(path)
  if fields.get(INIT_FROM):
    folder, name = os.path.split(fields[INIT_FROM])  # Normalized above.
    fields[INIT_FROM] = os.path.join(folder, '-'.join(
        f'{part.split("=")[0]}=*' if part.startswith(_SPLIT_PARTS) else part
        for part in name.split('-')))
  return fields


def find_runs(paths: Sequence[str]) -> list[str]:
  """Workdirs: each path that holds a summary.json, and each folder directly under the others.

  Files among the paths are skipped, so `ROOT/*` works as `ROOT` does although the shell adds a
  sweep's `sweep.json` to it; a path that does not exist is an error.
  """
  found = []
  for path in paths:
    if os.path.exists(os.path.join(path, results.RUN_SUMMARY)):
      found.append(path)
    elif os.path.isdir(path):
      found += sorted(os.path.join(path, n) for n in os.listdir(path)
                      if os.path.exists(os.path.join(path, n, results.RUN_SUMMARY)))
    elif not os.path.isfile(path):
      raise FileNotFoundError(f'{path!r} is neither a run workdir nor a folder of them.')
  if not found:
    raise FileNotFoundError(f'No run (a folder with summary.json) in {list(paths)}.')
  return found


def load_run(workdir: str, checkpoint: str, metrics: Sequence[str],
             evaluation: str | None = None) -> RunScores | None:
  """A run's per-image values at its final (or best) checkpoint; None if it has none yet.

  With `evaluation` (a folder of the run, e.g. 'eval_val'), the per-image CSV that `evaluate`
  wrote there instead: the run's checkpoint scored with its inference settings (TTA,
  post-processing), which the training loop's validation does not apply.
  """
  summary = results.read_run_summary(workdir)
  if evaluation:
    path = os.path.join(workdir, evaluation, 'summary.json')
    if not os.path.exists(path):
      return None
    source = results.read_json(path)['source']
    step, csv_path = source['step'], os.path.join(workdir, evaluation, 'per_image.csv')
    scored_by = {f'evaluation.{k}': source.get(k) for k in EVALUATION_FIELDS}
    scored_by[THRESHOLD_FIELD] = source.get('threshold')
  else:
    scored_by = {}
    entry = summary.get(checkpoint)
    if not entry or not entry.get('per_image_csv'):
      return None
    step, csv_path = entry['step'], os.path.join(workdir, entry['per_image_csv'])
  scores = results.read_per_image_csv(csv_path)
  per_image = {m: {s.image_id: s.metrics()[m] for s in scores} for m in metrics}
  return RunScores(os.path.basename(os.path.normpath(workdir)), workdir,
                   {**_flatten(summary['config']), **scored_by}, step, per_image,
                   len(summary.get('environments') or [None]),
                   (summary.get('init_from') or {}).get('val_images_in_source_training') or 0)


def load_run_config(workdir: str) -> RunScores:
  """A run with its config and no scores, to group runs whose logs are read, not their CSVs
  (a run still training has no final validation yet)."""
  summary = results.read_run_summary(workdir)
  return RunScores(os.path.basename(os.path.normpath(workdir)), workdir,
                   _flatten(summary['config']), summary.get('step', 0), {})


def group_runs(runs: Sequence[RunScores], group_by: Sequence[str] | None):
  """(groups {label: [runs]}, the fields shown as columns)."""
  if group_by:
    fields = list(group_by)
    known = set(runs[0].config)
    unknown = [f for f in fields if f not in known]
    if unknown:
      raise ValueError(f'--group-by {unknown[0]!r} is no config field of the runs ('
                       f'{config_files.unknown_field_hint(unknown[0], known)}).')
  else:
    keys = sorted({k for r in runs for k in r.config} - set(SPLIT_FIELDS) - set(CADENCE_FIELDS)
                  - {THRESHOLD_FIELD})
    fields = [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]
  grouped = collections.OrderedDict()
  for run in runs:
    key = tuple((f, run.config.get(f)) for f in fields)
    grouped.setdefault(key, []).append(run)
  names = None if group_by else _shared_names(list(grouped.values()))
  labels = collections.OrderedDict()
  for i, (key, members) in enumerate(grouped.items()):
    label = ', '.join(f'{f.split(".")[-1]}={v}' for f, v in key) or 'all runs'
    labels[names[i] if names else label] = members
  return labels, fields


def _shared_names(groups: Sequence[Sequence[RunScores]]) -> list[str] | None:
  """Each group's label from its runs' names, where the sweep named them: the name without its
  seed and fold parts ('ours-fold=3' -> 'ours'; `hyper.run_name` joins parts with '-'), when all
  of a group's runs share it and no two groups do. None otherwise: the groups are labelled by
  the fields that differ, which for runs a sweep named as `hyper.run_name` does are the same
  words, but for runs it was given names to (the paper's 'seed'/'ours', an ablation's steps)
  ran to every field the recipes change, repeated in the field columns beside them."""
  names = []
  for members in groups:
    stems = {'-'.join(p for p in r.name.split('-') if not p.startswith(_SPLIT_PARTS))
             for r in members}
    if len(stems) != 1 or not next(iter(stems)):
      return None
    names.append(stems.pop())
  return names if len(set(names)) == len(names) else None


# ---------------------------------------------------------------------------------------------
# Statistics.


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
  low, high = np.percentile(samples, [2.5, 97.5])
  return float(low), float(high)


def image_means(members: Sequence[RunScores], metric: str) -> dict[str, float]:
  """Each image's value averaged over the runs (seeds) that scored it."""
  values = collections.defaultdict(list)
  for run in members:
    for image, value in run.per_image[metric].items():
      values[image].append(value)
  return {image: float(np.mean(v)) for image, v in sorted(values.items())}


def bootstrap_images(values: np.ndarray, rng: np.random.Generator, n: int) -> tuple[float, float]:
  """95% CI of the mean of `values`, images resampled with replacement."""
  index = rng.integers(0, len(values), size=(n, len(values)))
  return _percentiles(values[index].mean(axis=1))


def bootstrap_runs_images(per_run: Sequence[np.ndarray], rng: np.random.Generator,
                          n: int) -> tuple[float, float]:
  """95% CI of the mean over runs of each run's image mean: runs resampled, then images."""
  stats = np.empty(n)
  for b in range(n):
    chosen = rng.integers(0, len(per_run), size=len(per_run))
    stats[b] = np.mean([per_run[i][rng.integers(0, len(per_run[i]), len(per_run[i]))].mean()
                        for i in chosen])
  return _percentiles(stats)


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm's step-down adjustment: p_(i) * (m - i), made monotone, capped at 1. A NaN (no test:
  the groups share no image) stays NaN and is not one of the m tests."""
  p_values = np.asarray(p_values, float)
  tested = np.flatnonzero(~np.isnan(p_values))
  adjusted = np.full(len(p_values), np.nan)
  running = 0.0
  for rank, i in enumerate(tested[np.argsort(p_values[tested])]):
    running = max(running, (len(tested) - rank) * p_values[i])
    adjusted[i] = min(1.0, running)
  return adjusted.tolist()


def paired(group: dict[str, float], baseline: dict[str, float], rng: np.random.Generator,
           n: int) -> dict:
  """Paired comparison on the images both scored (see the module docstring)."""
  from scipy import stats

  shared = sorted(set(group) & set(baseline))
  diff = np.array([group[i] - baseline[i] for i in shared])
  out = {'paired_images': len(shared), 'better': int((diff > 0).sum()),
         'worse': int((diff < 0).sum()), 'diff': float(diff.mean()) if len(diff) else float('nan')}
  out['diff_ci'] = bootstrap_images(diff, rng, n) if len(diff) else (float('nan'),) * 2
  if not len(diff):
    out['p'] = float('nan')  # Nothing to pair (other folds, other images): no test, not p = 1.
  elif np.any(diff != 0):
    out['p'] = float(stats.wilcoxon(diff, zero_method='pratt').pvalue)
  else:
    out['p'] = 1.0  # Identical on every image: no evidence of a difference.
  return out


def compare(runs: Sequence[RunScores], metrics: Sequence[str], *, baseline: str | None = None,
            group_by: Sequence[str] | None = None, bootstrap: int = 2000, seed: int = 0):
  """(rows, fields): one row per group and metric with every number of the table."""
  groups, fields = group_runs(runs, group_by)
  labels = list(groups)
  if baseline is None:
    base = labels[0]
  else:
    matches = [label for label, members in groups.items()
               if baseline == label or baseline in {r.name for r in members}]
    if not matches:
      raise ValueError(f'--baseline {baseline!r} names no group or run; groups: {labels}.')
    base = matches[0]
  return compare_groups(groups, metrics, base, fields=fields, bootstrap=bootstrap,
                        seed=seed), fields


def compare_groups(groups: dict[str, Sequence[RunScores]], metrics: Sequence[str], base: str, *,
                   fields: Sequence[str] = (), bootstrap: int = 2000, seed: int = 0) -> list[dict]:
  """The table's rows for groups given as {label: runs}, compared with the group `base`."""
  rows = []
  for metric in metrics:
    rng = np.random.default_rng(seed)
    base_images = image_means(groups[base], metric)
    metric_rows = []
    for label, members in groups.items():
      per_run = [np.array(list(r.per_image[metric].values())) for r in members]
      run_means = np.array([v.mean() for v in per_run])
      images = image_means(members, metric)
      row = {
        'group': label, 'metric': metric, 'runs': len(members), 'images': len(images),
        'run_names': ' '.join(r.name for r in members),
        'fields': {f: members[0].config.get(f) for f in fields},
        'mean': float(run_means.mean()),
        'std': float(run_means.std(ddof=1)) if len(members) > 1 else float('nan'),
        'ci_images': bootstrap_images(np.array(list(images.values())), rng, bootstrap),
        'ci_runs_images': bootstrap_runs_images(per_run, rng, bootstrap),
        'baseline': label == base,
      }
      if label != base:
        row.update(paired(images, base_images, rng, bootstrap))
      metric_rows.append(row)
    others = [r for r in metric_rows if not r['baseline']]
    for row, adjusted in zip(others, holm([r['p'] for r in others]), strict=True):
      row['p_holm'] = adjusted
    rows += metric_rows
  return rows


# ---------------------------------------------------------------------------------------------
# Output.


def _fmt(value, digits=4) -> str:
  if isinstance(value, float):
    if np.isnan(value):
      return 'n/a'
    if value and abs(value) < 10**-digits:
      return f'{value:.2g}'  # 1e-08, not 0.0000.
    return f'{value:.{digits}f}'
  return str(value)


def notes(groups: dict[str, Sequence[RunScores]]) -> str:
  """What the table must say of its runs ('' if nothing): a group whose runs were thresholded at
  different values; groups whose numbers are optimistic (their evaluation chose the checkpoint
  or tuned the threshold on the images it scored, or they started from a run that trained on
  them); runs resumed under other devices or packages (their numbers are right, but would not
  repeat to the last bit)."""
  lines = []
  started = [f'{r.name} ({r.source_saw})' for members in groups.values() for r in members
             if r.source_saw and r.config.get('evaluation.split', 'val') == 'val']
  if started:
    lines.append('Optimistic: these runs started from a run that trained on some of the '
                 f'validation images they are scored on (how many): {", ".join(started)}.')
  resumed = [r.name for members in groups.values() for r in members if r.environments > 1]
  if resumed:
    lines.append(f'Resumed under other devices or packages (their summary.json lists each under '
                 f"'environments'; they would not repeat to the last bit): {', '.join(resumed)}.")
  for label, members in groups.items():
    values = sorted({r.config[THRESHOLD_FIELD] for r in members if THRESHOLD_FIELD in r.config})
    if len(values) > 1:
      lines.append(f'The runs of {label!r} were thresholded at {", ".join(map(str, values))} '
                   '(each its tuned threshold, or evaluate --threshold).')
    why = [what for field, what in (
        ('evaluation.selected_on_this_split', 'the best checkpoint was selected'),
        ('evaluation.threshold_tuned_on_this_split', 'the threshold was tuned'))
           if any(r.config.get(field) for r in members)]
    if why:
      lines.append(f'Optimistic: in {label!r}, {" and ".join(why)} on the images scored.')
  return '\n'.join(lines)


def _shown(field: str, value) -> str:
  """A table's cell: a path (`run_config.DATA_PATH_FIELDS`, recorded absolute) under the current
  folder relative to it, so that a table committed from a repository names no one's machine."""
  if field in run_config.DATA_PATH_FIELDS and isinstance(value, str) and os.path.isabs(value):
    relative = os.path.relpath(value)
    if not relative.startswith('..'):
      return relative
  return _fmt(value)


def markdown(rows: Sequence[dict], fields: Sequence[str], checkpoint: str) -> str:
  out = []
  if checkpoint == 'best':
    out.append('Best checkpoints: selected on this validation split, so these numbers are '
               'optimistic.\n')
  for metric in dict.fromkeys(r['metric'] for r in rows):
    out.append(f'### {metric}\n')
    header = ['group', *fields, 'runs', 'images', 'mean ± std (runs)', '95% CI (images)',
              '95% CI (runs, images)', 'Δ vs baseline [95% CI]', 'p (Wilcoxon, Holm)',
              'better / worse']
    out.append('| ' + ' | '.join(header) + ' |')
    out.append('|' + '---|' * len(header))
    for r in (r for r in rows if r['metric'] == metric):
      cells = [r['group'] + (' (baseline)' if r['baseline'] else ''),
               *(_shown(f, r['fields'][f]) for f in fields), str(r['runs']), str(r['images']),
               f"{_fmt(r['mean'])} ± {_fmt(r['std'])}",
               f"[{_fmt(r['ci_images'][0])}, {_fmt(r['ci_images'][1])}]",
               f"[{_fmt(r['ci_runs_images'][0])}, {_fmt(r['ci_runs_images'][1])}]"]
      if r['baseline']:
        cells += ['—', '—', '—']
      elif not r['paired_images']:
        cells += ['n/a: no image scored by both', 'n/a', '0 / 0 of 0']
      else:
        cells += [f"{r['diff']:+.4f} [{r['diff_ci'][0]:+.4f}, {r['diff_ci'][1]:+.4f}]",
                  f"{_fmt(r['p'], 3)} ({_fmt(r['p_holm'], 3)})",
                  f"{r['better']} / {r['worse']} of {r['paired_images']}"]
      out.append('| ' + ' | '.join(cells) + ' |')
    out.append('')
  return '\n'.join(out)


def write_outputs(out_dir: str, runs: Sequence[RunScores], rows: Sequence[dict],
                  fields: Sequence[str], text: str) -> None:
  os.makedirs(out_dir, exist_ok=True)
  results.write_atomic(os.path.join(out_dir, 'comparison.md'), text + '\n')
  columns = ['group', *fields, 'metric', 'runs', 'images', 'mean', 'std', 'ci_images_low',
             'ci_images_high', 'ci_runs_images_low', 'ci_runs_images_high', 'baseline', 'diff',
             'diff_ci_low', 'diff_ci_high', 'p', 'p_holm', 'better', 'worse', 'paired_images',
             'run_names']
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator='\n')
  writer.writeheader()
  for r in rows:
    flat = {k: v for k, v in r.items() if k in columns}
    flat.update(r['fields'])
    flat['ci_images_low'], flat['ci_images_high'] = r['ci_images']
    flat['ci_runs_images_low'], flat['ci_runs_images_high'] = r['ci_runs_images']
    if 'diff_ci' in r:
      flat['diff_ci_low'], flat['diff_ci_high'] = r['diff_ci']
    writer.writerow(flat)
  results.write_atomic(os.path.join(out_dir, 'comparison.csv'), buffer.getvalue())
  results.write_atomic(os.path.join(out_dir, 'results_long.csv'), long_table(runs, rows))


def long_table(runs: Sequence[RunScores], rows: Sequence[dict]) -> str:
  """run, group, fold, seed, image, metric, value: one row per image, run and metric."""
  group_of = {name: r['group'] for r in rows for name in r['run_names'].split()}
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow(['run', 'group', 'fold', 'seed', 'image', 'metric', 'value'])
  for run in runs:
    for metric, values in run.per_image.items():
      for image, value in values.items():
        writer.writerow([run.name, group_of.get(run.name, ''), run.config.get('data.fold'),
                         run.config.get('seed'), image, metric, repr(value)])
  return buffer.getvalue()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m unet_jax.compare',
                                   description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 2)[2])
  parser.add_argument('paths', nargs='+', help='Run workdirs, or folders of them.')
  parser.add_argument('--baseline', help='The group (its label) or a run of it to compare '
                      'against; default: the first group.')
  parser.add_argument('--metric', default=','.join(DEFAULT_METRICS),
                      help=f'Metrics, comma-separated, from {native_scoring.METRICS}.')
  parser.add_argument('--group-by', default='',
                      help='Config fields to group by, e.g. loss,optim.lr; default: every field '
                      'but seed and fold.')
  parser.add_argument('--checkpoint', choices=('final', 'best'), default=None,
                      help="Whose training validation: 'final' (the default) or 'best'. With "
                      '--evaluation, the checkpoint is the one the evaluation scored.')
  parser.add_argument('--evaluation', default=None, help="Read each run's per-image CSV from "
                      'this folder of the run (e.g. eval_val, written by `evaluate --workdir`, '
                      "with the run's inference settings) instead of its training validation. "
                      'Runs evaluated otherwise (split, checkpoint, TTA, post-processing) are '
                      'other groups.')
  parser.add_argument('--out', help='Folder for comparison.md, comparison.csv, results_long.csv.')
  parser.add_argument('--bootstrap', type=int, default=2000, help='Bootstrap resamples.')
  args = parser.parse_args(argv)
  if args.out:
    cli.check_can_be_folder(args.out, '--out')
  if args.checkpoint and args.evaluation:
    parser.error(f'--checkpoint {args.checkpoint} with --evaluation {args.evaluation}: the '
                 'evaluation scored the checkpoint it was given (evaluate --checkpoint); give '
                 'one of the two.')
  args.checkpoint = args.checkpoint or 'final'
  if args.bootstrap < 1:
    parser.error(f'--bootstrap {args.bootstrap}: the number of resamples, 1 or more (2000 by '
                 'default).')
  metrics = [m for m in args.metric.split(',') if m]
  unknown = [m for m in metrics if m not in native_scoring.METRICS]
  if unknown:
    parser.error(f'--metric {unknown}: not among {native_scoring.METRICS}.')
  runs, skipped = [], []
  for workdir in find_runs(args.paths):
    run = load_run(workdir, args.checkpoint, metrics, args.evaluation)
    (runs if run else skipped).append(run or workdir)
  if skipped:
    what = (f'an evaluation in {args.evaluation}/ (`python -m unet_jax.evaluate --workdir RUN '
            f'--output RUN/{args.evaluation}` writes it)' if args.evaluation
            else f'a {args.checkpoint} validation yet')
    print(f'Skipped {len(skipped)} run(s) without {what}: '
          f'{", ".join(map(os.path.basename, skipped))}', file=sys.stderr)
  if not runs:
    print('No run to compare.', file=sys.stderr)
    return 1
  group_by = [f for f in args.group_by.split(',') if f] or None
  rows, fields = compare(runs, metrics, baseline=args.baseline, group_by=group_by,
                         bootstrap=args.bootstrap)
  text = markdown(rows, fields, args.checkpoint)
  said = notes(group_runs(runs, group_by)[0])
  if said:
    text += '\n' + said + '\n'
  print(text)
  if args.out:
    write_outputs(args.out, runs, rows, fields, text)
    print(f'Wrote {os.path.join(args.out, "comparison.md")}, comparison.csv, results_long.csv.')
  return 0


if __name__ == '__main__':
  cli.run(main)
