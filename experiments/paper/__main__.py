r"""The paper as code: every table and figure of the report from one command.

  python -m experiments.paper --scale smoke|cpu|full --root DIR --out DIR [--parallel N]
      [--dry-run | --report-only] [--retry-failed] [--executor slurm --slurm-partition P
      --slurm-time MIN --slurm-gpus-per-node G ... [--wait]]

Launches the runs the report needs under --root (resuming what exists: a finished run is not
trained again), evaluates them with their inference settings, then regenerates every table and
figure under --out and writes --out/report.md, which embeds them with their numbers, the
commands that made them, every run's size, where the runs trained (devices, CPU, packages) and
the folds and images behind each number. What is
declared is in experiments/paper/tables.py; what each scale runs in experiments/paper/scales.py.
--dry-run prints the runs it would launch, and launches and writes nothing.

The runs go where `python -m unet_jax.sweep launch` sends them, with the same options: here
(--parallel at once), or to SLURM (--executor slurm, one job per run), in which case the command
submits them and ends; run it again once they have ended (`python -m unet_jax.sweep status
--root DIR/table1`, and DIR/ablation, show where they are; jobs SLURM still holds are not
submitted twice). It then submits one more job, with the same options (a GPU), that evaluates
the runs (the Table-1 runs on their validation folds at native resolution, with test-time
augmentation: slow on a CPU) and writes the report (this command with --report-only; recorded
in DIR/evaluation_job.json, its output in DIR/slurm/<job>/), and ends again; run it once more
after that job has ended: it writes the report from the evaluations, here. --wait waits for
each batch of jobs instead of ending. --report-only launches and submits nothing: it evaluates
what is not evaluated yet here (on a GPU node, e.g. under `srun --gpus=1`, at the full scale)
and writes the report.

Exit status: 0 the report is written; 1 an error, or runs (or the evaluation job) that failed
(named, with their output; --retry-failed launches them again); 75 runs or the evaluation job
not ended yet (submitted or queued on SLURM, being trained by another process, or stopped by a
signal): run the same command again later. SIGTERM or SIGINT stops the runs being trained here
(each checkpoints) and the command: nothing more is launched.
"""

import argparse
import datetime
import os
import shlex
import sys

from experiments.paper import scales, tables
from unet_jax import (
  cli,
  compare,
  figures,
  local_launcher,
  results,
  slurm,
  slurm_launcher,
  sweep,
  sweep_runs,
)


def launch(root: str, runs, args, slots=None) -> dict:
  """Launches (or resumes, or submits) `runs` under `root` (local runs on `slots`: see
  `local_launcher.local_slots`); returns {name: state}, 'submitted' or 'busy' for runs that are
  SLURM's or another process's now."""
  with sweep.launcher_lock(root, f'python -m unet_jax.sweep status --root {root}', args.dry_run):
    return _launch(root, runs, args, slots)


def failure_line(root: str, name: str) -> str:
  """'table1/NAME: the last line of its error (output: its log)' for a failed run."""
  part, run = name.split('/', 1)
  entry = sweep_runs.read_manifest(os.path.join(root, part))['runs'][run]
  return f'{part}/' + sweep_runs.failure_line(os.path.join(root, part), run, entry,
                                              entry.get('error'))


def _launch(root: str, runs, args, slots=None) -> dict:
  to_launch, skipped, busy, manifest = sweep.plan(root, runs, retry_failed=args.retry_failed,
                                                  label='experiments.paper',
                                                  write=not args.dry_run)
  print(f'{root}: {len(runs)} runs, {len(to_launch)} to launch, {len(skipped)} done or failed'
        + (f'; {sweep.busy_line(busy)}' if busy else '.'), flush=True)
  if args.dry_run:
    for run in to_launch:
      print('  ' + shlex.join(run.command(os.path.join(root, run.name))))
    return {}
  states = {name: manifest['runs'][name]['state'] for name in skipped}  # Finished or failed.
  states.update({name: 'busy' for name in busy})
  if to_launch:
    ended = sweep.run_or_submit(root, to_launch, manifest, args, slots)
    for run in to_launch:  # A run a signal kept from starting is in no `ended`: 'pending'.
      states[run.name] = 'submitted' if ended is None else ended.get(
          run.name, sweep_runs.run_state(root, run.name))
  return states


