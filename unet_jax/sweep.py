r"""Launch a sweep of runs, locally or on SLURM, resume it, and see where it stands.

  python -m unet_jax.sweep launch SWEEP --root DIR [--parallel N] [--executor local|slurm]
      [--set KEY=VALUE ...] [--retry-failed] [--dry-run] [--slurm-partition P --slurm-time MIN
      --slurm-gpus-per-node G --slurm-cpus-per-task C --slurm-mem-gb M --slurm-nodes K
      --slurm-param KEY=VALUE --slurm-array] [--wait]
  python -m unet_jax.sweep status --root DIR
  python -m unet_jax.sweep cancel --root DIR     (its SLURM jobs: each run checkpoints and stops)

SWEEP is a sweep file with `get_sweep(arg)`, `experiments/sweeps/NAME.py[:ARG]` (the `file:arg`
form of ml_collections configs), or NAME alone for a shipped one. `get_sweep` returns
{'config': base config (a preset name or a file), 'overrides': {...} for every run (optional),
'runs': [{...}, ...]}, the runs built with `unet_jax.hyper` (product, zip_, chain), e.g.
"configs x seeds x folds" in one line. Each run's name comes from its own overrides
(`hyper.run_name`): short, readable, stable (or from a 'name' key in the run's dict). An
override that names no field of its run's base config is an error before anything starts,
naming the run, the field and the nearest real ones. --dry-run prints the runs' commands and
writes nothing (no folder, no sweep.json).

A run may start from another run of the same sweep (fine-tuning, progressive resizing: see
experiments/sweeps/progressive.py): its `init_from.workdir` is that run's name, e.g.
{'name': 'ft-fold=0', 'init_from.workdir': 'pre-fold=0'}, and means `DIR/pre-fold=0`. It starts
once that run has finished: locally the launcher waits for it (also while another process
trains it, one a killed launcher left running); on SLURM its job waits for the other's
(`--dependency=afterok`). If that run fails, it is not started (nor are the runs that
start from it) until the failed one is launched again with --retry-failed and finishes. Runs
that start from each other in a circle are an error at load.

`launch` gives every run a workdir `DIR/<name>` and keeps a manifest, `DIR/sweep.json` (each
run's name, overrides, a hash of them, state, error). It is idempotent: launched again, it skips
finished runs (their summary.json says so), resumes unfinished ones from their checkpoints, and
retries failed ones only with --retry-failed. A sweep file changed under an existing run name is
an error that names the run. A failing run is recorded with its error and never stops the
others. SIGTERM or SIGINT to the launcher stops its runs cleanly (each checkpoints; exit status
75) and launching again resumes them. One launcher per DIR (a second is refused), and one
training per run: a run another process still trains (one a killed launcher left running) is
reported, not started twice, and the launcher exits with status 75. `status` asks each run's lock
whether its training process is alive: a run recorded as running whose process is gone (killed,
its node lost) shows as 'interrupted' (launch again to resume it), one whose SLURM job is still
queued as 'pending (SLURM job N)'. Failed runs are listed under the table, each with the last
line of its error and where its whole output is (its log.txt, or its SLURM job's log).

Executors:
  local  N runs at once, each its own `python -m unet_jax.main` process, log in DIR/<name>/log.txt.
         On a GPU host each run gets its own GPUs (CUDA_VISIBLE_DEVICES: the host's GPUs split
         evenly over the N runs); otherwise the CPU cores are split: each run is pinned to its
         share (CPU affinity) and its thread pools sized to it. XLA_FLAGS' simulated device count
         (set by test suites) is not passed on. A progress line reports runs done, running,
         failed and an ETA (the time left of the runs that have trained, as `status` shows
         it, and the fresh ones at the mean duration of the runs that finished, over N slots).
  slurm  one SLURM job per run (or one job array: --slurm-array) through submitit, each job
         running the training command as a subprocess in the job's own environment
         (`unet_jax.slurm.TrainingJob`: only the command, its folder and a few environment
         changes are pickled). A run of several nodes is one process per node with all its
         GPUs, `--jax_distributed` finding the coordinator from SLURM's environment. Jobs get
         SIGUSR2 2 minutes before their time limit (and on preemption), on which the run
         checkpoints and stops and the job requeues itself, to resume from that checkpoint
         (after a time limit at most 3 times, submitit's max_num_timeout; then launch again).
         Launching again never submits a run twice: a run whose job SLURM still holds (queued
         or running; asked with `squeue`) is left to it. A job that ended before its
         run did is asked about in SLURM's accounting (`sacct`): FAILED or OUT_OF_MEMORY makes
         the run failed (a new job would fail the same way; --retry-failed), any other end
         (cancelled, timed out, preempted, node lost) leaves it to resume. The training's
         output is in submitit's log, DIR/slurm/<job>/<job>_0_log.err. --wait waits for the
         jobs (the tests use submitit's local executor).

`status` prints a table: run, state, step / total, best validation metric, wall time, and for a
running run its time left: its steps left at the training speed it last logged (metrics.jsonl,
every log_every_steps) and its validations still due at the seconds of its latest pass of each
kind (summary.json; passes of a kind not timed yet are named), its step as last logged and its
wall time until now. Under the table: how many runs are in each state.

Exit status of `launch`: 0 every run finished; 1 an error, or failed runs, now or before
(listed with their errors and logs; --retry-failed launches them again), or runs not started
for a failed run they start from; 75 runs not ended yet (submitted to SLURM
without --wait, stopped by a signal, or left to the process or SLURM job that has them): launch
again later. So `launch ... && compare ...` compares only a sweep that has ended.
"""

