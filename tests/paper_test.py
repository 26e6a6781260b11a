"""The paper as code: the smoke scale end to end, on SLURM (fakes, and submitit's local executor)
and the full scale's dry run."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import fake_slurm  # tests/fake_slurm.py; pytest puts tests/ on sys.path.
import pytest

from experiments.paper import scales, tables
from unet_jax import sweep_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_ablation_ends_at_our_recipe_and_starts_at_the_seeds():
  for scale in scales.SCALES.values():
    ours = scales._config(scale, {})
    last = scales._config(scale, tables.ablation_overrides(scale, tables.TRAINING_STEPS))
    # Every training change undone: what remains differs from ours only in inference settings.
    differing = {k for k in ('data.normalize', 'data.resize_policy', 'augment.enabled', 'loss',
                             'optim.name', 'optim.lr', 'optim.eps', 'optim.weight_decay',
                             'optim.grad_clip_norm', 'optim.schedule', 'model.dropout_rate',
                             'model.dropout_levels')
                 if _get(last, k) != _get(ours, k)}
    assert differing == set(), (scale.name, differing)
    # ...and in them, so that Table 2's test-time augmentation and post-processing rows measure
    # something (the full scale's recipe once had none: both rows would have been no-ops).
    assert (ours.inference.tta, ours.inference.largest_component, ours.inference.fill_holes) == (
        'dihedral', True, True), scale.name
    assert (last.inference.tta, last.inference.largest_component) == ('none', False), scale.name
    first = scales._config(scale, tables.ablation_overrides(scale, 0))
    assert (first.data.normalize, first.data.resize_policy, first.loss, first.optim.name) == (
        'none', 'stretch', 'bce', 'adam')


def _get(config, field):
  node = config
  for part in field.split('.'):
    node = node[part]
  return tuple(node) if isinstance(node, (list, tuple)) else node


def test_the_full_scale_prints_what_it_would_launch(tmp_path):
  done = subprocess.run([sys.executable, '-m', 'experiments.paper', '--scale', 'full', '--root',
                         str(tmp_path / 'root'), '--out', str(tmp_path / 'out'), '--dry-run'],
                        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'table1: 10 runs, 10 to launch' in done.stdout
  assert f'ablation: {5 * (tables.TRAINING_STEPS - 1)} runs' in done.stdout
  assert '--config.data.fold=4' in done.stdout and 'isic2018.py' in done.stdout
  assert not (tmp_path / 'out').exists()


# One CPU device, as a user's machine has (the 8 of the test process would split each evaluation
# batch 8 ways); the sweep gives its runs one device each anyway.
ONE_DEVICE = {**os.environ, 'XLA_FLAGS': '--xla_backend_optimization_level=0'}


def _paper(root, out, *more, env=None, timeout=300):
  command = [sys.executable, '-m', 'experiments.paper', '--scale', 'smoke', '--root', str(root),
             '--out', str(out), *more]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                        check=False, env=env or ONE_DEVICE)


def _stopped_once_running(root, out):
  """The command started and sent SIGTERM once a run of Table 1 is running: (status, output)."""
  command = [sys.executable, '-m', 'experiments.paper', '--scale', 'smoke', '--root', str(root),
             '--out', str(out)]
  paper = subprocess.Popen(command, cwd=REPO, env=ONE_DEVICE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
  manifest, deadline = root / 'table1' / sweep_runs.MANIFEST, time.time() + 300
  while time.time() < deadline and paper.poll() is None:
    if manifest.exists() and 'running' in manifest.read_text():
      break
    time.sleep(0.2)
  paper.send_signal(signal.SIGTERM)
  return paper.wait(timeout=300), paper.communicate()[0]


@pytest.fixture(scope='module')
def smoke_paper(tmp_path_factory):
  """The smoke scale's runs, trained and reported by one command here: (root, out, its result),
  and (status, output) of the same command stopped by SIGTERM before it, which the second
  resumed."""
  folder = tmp_path_factory.mktemp('smoke_paper')
  root, out = folder / 'root', folder / 'out'
  stopped = _stopped_once_running(root, out)
  return root, out, _paper(root, out, timeout=900), stopped


def test_a_signal_stops_the_whole_command_not_the_sweep_it_is_in(smoke_paper):
  """SIGTERM during Table 1's runs stopped them (each checkpointed) and ended the command with
  75: it did not go on to launch the ablation's runs (it once did, and a second signal was
  needed for each sweep)."""
  *_, (status, output) = smoke_paper
  assert status == 75, output[-3000:]
  assert 'sweep: SIGTERM: stopping the runs' in output
  assert ('Stopped by SIGTERM: the runs of table1 stopped, each checkpointed, and ablation not '
          'launched; run the same command again to go on.') in output
  assert 'ablation: ' not in output and 'Evaluating' not in output


def test_the_smoke_scale_writes_the_report_with_its_tables_and_figures(smoke_paper):
  root, out, done, _ = smoke_paper
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  report = (out / 'report.md').read_text()
  for text in ('## Table 1', '## Table 2', "| seed's recipe | 2 | 20 |", '| our recipe | 2 | 20 |',
               '+ test-time augmentation', '+ post-processing', 'What was selected on what'):
    assert text in report, text
  # Where they trained: this machine, as JAX and the packages report it (one row: every run).
  import jax

  rows = [line for line in report.split('## Where the runs trained')[1].splitlines()
          if line.startswith('| 1 x ')]
  runs = glob.glob(str(root / 'table1' / '*' / 'summary.json')) + glob.glob(
      str(root / 'ablation' / '*' / 'summary.json'))
  assert len(rows) == 1 and rows[0].endswith(f'| {len(runs)} |'), rows
  assert '(cpu), 1 process(es)' in rows[0] and f'jax {jax.__version__}' in rows[0], rows
  figures = sorted(os.listdir(out / 'figures'))
  assert figures == ['curves.png', 'distribution.png', 'predictions.png', 'profile.png',
                     'samples.png']
  for name in figures:
    assert f'](figures/{name})' in report
  assert 'Evaluating 5/5: table1/' in done.stdout  # Progress, here.
  # Asked again, it has nothing left to launch (a finished run is not trained again).
  again = _paper(root, out, '--dry-run')
  assert again.returncode == 0 and again.stdout.count('0 to launch') == 2, again.stdout


def test_on_slurm_the_evaluations_are_one_job_that_writes_the_report(smoke_paper, tmp_path):
  """Once the runs have finished, --executor slurm submits one job (the runs' options: a GPU)
  that evaluates them and writes the report, and ends (75); asked again while SLURM holds that
  job, it submits nothing (75); a failed job is named with its log (1); --retry-failed submits it
  again, and through submitit's local executor with --wait the job evaluates what is missing (the
  command itself evaluates none) and the command writes the report."""
  root, out, done, _ = smoke_paper
  assert done.returncode == 0, done.stderr[-3000:]
  # As when the runs' SLURM jobs have ended: trained, not evaluated (one run's two evaluations
  # removed, to keep the test short), no report.
  assert len(glob.glob(str(root / 'table1' / '*' / 'eval_val*' / 'summary.json'))) == 5
  for folder in glob.glob(str(root / 'table1' / 'ours-fold=0' / 'eval_val*')):
    shutil.rmtree(folder)
  shutil.rmtree(out)
  env, record, queue = fake_slurm.install(tmp_path)
  env = {**env, 'XLA_FLAGS': ONE_DEVICE['XLA_FLAGS']}
  on_slurm = ('--executor', 'slurm', '--slurm-partition', 'gpu', '--slurm-gpus-per-node', '1')
  first = _paper(root, out, *on_slurm, env=env)
  assert first.returncode == sweep_runs.STOPPED_STATUS, first.stdout[-2000:] + first.stderr[-2000:]
  assert 'Submitted the evaluation job 4242' in first.stdout, first.stdout
  submitted = record.read_text()
  assert submitted.count('#SBATCH --partition=gpu') == 1 and '#SBATCH --gpus-per-node=1' in (
      submitted)
  assert json.loads((root / 'evaluation_job.json').read_text())['job_id'] == '4242'
  assert not out.exists() and not glob.glob(str(root / 'table1' / 'ours-fold=0' / 'eval_val*'))

  queue.write_text('4242|RUNNING\n')
  again = _paper(root, out, *on_slurm, env=env)
  assert again.returncode == sweep_runs.STOPPED_STATUS, again.stdout[-2000:] + again.stderr[-2000:]
  assert 'The evaluation job (SLURM job 4242) is running' in again.stderr
  assert record.read_text().count('#SBATCH --partition=gpu') == 1

  queue.write_text('')
  (tmp_path / 'accounting.txt').write_text('4242|OUT_OF_MEMORY|0:125\n')
  log = root / 'slurm' / '4242' / '4242_0_log.err'
  log.write_text('Evaluating 1/2: table1/ours-fold=0/eval_val\nslurmstepd: Out Of Memory\n')
  third = _paper(root, out, *on_slurm, env=env)
  assert third.returncode == 1, third.stdout[-2000:] + third.stderr[-2000:]
  assert (f'The evaluation job failed: slurmstepd: Out Of Memory (output: {log})'
          in third.stderr), third.stderr
  assert record.read_text().count('#SBATCH --partition=gpu') == 1

  local = _paper(root, out, '--executor', 'slurm', '--submitit-cluster', 'local',
                 '--retry-failed', '--wait', timeout=600)
  assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
  job = json.loads((root / 'evaluation_job.json').read_text())
  assert job['cluster'] == 'local' and job['command'][-1] == '--report-only'
  job_output = (root / 'slurm' / job['job_id'] / f'{job["job_id"]}_0_log.out').read_text()
  assert 'Evaluating 2/2' in job_output and 'Evaluating' not in local.stdout, local.stdout
  assert len(glob.glob(str(root / 'table1' / '*' / 'eval_val*' / 'summary.json'))) == 5
  assert '## Table 1' in (out / 'report.md').read_text()


def test_report_only_names_the_runs_not_finished(tmp_path):
  done = _paper(tmp_path / 'root', tmp_path / 'out', '--report-only', timeout=120)
  assert done.returncode == 1
  assert ('Error: --report-only: 9 run(s) under ' in done.stderr
          and '(table1/seed-fold=0, table1/seed-fold=1, table1/ours-fold=0, ...)' in done.stderr
          and 'without --report-only to launch them' in done.stderr), done.stderr
  assert not (tmp_path / 'out').exists() and not (tmp_path / 'root').exists()


def test_on_slurm_it_submits_the_runs_ends_and_never_submits_them_twice(tmp_path):
  """With --executor slurm the command submits every run and ends (exit 75: run it again once
  they have ended); asked again while SLURM holds the jobs, it submits none of them again; a job
  SLURM says failed is a failed run (exit 1), named with the last line of its job's log."""
  env, record, queue = fake_slurm.install(tmp_path)
  command = [sys.executable, '-m', 'experiments.paper', '--scale', 'smoke', '--root',
             str(tmp_path / 'root'), '--out', str(tmp_path / 'out'), '--executor', 'slurm',
             '--slurm-partition', 'gpu', '--slurm-gpus-per-node', '1']
  runs = len(tables.table1_runs(scales.SCALES['smoke'])) + len(
      tables.ablation_runs(scales.SCALES['smoke']))
  first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=False, env=env)
  assert first.returncode == sweep_runs.STOPPED_STATUS, first.stdout[-2000:] + first.stderr[-2000:]
  assert record.read_text().count('#SBATCH --partition=gpu') == runs
  assert f'Not ended yet: {runs} run(s)' in first.stderr and 'sweep status --root' in first.stderr
  assert not (tmp_path / 'out').exists()
  queue.write_text(''.join(f'{4242 + i}|PENDING\n' for i in range(runs)))
  again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=False, env=env)
  assert again.returncode == sweep_runs.STOPPED_STATUS, again.stdout[-2000:] + again.stderr[-2000:]
  assert record.read_text().count('#SBATCH --partition=gpu') == runs
  assert again.stdout.count('0 to launch') == 2 and 'SLURM job 4242, pending' in again.stdout
  queue.write_text(''.join(f'{4242 + i}|PENDING\n' for i in range(1, runs)))
  (tmp_path / 'accounting.txt').write_text('4242|FAILED|1:0\n')
  log = tmp_path / 'root' / 'table1' / 'slurm' / '4242' / '4242_0_log.err'
  log.write_text('Traceback (most recent call last):\n'
                 'ValueError: config.data.dir: no such folder.\n')
  name = next(name for name, entry in sweep_runs.read_manifest(str(tmp_path / 'root' / 'table1'))[
      'runs'].items() if entry['job_id'] == '4242')
  third = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=False, env=env)
  assert third.returncode == 1, third.stdout[-2000:] + third.stderr[-2000:]
  assert ('Failed: 1 run(s)' in third.stderr and f'- table1/{name}: ValueError: config.data.dir: '
          f'no such folder. (output: {log})' in third.stderr), third.stderr
  assert record.read_text().count('#SBATCH --partition=gpu') == runs