def evaluations_to_do(root: str, scale: scales.Scale) -> list[tuple[str, dict]]:
  """(workdir, evaluate_run's arguments) of the evaluations not done yet: each Table-1 run scored
  with its own inference settings ('eval_val'), and our recipe's runs of the ablation folds with
  TTA alone ('eval_val_tta')."""
  todo = []
  for run in tables.table1_runs(scale):
    workdir = os.path.join(root, 'table1', run.name)
    if not os.path.exists(os.path.join(workdir, 'eval_val', 'summary.json')):
      todo.append((workdir, {}))
    tta_only = os.path.join(workdir, 'eval_val_tta')
    if (run.name.startswith('ours') and run.overrides['data.fold'] in scale.ablation_folds
        and not os.path.exists(os.path.join(tta_only, 'summary.json'))):
      todo.append((workdir, {'largest_component': False, 'fill_holes': False,
                             'output_dir': tta_only}))
  return todo


def evaluations(root: str, scale: scales.Scale) -> None:
  """Does `evaluations_to_do` here, one after the other (each written when it ends: a command
  stopped halfway keeps those done)."""
  todo = evaluations_to_do(root, scale)
  if todo:  # Imported here: it imports TensorFlow (seconds), which launching does not need.
    from unet_jax import evaluate
  for k, (workdir, arguments) in enumerate(todo, 1):
    where = arguments.get('output_dir', os.path.join(workdir, 'eval_val'))
    print(f'Evaluating {k}/{len(todo)}: {os.path.relpath(where, root)}', flush=True)
    evaluate.evaluate_run(workdir, **arguments)


EVALUATION_JOB = 'evaluation_job.json'  # Under --root: the SLURM job that evaluates the runs.


def evaluation_job(root: str, out: str, scale: scales.Scale, args) -> int | None:
  """With --executor slurm, the evaluations go to one SLURM job (with the runs' options: a GPU)
  that runs this command with --report-only. Returns the exit status to end with: 75 while the
  job is queued or running (submitted now, or by an earlier command: never twice), 1 if SLURM
  says it failed (its log named; --retry-failed submits it again); None once it has ended
  (with --wait: waited for) and the evaluations are done."""
  record_path = os.path.join(root, EVALUATION_JOB)
  record = results.read_json(record_path) if os.path.exists(record_path) else {}
  job_id = record.get('job_id') if record.get('cluster') == 'slurm' else None
  queue = slurm.Queue()
  state = queue.state(job_id) if job_id else None
  if state:
    print(f'The evaluation job (SLURM job {job_id}) is {state.lower()}: run the same command '
          'again once it has ended.', file=sys.stderr)
    return sweep_runs.STOPPED_STATUS
  if state == '' and not args.retry_failed and (
      error := slurm_launcher.failed_job_error(root, job_id, queue)):
    print(f'The evaluation job failed: {sweep_runs.last_line(error)} (output: '
          f'{slurm.job_log(root, job_id)}); fix the cause and run the same command with '
          '--retry-failed.', file=sys.stderr)
    return 1
  if job_id and state is None:
    print(f'experiments.paper: cannot ask SLURM (squeue) whether the evaluation job {job_id} is '
          'still queued; submitting it again.', file=sys.stderr, flush=True)
  command = [sys.executable, '-m', 'experiments.paper', '--scale', args.scale, '--root', root,
             '--out', out, '--report-only']
  executor = slurm_launcher.slurm_executor(root, args, name='paper-evaluation', nodes=1)
  job = executor.submit(slurm.TrainingJob(command, cwd=scales.REPO,
                                          env_changes=slurm_launcher.job_env_changes()))
  results.write_json(record_path, {'job_id': str(job.job_id), 'cluster': executor.cluster,
                                   'command': command})
  print(f'Submitted the evaluation job {job.job_id} (it evaluates the finished runs and writes '
        f'the report; its output: {slurm.job_log(root, str(job.job_id))}).', flush=True)
  if not args.wait:
    print('Run the same command again once it has ended.', flush=True)
    return sweep_runs.STOPPED_STATUS
  slurm_launcher.wait_for([job], label='experiments.paper')
  if evaluations_to_do(root, scale):
    print(f'The evaluation job {job.job_id} ended without evaluating every run (output: '
          f'{slurm.job_log(root, str(job.job_id))}).', file=sys.stderr)
    return 1
  return None


def _load(workdirs, evaluation):
  runs = [compare.load_run(w, 'final', tables.METRICS, evaluation) for w in workdirs]
  missing = [w for w, r in zip(workdirs, runs, strict=True) if r is None]
  if missing:
    raise RuntimeError(f'No finished validation in {missing}; run the command again.')
  return runs