import argparse
import collections
import contextlib
import os
import sys
from collections.abc import Sequence

from unet_jax import (
  cli,
  local_launcher,
  results,
  slurm,
  slurm_launcher,
  sweep_checks,
  sweep_runs,
  workdir_lock,
)


def plan(root: str, runs: Sequence[sweep_runs.Run], *, retry_failed: bool = False, label: str = '',
         write: bool = True) -> tuple[list[sweep_runs.Run], list[str], dict[str, str], dict]:
  """(runs to launch, names skipped, {name: who has it} of runs left to another process,
  manifest) for `runs` under `root`, the manifest written.

  Finished runs are skipped, failed ones unless `retry_failed`; a run whose training process is
  alive (its workdir lock is held: a killed launcher's run, a job running it) is left to it, and
  so is a run submitted to SLURM whose job SLURM still holds (queued: it holds no lock yet), so
  that launching again never submits a run twice. A run whose overrides changed under its name
  is an error. `write=False` (a dry run) reads and writes nothing: no folder, no manifest.
  """
  if write:
    os.makedirs(root, exist_ok=True)
  manifest = sweep_runs.read_manifest(root)
  sweep_runs.check_unchanged(manifest, runs)
  if label:
    manifest['sweep'] = label
  to_launch, skipped, busy, queue = [], [], {}, slurm.Queue()
  for run in runs:
    state = sweep_runs.run_state(root, run.name)
    entry = manifest['runs'].setdefault(run.name, {'overrides': run.overrides, 'hash': run.hash,
                                                   'config': run.config, 'error': None})
    recorded_failed = entry.get('state') == 'failed'
    job = sweep_runs.submitted_job(entry)
    job_state = queue.state(job) if job and state != 'finished' else None
    if job_state == '' and state in ('pending', 'running'):  # The job ended before the run.
      error = slurm_launcher.failed_job_error(root, job, queue)
      if error:
        entry.update(state='failed', error=error)
        recorded_failed = True
    if state == 'failed' and not entry.get('error'):  # E.g. failed in a SLURM job.
      entry['error'] = results.read_run_summary(os.path.join(root, run.name)).get('error')
    if state == 'finished':
      entry['state'] = 'finished'
      skipped.append(run.name)
    elif workdir_lock.training_alive(os.path.join(root, run.name)):
      if not job:  # A SLURM job's run stays recorded as submitted, its job id kept.
        entry['state'] = 'running'
      busy[run.name] = 'its training process is alive' + (f' (SLURM job {job})' if job else '')
    elif job_state:
      busy[run.name] = f'SLURM job {job}, {job_state.lower()}'
    elif (state == 'failed' or recorded_failed) and not retry_failed:
      entry['state'] = 'failed'
      skipped.append(run.name)
    else:
      if job and job_state is None:
        print(f'sweep: cannot ask SLURM (squeue) whether job {job} of {run.name} is still '
              'queued; submitting it again (if both start, the second stops at once: the '
              'workdir is locked).', file=sys.stderr, flush=True)
      to_launch.append(run)
  if write:
    sweep_runs.write_manifest(root, manifest)
  return to_launch, skipped, busy, manifest


def busy_line(busy: dict[str, str]) -> str:
  """The launchers' line for the runs left to another process or job."""
  return (f'{len(busy)} left to the process or SLURM job that has them: '
          + '; '.join(f'{name} ({why})' for name, why in busy.items()) + '.')


def run_or_submit(root: str, runs: Sequence[sweep_runs.Run], manifest: dict, args, slots=None,
                  elsewhere: frozenset[str] = frozenset()) -> dict[str, str] | None:
  """Runs `runs` here (`args.executor` 'local', `args.parallel` at once, on `slots` if given:
  see `local_launcher.local_slots`; runs that start from one of `elsewhere`, which another
  process trains, wait for it) and returns {name: state} (raises `local_launcher.Interrupted` if
  a signal stopped them); or submits them to SLURM, prints the job ids, and returns their states
  once they have ended with `args.wait`, None without it (the next launch finds them: see
  `plan`)."""
  sweep_checks.check_data(root, runs, args)
  if args.executor == 'local':
    launcher = local_launcher.LocalLauncher(root, args.parallel, slots=slots, elsewhere=elsewhere)
    return launcher.launch(runs, manifest)
  jobs = slurm_launcher.submit_slurm(root, runs, manifest, args)
  print(f'Submitted {len(jobs)} job(s): {", ".join(str(j.job_id) for j in jobs)}.', flush=True)
  if not args.wait:
    return None
  slurm_launcher.wait_for(jobs)
  states = {run.name: sweep_runs.run_state(root, run.name) for run in runs}
  for name, state in states.items():
    manifest['runs'][name]['state'] = state
  sweep_runs.write_manifest(root, manifest)
  return states


def add_executor_arguments(parser: argparse.ArgumentParser, parallel_default: int | None = 1):
  """Where runs go: the options `sweep launch` and `experiments.paper` share."""
  parser.add_argument('--parallel', type=int, default=parallel_default,
                      help='local: runs at once, each on its share of the GPUs or CPU cores'
                      + ('' if parallel_default else " (default: the scale's)") + '.')
  parser.add_argument('--executor', choices=('local', 'slurm'), default='local',
                      help='local: subprocesses here; slurm: one job per run through submitit.')
  parser.add_argument('--retry-failed', action='store_true', help='Launch failed runs again.')
  parser.add_argument('--slurm-partition', default=None,
                      help="slurm: the partition (default: the cluster's default).")
  parser.add_argument('--slurm-time', type=int, default=240, help='Minutes per job.')
  parser.add_argument('--slurm-gpus-per-node', type=int, default=None,
                      help='slurm: GPUs per node of each run (default: none asked).')
  parser.add_argument('--slurm-cpus-per-task', type=int, default=None,
                      help="slurm: CPU cores of each run's process, one per node; its input "
                      "pipeline and validation use them (default: the cluster's, often 1).")
  parser.add_argument('--slurm-mem-gb', type=int, default=None,
                      help="slurm: host memory per node, in GB (default: the cluster's).")
  parser.add_argument('--slurm-param', action='append', default=[], metavar='KEY=VALUE',
                      help='slurm: any other sbatch option, without its dashes (repeatable): '
                      'account=myproject, qos=high, constraint=h100, exclusive.')
  parser.add_argument('--slurm-nodes', type=int, default=1,
                      help='Nodes per run (>1: one process per node, --jax_distributed).')
  parser.add_argument('--slurm-array', action='store_true', help='One job array for all runs.')
  parser.add_argument('--submitit-cluster', default='slurm', choices=('slurm', 'local', 'debug'),
                      help="submitit's executor: 'slurm', or 'local' to run the jobs here.")
  parser.add_argument('--wait', action='store_true',
                      help='slurm: wait for the jobs to end (otherwise launch again once they '
                      'have: jobs SLURM still holds are not submitted twice).')