def table1(root: str, scale: scales.Scale) -> list[dict]:
  folder = os.path.join(root, 'table1')
  groups = {
    "seed's recipe": _load([os.path.join(folder, f'seed-fold={f}') for f in scale.table1_folds],
                           'eval_val'),
    'our recipe': _load([os.path.join(folder, f'ours-fold={f}') for f in scale.table1_folds],
                        'eval_val'),
  }
  return compare.compare_groups(groups, tables.METRICS, "seed's recipe"), groups


def table2(root: str, scale: scales.Scale) -> list[dict]:
  """Each step against the one before, on the same images; Holm over the steps, per metric."""
  steps = tables.ablation_steps(scale, root)
  loaded = [_load(step.workdirs, step.evaluation) for step in steps]
  rows = []
  for k in range(len(steps)):
    groups = {steps[k].label: loaded[k]}
    if k:
      groups = {steps[k - 1].label: loaded[k - 1], **groups}
    base = steps[k - 1].label if k else steps[k].label
    step_rows = [r for r in compare.compare_groups(groups, tables.METRICS, base)
                 if r['group'] == steps[k].label]
    rows += step_rows
  for metric in tables.METRICS:
    compared = [r for r in rows if r['metric'] == metric and 'p' in r]
    for row, adjusted in zip(compared, compare.holm([r['p'] for r in compared]), strict=True):
      row['p_holm'] = adjusted
  return rows


def _fmt(value, digits=4):
  return 'n/a' if value != value else f'{value:.{digits}f}'


def table_markdown(rows, *, previous: bool) -> str:
  vs = 'vs the row above' if previous else "vs the seed's recipe"
  header = ['', 'runs', 'images', 'mean ± std (runs)', '95% CI (images)', f'Δ {vs} [95% CI]',
            'p (Wilcoxon; Holm)', 'better / worse']
  lines = []
  for metric in tables.METRICS:
    lines += [f'**{metric.replace("_", " ")}**', '', '| ' + ' | '.join(header) + ' |',
              '|' + '---|' * len(header)]
    for r in (r for r in rows if r['metric'] == metric):
      cells = [r['group'], str(r['runs']), str(r['images']),
               f"{_fmt(r['mean'])} ± {_fmt(r['std'])}",
               f"[{_fmt(r['ci_images'][0])}, {_fmt(r['ci_images'][1])}]"]
      if 'p' in r:
        cells += [f"{r['diff']:+.4f} [{r['diff_ci'][0]:+.4f}, {r['diff_ci'][1]:+.4f}]",
                  f"{_fmt(r['p'], 3)}; {_fmt(r['p_holm'], 3)}",
                  f"{r['better']} / {r['worse']} of {r['paired_images']}"]
      else:
        cells += ['—', '—', '—']
      lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
  return '\n'.join(lines)


def draw(root: str, out: str, scale: scales.Scale, groups: dict) -> list[str]:
  folder = os.path.join(out, 'figures')
  ours0 = os.path.join(root, 'table1', f'ours-fold={scale.table1_folds[0]}')
  values = {label: compare.image_means(runs, 'jaccard') for label, runs in groups.items()}
  made = [
    figures.samples(ours0, os.path.join(folder, 'samples.png'), count=6),
    figures.predictions(ours0, os.path.join(folder, 'predictions.png'), images='median',
                        count=3),
    figures.curves({label: [r.workdir for r in runs] for label, runs in groups.items()},
                   os.path.join(folder, 'curves.png')),
    figures.distribution(values, os.path.join(folder, 'distribution.png')),
    figures.profile(values, os.path.join(folder, 'profile.png')),
  ]
  return [os.path.relpath(p, out) for p in made]


def run_sizes(root: str) -> list[str]:
  """A line per run: its config's size and its training time, from its summary."""
  lines = []
  for folder in ('table1', 'ablation'):
    for name in sorted(os.listdir(os.path.join(root, folder))):
      summary = results.read_run_summary(os.path.join(root, folder, name))
      if not summary:
        continue
      c = summary['config']
      lines.append(
        f"| {folder}/{name} | {c['data']['image_size']} px, depth {c['model']['depth']}, width "
        f"{c['model']['base_width']}, {summary['num_params']:,} params | {c['num_train_steps']} "
        f"steps of {c['batch_size']} | {summary['wall_time_s'] / 60:.1f} min |")
  return lines