def check_executor_arguments(args) -> list | None:
  """Raises ValueError naming the option if a count is below 1, a --slurm-param is malformed or
  --parallel asks for more runs than there are GPUs here, before anything is loaded, written or
  submitted. Returns the local runs' `local_launcher.local_slots` (None for SLURM or a dry run)."""
  for option in ('parallel', 'slurm_time', 'slurm_nodes', 'slurm_gpus_per_node',
                 'slurm_cpus_per_task', 'slurm_mem_gb'):
    value = getattr(args, option)
    if value is not None and value < 1:
      raise ValueError(f'--{option.replace("_", "-")}={value} must be a whole number >= 1.')
  slurm.params(args.slurm_param)
  if args.executor == 'local' and args.parallel and not getattr(args, 'dry_run', False):
    return local_launcher.local_slots(args.parallel)
  return None


def launch(args) -> int:
  slots = check_executor_arguments(args)
  cli.check_can_be_folder(args.root, '--root')
  runs = sweep_runs.load_sweep(args.sweep, sweep_runs.parse_sets(args.set))
  root = os.path.abspath(args.root)
  with launcher_lock(root, f'python -m unet_jax.sweep status --root {args.root}', args.dry_run):
    return _launch(args, runs, root, slots)


def launcher_lock(root: str, status_command: str, dry_run: bool = False):
  """Held while launching runs under `root`: a second launcher would start the same runs again
  and race on sweep.json; it is refused, pointed at `status_command`. A dry run, which reads
  only, takes none (and makes no folder)."""
  if dry_run:
    return contextlib.nullcontext()
  os.makedirs(root, exist_ok=True)
  return workdir_lock.exclusive(
      root, 'launcher', in_use=f'Another launcher is running the runs in {root!r}',
      fix=f'`{status_command}` shows their progress; launch again once it has ended (a '
          'launcher that ended, however it ended, holds no lock).')


def blocked_by_sources(runs: Sequence[sweep_runs.Run], manifest: dict, busy: dict[str, str],
                       slurm_dependencies: bool = False,
                       elsewhere: frozenset[str] = frozenset()) -> dict[str, str]:
  """{name: why} of the runs among `runs` (those to launch) that cannot start in this launch for
  their source, a run of the sweep (`Run.waits_for`) that is neither finished nor among `runs`:
  failed (and not retried), or trained by another process or job; and of the runs that start
  from them. A source in `elsewhere` (trained by another process here) is no reason: the local
  launcher waits for it. With `slurm_dependencies`, neither is a source in a SLURM job that
  SLURM still holds: the run's job waits for that one (`slurm_launcher.submit_slurm`)."""
  launched, blocked = {run.name for run in runs}, {}
  while True:
    new = {}
    for run in runs:
      source = run.waits_for
      if (not source or run.name in blocked or source in launched - blocked.keys()
          or source in elsewhere):
        continue
      entry = manifest['runs'][source]
      if source in blocked:
        new[run.name] = f'it starts from {source}, which cannot start either'
      elif entry.get('state') == 'finished':
        continue
      elif source in busy:
        if slurm_dependencies and sweep_runs.submitted_job(entry):
          continue
        new[run.name] = (f'it starts from {source}, which another process or job trains; '
                         'launch again once it has finished')
      else:
        new[run.name] = (f'it starts from {source}, which '
                         + ('failed; fix that, then launch again with --retry-failed'
                            if entry.get('state') == 'failed' else 'has not finished'))
    if not new:
      return blocked
    blocked.update(new)


def _launch(args, runs: Sequence[sweep_runs.Run], root: str, slots=None) -> int:
  to_launch, skipped, busy, manifest = plan(root, runs, retry_failed=args.retry_failed,
                                            label=args.sweep, write=not args.dry_run)
  to_launch = sweep_runs.mark_resumes(root, to_launch)
  # Sources another process trains here (a killed launcher's runs): the local launcher waits.
  elsewhere = frozenset(
      name for name in {run.waits_for for run in to_launch} & busy.keys()
      if args.executor == 'local' and workdir_lock.training_alive(os.path.join(root, name)))
  blocked = blocked_by_sources(to_launch, manifest, busy, slurm_dependencies=(
      args.executor == 'slurm' and args.submitit_cluster == 'slurm'), elsewhere=elsewhere)
  to_launch = [run for run in to_launch if run.name not in blocked]
  print(f'sweep {args.sweep}: {len(runs)} runs; {len(to_launch)} to launch, '
        f'{len(skipped)} skipped ({", ".join(skipped) or "none"}).', flush=True)
  if busy:
    print(busy_line(busy), flush=True)
  if blocked:
    print(f'{len(blocked)} not started: '
          + '; '.join(f'{name} ({why})' for name, why in blocked.items()) + '.', flush=True)
  if args.dry_run:
    for run in to_launch:
      print(' '.join(run.command(os.path.join(root, run.name))))
    return 0
  failed_before = any(manifest['runs'][name]['state'] == 'failed' for name in skipped)
  if not to_launch:
    if busy:
      return sweep_runs.STOPPED_STATUS
    if failed_before:
      print(status_table(root), flush=True)  # Lists the failed runs, their errors and logs.
      return 1
    return 0
  try:
    states = run_or_submit(root, to_launch, manifest, args, slots, elsewhere)
  except local_launcher.Interrupted as stopped:  # Stopped runs say 'stopped': 75 below.
    states = {**{run.name: 'pending' for run in to_launch}, **stopped.states}
  if states is None:  # Submitted: not ended yet (`status` follows them; launch again after).
    print(f'Follow them with `python -m unet_jax.sweep status --root {args.root}`; launch '
          'again once they have ended (jobs SLURM holds are not submitted twice).', flush=True)
    return sweep_runs.STOPPED_STATUS
  print(status_table(root), flush=True)
  busy = {name: why for name, why in busy.items() if sweep_runs.run_state(root, name) != 'finished'}
  if busy or any(s in ('stopped', 'running', 'pending') for s in states.values()):
    return sweep_runs.STOPPED_STATUS  # Not all ended: launching again goes on.
  # Failed now or before (skipped), or not started for a source that failed.
  ended_badly = {'failed', local_launcher.NOT_STARTED} & {*states.values()}
  return 1 if failed_before or blocked or ended_badly else 0


def status_table(root: str) -> str:
  """A table of the sweep's runs: state, step / total, best validation metric, wall time, and
  for a running run its time left (`sweep_runs.running_progress`); under it, how many runs are
  in each state (a sweep of dozens of runs, read at a glance), then the failed runs with their
  errors."""
  manifest = sweep_runs.read_manifest(root)
  queue = slurm.Queue()
  lines = ['| run | state | step | best | wall time | time left |', '|---|---|---|---|---|---|']
  failed, counts = [], collections.Counter()
  for name, entry in manifest['runs'].items():
    summary = results.read_run_summary(os.path.join(root, name))
    state = _live_state(root, name, summary['state'] if summary else entry.get('state', 'pending'),
                        entry, queue)
    if summary:
      best = summary.get('best')
      best_text = (f'{summary["selection"]["metric"]} {best["value"]:.4f} (step {best["step"]})'
                   if best else '-')
      step, wall, left = sweep_runs.running_progress(os.path.join(root, name), summary) \
          if state.startswith('running') else (summary['step'], summary.get('wall_time_s', 0), None)
      left_text = results.format_time_left(*left) if left else '-'
      lines.append(f'| {name} | {state} | {step}/{summary["num_train_steps"]} | {best_text} | '
                   f'{cli.clock(wall)} | {left_text} |')
    else:
      source = entry.get('overrides', {}).get(sweep_runs.INIT_FROM)
      if state == 'pending' and isinstance(source, str) and source in manifest['runs']:
        state = (f'pending (starts from {source}, which failed: --retry-failed launches it)'
                 if manifest['runs'][source].get('state') == 'failed' else
                 f'pending (starts from {source} once it has finished)')
      lines.append(f'| {name} | {state} | - | - | - | - |')
    counts[state.split(' (')[0]] += 1
    if state.startswith('failed'):
      job = sweep_runs.submitted_job(entry)
      error = (entry.get('error') or (summary or {}).get('error')
               or (job and slurm_launcher.failed_job_error(root, job, queue)))
      failed.append(sweep_runs.failure_line(root, name, entry, error))
  order = ('finished', 'running', 'submitted', 'pending', 'stopped', 'interrupted', 'failed')
  ranked = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
  lines += ['', f'{sum(counts.values())} runs: '
            + ', '.join(f'{counts[state]} {state}' for state in ranked) + '.']
  if failed:
    lines += ['', f'Failed ({len(failed)}; fix the cause, then launch again with --retry-failed):',
              *(f'- {line}' for line in failed)]
  return '\n'.join(lines)