def run_environments(root: str) -> list[str]:
  """A table line per environment the runs trained in (from their summaries: devices, CPU,
  packages), with how many runs trained there: what a reader needs to repeat the numbers."""
  where = {}
  for folder in ('table1', 'ablation'):
    for name in sorted(os.listdir(os.path.join(root, folder))):
      summary = results.read_run_summary(os.path.join(root, folder, name))
      if not summary:
        continue
      for env in summary.get('environments') or [summary]:
        d, v = env['devices'], env['versions']
        cpu = env.get('host', {})
        key = (f"{d['count']} x {d['kind']} ({d['backend']}), {d['processes']} process(es)",
               f"{cpu.get('cpu', '?')}, usable cores: {cpu.get('usable_cores', '?')}",
               ', '.join(f'{p} {v[p]}' for p in ('python', 'jax', 'jaxlib', 'flax', 'optax',
                                                    'tensorflow-cpu', 'tensorflow') if p in v))
        where.setdefault(key, set()).add(f'{folder}/{name}')
  return [f'| {devices} | {cpu} | {packages} | {len(runs)} |'
          for (devices, cpu, packages), runs in where.items()]


def _shown(overrides: dict) -> dict:
  """The overrides as the report shows them: paths relative to the repository, so that a
  committed report names no path of the machine that wrote it."""
  return {k: os.path.relpath(v, scales.REPO) if isinstance(v, str) and os.path.isabs(v) else v
          for k, v in overrides.items()}


def _fewer(scale: scales.Scale) -> str:
  if len(scale.ablation_folds) < len(scale.table1_folds):
    return f' (Table 1 uses {len(scale.table1_folds)}: fewer runs at this scale)'
  return ''


def report(out: str, root: str, scale: scales.Scale, rows1, rows2, made, command) -> str:
  ours = {r['metric']: r for r in rows1 if r['group'] == 'our recipe'}
  seed = {r['metric']: r for r in rows1 if r['group'] != 'our recipe'}
  captions = dict(tables.FIGURES)
  text = [
    f'# {scale.name}-scale report: the seed recipe against ours',
    '',
    f'Regenerated by `{command}` on {datetime.date.today().isoformat()} (every number below comes '
    f'from a file under the run root that this command wrote or read).',
    '',
    f'Data: {scale.data}. Our recipe: `{scale.ours}` with {_shown(scale.common)}; the seed '
    "recipe: ours with the seed notebook's choices (`configs/seed_cpu.py: SEED_CHOICES`).",
    '',
    '## Table 1: the seed recipe against ours',
    '',
    f'{len(scale.table1_folds)}-fold cross-validation (folds {list(scale.table1_folds)} of 5; '
    'each number pools the validation folds: every image scored once per recipe, at native '
    'resolution, as the ISIC challenge scores; each recipe with its own inference settings). '
    f"Threshold Jaccard: {ours['threshold_jaccard']['mean']:.4f} for ours against "
    f"{seed['threshold_jaccard']['mean']:.4f} for the seed's recipe "
    f"({ours['threshold_jaccard']['diff']:+.4f}, 95% CI "
    f"[{ours['threshold_jaccard']['diff_ci'][0]:+.4f}, "
    f"{ours['threshold_jaccard']['diff_ci'][1]:+.4f}], Wilcoxon p = "
    f"{ours['threshold_jaccard']['p']:.3g}).",
    '',
    table_markdown(rows1, previous=False),
    '## Table 2: from the seed recipe to ours, one change at a time',
    '',
    f'Folds {list(scale.ablation_folds)} of 5{_fewer(scale)}. Each row adds one change to the '
    'row above and is compared with it on the same images; the last two rows change only '
    'inference (the same checkpoints). Rows without TTA or post-processing are scored with the '
    "training loop's own validation (threshold 0.5).",
    '',
    table_markdown(rows2, previous=True),
    '## Figures',
    '',
  ]
  for path in made:
    name = os.path.splitext(os.path.basename(path))[0]
    text += [f'![{captions[name]}]({path})', '', f'*{captions[name]}*', '']
  text += [
    '## What was selected on what',
    '',
    'The recipe (configs at this scale) and its inference settings were chosen on the same '
    'folds of the same data that these tables report, so the numbers of our recipe are '
    'optimistic; the threshold is fixed at 0.5 (not tuned). No other data was held out.',
    *(['', 'How the recipe was chosen, and on which folds: [selection.md](selection.md).']
      if os.path.exists(os.path.join(out, 'selection.md')) else []),
    '',
    '## Runs',
    '',
    '| run | size | steps | training wall time |',
    '|---|---|---|---|',
    *run_sizes(root),
    '',
    '## Where the runs trained',
    '',
    'From each run\'s summary.json (a run resumed elsewhere counts in each of its rows). On CPU, '
    'the same config and seed repeat to the last bit on the same CPU model, core count and '
    'packages; on GPU, with `config.deterministic`.',
    '',
    '| devices | CPU | packages | runs |',
    '|---|---|---|---|',
    *run_environments(root),
    '',
  ]
  path = os.path.join(out, 'report.md')
  results.write_atomic(path, '\n'.join(text))
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.paper',
                                   description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--scale', required=True, choices=sorted(scales.SCALES))
  parser.add_argument('--root', required=True, help='Folder for the runs (resumed).')
  parser.add_argument('--out', required=True, help='Folder for report.md and figures/.')
  modes = parser.add_mutually_exclusive_group()
  modes.add_argument('--dry-run', action='store_true', help='Print what would be launched.')
  modes.add_argument('--report-only', action='store_true',
                     help='Launch nothing: evaluate the finished runs here and write the report '
                     '(what the SLURM evaluation job runs; an error while any run is not '
                     'finished).')
  sweep.add_executor_arguments(parser, parallel_default=None)
  args = parser.parse_args(argv)
  scale = scales.SCALES[args.scale]
  if not args.report_only:  # It launches nothing: no runs at once to check against the GPUs.
    args.parallel = args.parallel or scale.parallel
  slots = sweep.check_executor_arguments(args)
  cli.check_can_be_folder(args.root, '--root')
  cli.check_can_be_folder(args.out, '--out')  # Before the runs, not after them.
  from unet_jax import compilation_cache

  # Evaluations and figures compile their forward passes here; a rerun loads them.
  compilation_cache.enable_compilation_cache('~/.cache/unet_jax/xla')
  root, out = os.path.abspath(args.root), os.path.abspath(args.out)
  parts = (('table1', tables.table1_runs(scale)), ('ablation', tables.ablation_runs(scale)))
  if args.report_only:
    unfinished = [f'{part}/{run.name}' for part, runs in parts for run in runs
                  if sweep_runs.run_state(os.path.join(root, part), run.name) != 'finished']
    if unfinished:
      raise ValueError(f'--report-only: {len(unfinished)} run(s) under {args.root} are not '
                       f'finished ({", ".join(unfinished[:3])}{", ..." * (len(unfinished) > 3)}'
                       '); run the command without --report-only to launch them.')
  else:
    code = _launch_all(root, parts, args, slots)
    if code is not None:
      return code
    if args.executor == 'slurm' and evaluations_to_do(root, scale):
      # Held while the job is asked about and submitted (and waited for): a second command
      # meanwhile is refused, so no two evaluation jobs.
      with sweep.launcher_lock(root, f'cat {os.path.join(args.root, EVALUATION_JOB)}'):
        code = evaluation_job(root, out, scale, args)
      if code is not None:
        return code
  evaluations(root, scale)
  rows1, groups = table1(root, scale)
  rows2 = table2(root, scale)
  made = draw(root, out, scale, groups)
  command = 'python -m experiments.paper ' + shlex.join(
      ['--scale', args.scale, '--root', os.path.relpath(root), '--out', os.path.relpath(out)])
  path = report(out, root, scale, rows1, rows2, made, command)
  print(f'Wrote {path} ({len(made)} figures).')
  return 0