def _live_state(root: str, name: str, recorded: str, entry: dict, queue: slurm.Queue) -> str:
  """The recorded state, corrected by the run's lock and its SLURM job: a run whose training
  process holds its workdir is running whatever was recorded last; a run whose SLURM job is
  still queued says so ('pending (SLURM job 4242)'); one whose job ended before the run did is
  'failed (SLURM job 4242, out_of_memory)' if SLURM's accounting says the job failed, otherwise,
  like a run recorded running whose process is gone (killed, its node lost), 'interrupted'.
  Where neither can be asked, the record."""
  alive = workdir_lock.training_alive(os.path.join(root, name))
  if alive:
    return 'running'
  job = sweep_runs.submitted_job(entry) if recorded != 'finished' else None
  job_state = queue.state(job) if job else None
  if job_state:
    return f'{job_state.lower()} (SLURM job {job})'
  if job_state == '' and recorded in ('running', 'submitted', 'pending') and (
      end := queue.failed(job)):
    return f'failed (SLURM job {job}, {end[0].lower()})'
  if alive is False and (recorded == 'running' or (recorded == 'submitted' and job_state == '')):
    return 'interrupted'
  return recorded


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m unet_jax.sweep',
                                   description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 2)[2])
  commands = parser.add_subparsers(dest='command', required=True)
  start = commands.add_parser('launch', help='Launch (or resume) the runs of a sweep.')
  start.add_argument('sweep', help='experiments/sweeps/NAME.py[:ARG], or NAME[:ARG].')
  start.add_argument('--root', required=True, help='Folder for the runs and sweep.json.')
  start.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                     help='A config override for every run, e.g. --set data.dir=PATH '
                     '(repeatable; part of each run\'s recorded overrides).')
  start.add_argument('--dry-run', action='store_true',
                     help='Print the commands of the runs it would launch; writes nothing.')
  add_executor_arguments(start)
  show = commands.add_parser('status', help='Print the state of a sweep\'s runs.')
  show.add_argument('--root', required=True)
  stop = commands.add_parser('cancel', help="Cancel the SLURM jobs of a sweep's runs (each run "
                             'checkpoints on the SIGTERM; launch again to resume them).')
  stop.add_argument('--root', required=True)
  args = parser.parse_args(argv)
  if args.command == 'launch':
    return launch(args)
  root = os.path.abspath(args.root)
  if not os.path.isfile(os.path.join(root, sweep_runs.MANIFEST)):
    raise FileNotFoundError(
        f'{args.root!r} holds no {sweep_runs.MANIFEST}: no sweep was launched there. Give the '
        '--root a `python -m unet_jax.sweep launch` was given (a single run: its summary.json).')
  if args.command == 'cancel':
    return cancel(root)
  print(status_table(root))
  return 0


def cancel(root: str) -> int:
  """`scancel`s the jobs of the runs last submitted to SLURM that SLURM still holds; each
  training gets SIGTERM and stops at a step, checkpointed (its summary says 'stopped'), so
  launching again resumes it. A local launcher is stopped with SIGTERM to it instead."""
  submitted = {name: job for name, entry in sweep_runs.read_manifest(root)['runs'].items()
               if (job := sweep_runs.submitted_job(entry))}
  jobs = slurm.jobs() if submitted else {}
  if jobs is None:
    raise OSError('Cannot ask SLURM (squeue) which jobs it holds: run this on a host of the '
                  'cluster the sweep was submitted to.')
  held = {name: job for name, job in submitted.items() if job in jobs}
  if not held:
    print(f'No SLURM job of {root} is queued or running: nothing to cancel.')
    return 0
  slurm.cancel(list(held.values()))
  print(f'Cancelled {len(held)} SLURM job(s): '
        + ', '.join(f'{name} ({job})' for name, job in held.items())
        + '. Each run checkpoints as it stops; launch again to resume them.')
  return 0


if __name__ == '__main__':
  cli.run(main)