def _launch_all(root: str, parts, args, slots=None) -> int | None:
  """Launches (or submits) every run of the report; the exit status to end with, None once
  every run has finished."""
  states = {}
  for i, (part, runs) in enumerate(parts):
    try:
      ended = launch(os.path.join(root, part), runs, args, slots)
    except local_launcher.Interrupted as stopped:  # The signal was to this command: launch no more.
      left = [name for name, _ in parts[i + 1:]]
      print(f'Stopped by {stopped.signal_name}: the runs of {part} stopped, each checkpointed'
            + (f', and {" and ".join(left)} not launched' if left else '')
            + '; run the same command again to go on.', file=sys.stderr)
      return sweep_runs.STOPPED_STATUS
    states.update({f'{part}/{name}': state for name, state in ended.items()})
  if args.dry_run:
    return 0
  failed = sorted(name for name, state in states.items() if state == 'failed')
  waiting = sorted(name for name, state in states.items()
                   if state not in ('finished', 'failed'))
  if failed:
    print(f'Failed: {len(failed)} run(s); the report needs them: fix the cause and run the same '
          'command with --retry-failed.\n' + '\n'.join(
              f'- {failure_line(root, name)}' for name in failed), file=sys.stderr)
    return 1
  if waiting:
    print(f'Not ended yet: {len(waiting)} run(s) ({", ".join(waiting)}); run the same command '
          f'again once they have (`python -m unet_jax.sweep status --root '
          f'{os.path.join(args.root, "table1")}`, and .../ablation, show where they are).',
          file=sys.stderr)
    return sweep_runs.STOPPED_STATUS
  return None


if __name__ == '__main__':
  cli.run(main)
