"""Sweeps end to end: launch, stop with SIGTERM, launch again, status, compare, TensorBoard's
HParams view, submitit's local executor and a fake `sbatch`.

The launched sweep is the session fixture `trained_sweep` (tests/conftest.py): 2 losses x 2 seeds
of a tiny U-Net on the synthetic data, and one run that fails.
"""

import contextlib
import csv
import datetime
import io
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import fake_slurm  # tests/fake_slurm.py; pytest puts tests/ on sys.path.
import pytest

from unet_jax import compare, local_launcher, results, slurm_launcher, sweep, sweep_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = ['loss=bce-seed=0', 'loss=bce-seed=1', 'loss=bce_dice-seed=0', 'loss=bce_dice-seed=1']


def _cli(*args, env=None):
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True,
                        timeout=600, check=False, env=env)


def test_launch_stop_and_launch_again_finishes_every_run_once(trained_sweep):
  root = trained_sweep['root']
  assert trained_sweep['first_status'] == 75  # Stopped by SIGTERM, its runs checkpointed.
  assert 'SIGTERM: stopping the runs' in trained_sweep['first']
  assert trained_sweep['finished_first']  # At least one run had finished before the stop.
  manifest = sweep_runs.read_manifest(root)
  assert {n: r['state'] for n, r in manifest['runs'].items()} == {
      **dict.fromkeys(GOOD, 'finished'), 'norm=bogus': 'failed'}
  assert "model.norm='bogus'" in manifest['runs']['norm=bogus']['error'] or 'bogus' in \
      manifest['runs']['norm=bogus']['error']
  assert trained_sweep['second_status'] == 1  # The failed run is reported, the others finished.
  for name in trained_sweep['finished_first']:  # Not trained again.
    with open(os.path.join(root, name, sweep_runs.LOG)) as f:
      assert f.read().count('\n=== ') == 1, name
  for name in GOOD:
    summary = results.read_run_summary(os.path.join(root, name))
    assert summary['state'] == 'finished' and summary['step'] == 24
  status = _cli('unet_jax.sweep', 'status', '--root', root)
  assert status.returncode == 0
  for name in GOOD:
    assert f'| {name} | finished | 24/24 | threshold_jaccard' in status.stdout
  assert '| norm=bogus | failed |' in status.stdout
  assert '\n5 runs: 4 finished, 1 failed.\n' in status.stdout, status.stdout
  failure = next(line for line in status.stdout.splitlines() if line.startswith('- norm=bogus: '))
  assert "'bogus'" in failure and failure.endswith(  # Its error's last line, and the whole log.
      f'(output: {os.path.join(root, "norm=bogus", sweep_runs.LOG)})'), status.stdout
  # Launched once more: everything finished or failed is skipped, the failure said again.
  again = _cli('unet_jax.sweep', 'launch', trained_sweep['file'], '--root', root)
  assert again.returncode == 1 and '0 to launch, 5 skipped' in again.stdout
  assert failure in again.stdout.splitlines(), again.stdout


def test_status_of_a_folder_no_sweep_was_launched_in_is_an_error_not_an_empty_table(tmp_path):
  (tmp_path / 'run').mkdir()  # E.g. a single run's workdir, or a misspelt root.
  done = _cli('unet_jax.sweep', 'status', '--root', str(tmp_path / 'run'))
  assert done.returncode == 1 and done.stdout == '', done.stdout
  assert done.stderr.startswith(f"Error: '{tmp_path / 'run'}' holds no sweep.json"), done.stderr


def test_the_sweep_and_compare_commands_import_neither_jax_nor_tensorflow():
  """`sweep status` and `compare` read summaries and CSVs, through results -> native_scoring ->
  metrics, which imported JAX: a second more at every start of either."""
  code = ('import sys, unet_jax.sweep, unet_jax.compare, unet_jax.local_launcher, '
          'unet_jax.slurm_launcher, unet_jax.sweep_checks; '
          "bad = [m for m in ('jax', 'tensorflow') if m in sys.modules]; assert not bad, bad")
  run = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                       timeout=120, check=False)
  assert run.returncode == 0, run.stderr[-2000:]


def test_a_dry_run_writes_nothing_and_a_misspelt_field_stops_the_sweep_before_any_run(tmp_path):
  root = tmp_path / 'root'
  dry = _cli('unet_jax.sweep', 'launch', 'smoke', '--root', str(root), '--dry-run')
  assert dry.returncode == 0 and dry.stdout.count('-m unet_jax.main') == 4, dry.stderr
  assert not root.exists()  # A dry run leaves no sweep.json that would pin its overrides.
  typo = _cli('unet_jax.sweep', 'launch', 'smoke', '--root', str(root), '--set',
              'model.base_widht=4')
  assert typo.returncode == 1 and not root.exists(), typo.stdout + typo.stderr
  assert ("run 'loss=bce-seed=0' overrides 'model.base_widht', which is no field of "
          "quickstart.py (did you mean 'model.base_width'?)") in typo.stderr, typo.stderr
  moved = _cli('unet_jax.sweep', 'launch', 'smoke', '--root', str(root), '--set',
               'eval_batch_size=4', '--dry-run')
  assert "'eval_batch_size', which is no field of quickstart.py (it is now 'eval.batch_size')" in (
      moved.stderr), moved.stderr
  # A data path is taken from the launcher's folder once: launching again from another folder
  # (to resume) must give the runs the same data.
  assert sweep_runs.parse_sets(['data.dir=../d', 'config.data.tfds_data_dir=t',
                               'optim.lr=0.1']) == {
      'data.dir': os.path.abspath('../d'), 'data.tfds_data_dir': os.path.abspath('t'),
      'optim.lr': 0.1}
  assert sweep_runs.parse_sets(['data.tfds_data_dir=gs://bucket/tfds']) == {  # A URL stays one.
      'data.tfds_data_dir': 'gs://bucket/tfds'}
  bad_config = tmp_path / 'bad_config.py'  # A run's config neither a file nor a preset.
  bad_config.write_text("def get_sweep(arg=None):\n  return {'config': 'quickstrat', "
                        "'runs': [{}]}\n")
  with pytest.raises(FileNotFoundError, match=rf"^{bad_config}: config 'quickstrat': no such "
                     r'file, and not a preset\. Presets: default, .*quickstart.* \(by name, '
                     r'e\.g\. quickstart,'):
    sweep_runs.load_sweep(str(bad_config))


@pytest.mark.parametrize('option,value,message', [
    ('--slurm-nodes', '0', '--slurm-nodes=0 must be a whole number >= 1.'),
    ('--parallel', '-2', '--parallel=-2 must be a whole number >= 1.'),
    ('--slurm-param', '=high', "--slurm-param '=high': expected KEY=VALUE"),
])
def test_a_bad_executor_option_is_named_before_anything_is_written(tmp_path, option, value,
                                                                    message):
  done = _cli('unet_jax.sweep', 'launch', 'smoke', '--root', str(tmp_path / 'root'), option,
              value)
  assert done.returncode == 1 and done.stderr.startswith(f'Error: {message}'), done.stderr
  assert not (tmp_path / 'root').exists()


def test_runs_at_once_get_gpus_of_their_own_and_never_more_runs_than_gpus(tmp_path, monkeypatch):
  """On a 2-GPU host, --parallel 3 gave the third run no GPU: it trained on the CPU, unsaid."""
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '4,5')  # The GPUs this job was given.
  assert local_launcher.local_slots(1) == [(None, ['4', '5'])]
  assert local_launcher.local_slots(2) == [(None, ['4']), (None, ['5'])]
  with pytest.raises(ValueError, match=r'^--parallel 3 is more runs at once than the 2 GPU\(s\) '
                     r'here \(4,5\): .* use --parallel 2 or fewer\.$'):
    sweep.main(['launch', 'smoke', '--root', str(tmp_path / 'root'), '--parallel', '3'])
  assert not (tmp_path / 'root').exists()


def test_a_launch_asks_nvidia_smi_once(tmp_path, monkeypatch):
  """The early check of --parallel and the launcher each asked nvidia-smi for the GPUs."""
  calls = tmp_path / 'calls'
  fake = tmp_path / 'bin' / 'nvidia-smi'
  fake.parent.mkdir()
  fake.write_text(f'#!/bin/sh\necho asked >> {calls}\necho "GPU 0: H200 (UUID: GPU-a)"\n'
                  'echo "GPU 1: H200 (UUID: GPU-b)"\n')
  fake.chmod(0o755)
  monkeypatch.setenv('PATH', f'{fake.parent}{os.pathsep}{os.environ["PATH"]}')
  monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
  given = []
  monkeypatch.setattr(local_launcher.LocalLauncher, 'launch',
                      lambda self, runs, manifest: given.append(self.slots) or {})
  assert sweep.main(['launch', 'smoke', '--root', str(tmp_path / 'root'), '--parallel', '2']) == 0
  assert given == [[(None, ['0']), (None, ['1'])]]
  assert calls.read_text() == 'asked\n'


def test_a_signal_between_two_runs_leaves_the_rest_pending_and_says_launch_again(tmp_path,
                                                                               monkeypatch):
  """SIGTERM after a run has ended and before the next starts stopped nothing that was running:
  the launcher said 0 (every run it had started had finished) although 3 of the 4 never ran."""
  started = []

  def start(self, run, slot):  # The first run signals the launcher, then ends well.
    started.append(run.name)
    process = subprocess.Popen([sys.executable, '-c', 'import os, signal; '
                                'os.kill(os.getppid(), signal.SIGTERM)'])
    process.wait()
    return process, open(os.devnull, 'w')  # The launcher closes it.

  monkeypatch.setattr(local_launcher.LocalLauncher, '_start', start)
  state = sweep_runs.run_state
  monkeypatch.setattr(sweep_runs, 'run_state',
                      lambda root, name: 'finished' if name in started else state(root, name))
  root = tmp_path / 'root'
  assert sweep.main(['launch', 'smoke', '--root', str(root), '--parallel', '1']) == 75
  states = {name: run.get('state', 'pending')
            for name, run in sweep_runs.read_manifest(str(root))['runs'].items()}
  assert states == {started[0]: 'finished', **{n: 'pending' for n in states if n != started[0]}}
  assert len(started) == 1 and len(states) == 4


def test_runs_whose_data_folder_is_not_there_are_refused_before_any_starts(tmp_path, monkeypatch,
                                                                           capsys):
  """Each used to start, import TensorFlow and fail with the same error (25 times for the
  CPU-scale paper without ../shared). On SLURM the nodes may have a folder the launcher lacks:
  a warning, and the jobs are submitted."""
  started, submitted = [], []
  monkeypatch.setattr(local_launcher.LocalLauncher, 'launch',
                      lambda self, runs, manifest: started.extend(runs) or {})
  monkeypatch.setattr(slurm_launcher, 'submit_slurm',
                      lambda root, runs, manifest, args: submitted.extend(runs) or [])
  missing = tmp_path / 'isic_sample'
  folder = ['--set', 'data.source=folder', '--set', f'data.dir={missing}']
  with pytest.raises(ValueError, match=re.escape(
      f"Not a directory: config.data.dir='{missing}' (4 run(s): loss=bce-seed=0, loss=bce-seed=1, "
      'loss=bce_dice-seed=0, ...). Each of these runs would fail at its start; put the data '
      'there, or fix the path')):
    sweep.main(['launch', 'smoke', '--root', str(tmp_path / 'root'), *folder])
  assert started == [] and not any((tmp_path / 'root').glob('loss=*'))
  assert sweep.main(['launch', 'smoke', '--root', str(tmp_path / 'slurm'), '--executor', 'slurm',
                     *folder]) == 75
  assert len(submitted) == 4
  assert 'sweep: warning, as seen from this machine: Not a directory' in capsys.readouterr().err
  missing.mkdir()  # The data there: launched; and the synthetic source reads no folder.
  assert sweep.main(['launch', 'smoke', '--root', str(tmp_path / 'root'), *folder]) == 0
  assert sweep.main(['launch', 'smoke', '--root', str(tmp_path / 'synthetic'), '--set',
                     f'data.dir={tmp_path / "elsewhere"}']) == 0
  assert len(started) == 8


def test_runs_whose_init_from_run_is_not_there_are_refused_before_any_starts(
    tmp_path, monkeypatch):
  """A sweep that starts from another sweep's runs (`config.init_from`), launched before them:
  each run would fail at its start. Refused at once, naming the path; a run that has a
  checkpoint of its own resumes from it and needs no source."""
  started = []
  monkeypatch.setattr(local_launcher.LocalLauncher, 'launch',
                      lambda self, runs, manifest: started.extend(runs) or {})
  source = tmp_path / 'pre' / 'loss=bce-seed=0'
  args = ['launch', 'smoke', '--root', str(tmp_path / 'ft'), '--set',
          f'init_from.workdir={os.path.relpath(source)}']
  with pytest.raises(ValueError, match=re.escape(
      f"Cannot start from: no run (no config.json) at config.init_from.workdir='{source}' (4 "
      'run(s): loss=bce-seed=0, loss=bce-seed=1, loss=bce_dice-seed=0, ...). Each of these runs '
      'would fail at its start; launch (and finish) the sweep of the runs they start from first, '
      'or fix the path.')):
    sweep.main(args)
  assert started == []
  # There but still training: its final checkpoint (the default) does not exist yet.
  source.mkdir(parents=True)
  (source / 'config.json').write_text('{}')
  results.write_run_summary(str(source), {'state': 'running', 'step': 8})
  with pytest.raises(ValueError, match=re.escape(
      f"Cannot start from: the run at config.init_from.workdir='{source}' has not finished "
      '(state running), and init_from.checkpoint is final (4 run(s)')):
    sweep.main(args)
  latest = [*args[:3], str(tmp_path / 'latest'), *args[4:], '--set', 'init_from.checkpoint=latest']
  assert sweep.main(latest) == 0 and len(started) == 4
  started.clear()
  shutil.rmtree(source)
  for name in ('loss=bce-seed=0', 'loss=bce-seed=1', 'loss=bce_dice-seed=0',
               'loss=bce_dice-seed=1'):  # Each resumes from its own checkpoint.
    (tmp_path / 'ft' / name / 'checkpoints' / '8').mkdir(parents=True)
  assert sweep.main(args) == 0 and len(started) == 4
  started.clear()
  source.mkdir(parents=True)
  (source / 'config.json').write_text('{}')
  results.write_run_summary(str(source), {'state': 'finished', 'step': 8})
  assert sweep.main([*args[:3], str(tmp_path / 'ft2'), *args[4:]]) == 0 and len(started) == 4


def _pre_ft_sweep(tmp_path, runs: str) -> str:
  """A sweep file of `_one_run_sweep`'s tiny runs, its runs given as Python source."""
  path = tmp_path / 'pre_ft.py'
  path.write_text(pathlib.Path(_one_run_sweep(tmp_path)).read_text().replace(
      "hyper.sweep('seed', [3])", runs))
  return str(path)


# Fine-tuning runs first in the file: a launcher that took them in order would start them first.
PRE_FT = ("[{'name': 'ft-fold=0', 'data.fold': 0, 'init_from.workdir': 'pre-fold=0'}, "
          "{'name': 'ft-fold=1', 'data.fold': 1, 'init_from.workdir': 'pre-fold=1'}, "
          "{'name': 'pre-fold=0', 'data.fold': 0}, {'name': 'pre-fold=1', 'data.fold': 1}]")


def _fake_runs(monkeypatch, fails: set[str]) -> list:
  """Runs as processes that end after 1 s, writing when (`<workdir>/ended`), with status 1 for
  the names in `fails` (read when each starts) and 0 for the others; returns the list of (name,
  time, command) of each start."""
  events = []

  def start(self, run, slot):
    workdir = os.path.join(self.root, run.name)
    os.makedirs(workdir, exist_ok=True)
    events.append((run.name, time.time(), run.command(workdir)))
    ended = os.path.join(workdir, 'ended')
    process = subprocess.Popen([sys.executable, '-c', 'import sys, time; time.sleep(1); '
                                f'open({ended!r}, "w").write(str(time.time())); '
                                f'sys.exit({int(run.name in fails)})'])
    return process, open(os.devnull, 'w')  # The launcher closes it.

  def run_state(root, name):
    ended = os.path.exists(os.path.join(root, name, 'ended'))
    return 'pending' if not ended else 'failed' if name in fails else 'finished'

  monkeypatch.setattr(local_launcher.LocalLauncher, '_start', start)
  monkeypatch.setattr(sweep_runs, 'run_state', run_state)
  return events


def test_a_launch_that_leaves_a_failed_run_unlaunched_exits_with_status_1(tmp_path, monkeypatch):
  """A run that failed before, skipped (not retried), while the others finish now: the sweep
  has not ended well. It said 0, and `launch ... && compare ...` compared it."""
  events = _fake_runs(monkeypatch, {'a'})
  root = tmp_path / 'root'
  launch = ['launch', _pre_ft_sweep(tmp_path, "[{'name': 'a'}, {'name': 'b'}]"), '--root',
            str(root)]
  assert sweep.main(launch) == 1 and len(events) == 2
  (root / 'b' / 'ended').unlink()  # b to do again (e.g. its workdir removed), a still failed.
  assert sweep.main(launch) == 1 and [name for name, _, _ in events[2:]] == ['b']


def test_a_run_that_starts_from_a_run_of_its_sweep_starts_once_that_one_has_finished(
    tmp_path, monkeypatch, capsys):
  """`init_from.workdir` naming a run of the same sweep: that run's workdir under the root, and
  the run waits for it (2 at once here, so it could start at once); a source that fails leaves
  its runs unstarted (exit status 1, and so on every launch until it is retried)."""
  fails = {'pre-fold=1'}
  events = _fake_runs(monkeypatch, fails)
  root = tmp_path / 'root'
  launch = ['launch', _pre_ft_sweep(tmp_path, PRE_FT), '--root', str(root), '--parallel', '2']
  assert sweep.main(launch) == 1
  started = {name: (at, command) for name, at, command in events}
  assert sorted(started) == ['ft-fold=0', 'pre-fold=0', 'pre-fold=1']
  ended = float((root / 'pre-fold=0' / 'ended').read_text())
  assert started['ft-fold=0'][0] >= ended
  assert f'--config.init_from.workdir={root / "pre-fold=0"}' in started['ft-fold=0'][1]
  assert not any(arg.startswith('--config.init_from') for arg in started['pre-fold=0'][1])
  err = capsys.readouterr().err
  assert 'sweep: ft-fold=1 not started: it starts from pre-fold=1, which ended failed.' in err
  assert ('sweep: 0/4 finished, 2 running, 0 failed, 2 waiting (2 for the runs they start '
          'from)\n') in err, err
  states = {n: r.get('state', 'pending')
            for n, r in sweep_runs.read_manifest(str(root))['runs'].items()}
  assert states == {'ft-fold=0': 'finished', 'ft-fold=1': 'pending', 'pre-fold=0': 'finished',
                    'pre-fold=1': 'failed'}
  assert ('| ft-fold=1 | pending (starts from pre-fold=1, which failed: --retry-failed launches '
          'it) | - |') in sweep.status_table(str(root))
  # Launched again: nothing to start while its source stays failed.
  events.clear()
  assert sweep.main(launch) == 1 and events == []
  assert ('1 not started: ft-fold=1 (it starts from pre-fold=1, which failed; fix that, then '
          'launch again with --retry-failed).') in capsys.readouterr().out
  # With a checkpoint of its own (it had started before), it resumes: it reads no source.
  (root / 'ft-fold=1' / 'checkpoints' / '8').mkdir(parents=True)
  assert sweep.main(launch) == 1 and [name for name, _, _ in events] == ['ft-fold=1']
  shutil.rmtree(root / 'ft-fold=1')
  events.clear()
  # The source retried, and this time it finishes: then the run that starts from it.
  fails.clear()
  (root / 'pre-fold=1' / 'ended').unlink()
  manifest = sweep_runs.read_manifest(str(root))
  manifest['runs']['pre-fold=1']['state'] = 'running'  # As the launcher records it at its start.
  manifest['runs']['ft-fold=1']['state'] = 'pending'  # Its folder removed above.
  sweep_runs.write_manifest(str(root), manifest)
  assert ('| ft-fold=1 | pending (starts from pre-fold=1 once it has finished) | - |' in
          sweep.status_table(str(root)))
  assert sweep.main([*launch, '--retry-failed']) == 0
  assert [name for name, _, _ in events] == ['pre-fold=1', 'ft-fold=1']


def test_the_launchers_eta_reads_the_runs_time_left_from_their_files(tmp_path, monkeypatch):
  """Before any run had finished, the progress line had no ETA (it took the mean duration of
  finished runs, counting each running run, and each run waiting to resume, as a whole run). Now
  the time left of a run that has trained comes from its files, as `status` shows it; a run that
  has logged nothing yet and the fresh waiting ones take as long as a run is expected to take;
  the runs share the slots."""
  config = {'batch_size': 16, 'num_train_steps': 1000,
            'eval': {'every_steps': 500, 'pooled_every_steps': 100}}
  timing = {'pooled_validation_seconds': 2.0, 'native_validation_seconds': 20.0}

  def record(name, step, rows='', **more):
    (tmp_path / name).mkdir(exist_ok=True)
    results.write_run_summary(str(tmp_path / name), {
        'state': 'running', 'step': step, 'num_train_steps': 1000, 'best': None,
        'wall_time_s': 60.0, 'config': config, 'timing': timing,
        'selection': {'metric': 'threshold_jaccard', 'split': 'val'}, **more})
    path = tmp_path / name / results.RUN_SUMMARY  # Written at 12:00:00; it is 12:00:30 now.
    path.write_text(json.dumps({**json.loads(path.read_text()),
                                'updated': '2026-11-29T12:00:00+00:00'}))
    (tmp_path / name / results.METRICS_JSONL).write_text(rows)

  record('a', 100, '{"step": 300, "train_loss": 0.5, "train_images_per_sec": 160.0}\n')
  # Stopped at step 500 in an earlier launch, waiting to resume: 500 x 16 / 160 img/s = 50 s,
  # pooled passes at 600, ..., 1000 (5 x 2 s) and a native one at 1000 (20 s): 80 s left.
  record('c', 500, state='stopped', train_images_per_sec=160.0)
  now = datetime.datetime(2026, 11, 29, 12, 0, 30, tzinfo=datetime.UTC).timestamp()
  monkeypatch.setattr(time, 'time', lambda: now)
  stream = io.StringIO()
  launcher = local_launcher.LocalLauncher(str(tmp_path), 2, stream=stream,
                                          slots=[([0], None), ([0], None)])
  # 'b' started 3.5 s ago and has written nothing (the half second: what this test takes).
  running = {'a': time.perf_counter(), 'b': time.perf_counter() - 3.5}

  def line(durations, pending=('c', 'd', 'e')):
    launcher._progress({}, 5, running, list(pending), durations)
    return stream.getvalue().splitlines()[-1]

  # a: 700 steps x 16 / 160 img/s = 70 s, pooled passes at 400, ..., 1000 (7 x 2 s) and native
  # ones at 500 and 1000 (2 x 20 s): 124 s left, of 90 + 124 = 214 s in all (its wall time: 60 s
  # summed, and 30 s since its summary). b: 214 - 3.5 = 210.5 s left. Waiting: c 80 s, and the
  # fresh d and e 214 s each. Over 2 slots: (124 + 210.5 + 80 + 428) / 2 = 421.25 s.
  assert line([]) == 'sweep: 0/5 finished, 2 running, 0 failed, 3 waiting, ETA 0:07:01'
  # Runs that trained from start to end took 300 s: b 296.5 s left, d and e 300 s each:
  # (124 + 296.5 + 80 + 600) / 2 = 550.25 s.
  assert line([300.0]).endswith(', ETA 0:09:10')
  # At least the longest running run's time left: 296.5 s, when nothing waits.
  assert line([300.0], pending=()).endswith(', ETA 0:04:56')
  # Validations of a kind not timed yet are not counted: the ETA says so.
  record('a', 100, '{"step": 300, "train_loss": 0.5, "train_images_per_sec": 160.0}\n', timing={})
  assert line([300.0]).endswith(', ETA at least 0:08:43')  # (70 + 296.5 + 80 + 600) / 2 s.
  # Nothing to tell how long a fresh run takes: neither a finished run nor a running run's speed.
  (tmp_path / 'a' / results.METRICS_JSONL).unlink()
  (tmp_path / 'a' / results.RUN_SUMMARY).unlink()
  assert line([]) == 'sweep: 0/5 finished, 2 running, 0 failed, 3 waiting'


def test_a_sweep_that_trains_a_run_and_then_one_from_it_ends_with_both_finished(tmp_path):
  """Real runs (2 at once): the fine-tuning run, first in the file, waits for its source's final
  checkpoint and starts from it (it would fail at its start otherwise: no run there yet)."""
  root = tmp_path / 'root'
  runs = ("[{'name': 'ft', 'init_from.workdir': 'pre', 'data.image_size': 48}, "
          "{'name': 'pre'}]")
  done = _cli('unet_jax.sweep', 'launch', _pre_ft_sweep(tmp_path, runs), '--root', str(root),
              '--parallel', '2')
  assert done.returncode == 0, done.stdout + done.stderr
  summary = results.read_run_summary(str(root / 'ft'))
  assert summary['state'] == 'finished' and summary['init_from'] == {
      'workdir': str(root / 'pre'), 'checkpoint': 'final', 'step': 2,
      'val_images_in_source_training': 0}
  source_ended = os.path.getmtime(root / 'pre' / 'summary.json')
  with open(root / 'ft' / sweep_runs.LOG) as f:
    started = time.mktime(time.strptime(f.read().split('=== ')[1][:19], '%Y-%m-%d %H:%M:%S'))
  assert started >= int(source_ended)


def test_on_slurm_a_run_that_starts_from_a_run_of_its_sweep_waits_for_its_job(tmp_path):
  """Its job depends on the source's (`--dependency=afterok`), submitted now or still queued from
  an earlier launch; SLURM cancels it if the source's job fails, and launching again then
  submits nothing until the source is retried."""
  env, record, queue = fake_slurm.install(tmp_path)
  root = tmp_path / 'root'
  runs = "[{'name': 'ft', 'init_from.workdir': 'pre'}, {'name': 'pre'}]"
  launch = ('unet_jax.sweep', 'launch', _pre_ft_sweep(tmp_path, runs), '--root', str(root),
            '--executor', 'slurm', '--slurm-param', 'account=vision')
  first = _cli(*launch, env=env)
  assert first.returncode == sweep_runs.STOPPED_STATUS, first.stdout + first.stderr
  assert 'Submitted 2 job(s): 4242, 4243' in first.stdout
  pre, ft = record.read_text().split('#!/bin/bash')[1:]
  assert '--dependency' not in pre and '#SBATCH --account=vision' in pre
  for line in ('#SBATCH --dependency=afterok:4242\n', '#SBATCH --kill-on-invalid-dep=yes\n',
               '#SBATCH --account=vision\n'):
    assert line in ft, line
  pickled = next((root / 'slurm' / '4243').glob('*_submitted.pkl')).read_bytes()
  assert f'--config.init_from.workdir={root / "pre"}'.encode() in pickled
  # The source still queued, the other's job cancelled (by hand): its new job waits for 4242.
  queue.write_text('4242|PENDING\n')
  (tmp_path / 'accounting.txt').write_text('4243|CANCELLED by 1000|0:0\n')
  again = _cli(*launch, env=env)
  assert 'Submitted 1 job(s): 4244' in again.stdout, again.stdout + again.stderr
  assert record.read_text().split('#!/bin/bash')[-1].count('--dependency=afterok:4242\n') == 1
  # The source's job failed; SLURM cancelled the one that waited for it.
  queue.write_text('')
  (tmp_path / 'accounting.txt').write_text('4242|FAILED|1:0\n4244|CANCELLED|0:0\n')
  third = _cli(*launch, env=env)
  assert third.returncode == 1, third.stdout + third.stderr
  assert ('1 not started: ft (it starts from pre, which failed; fix that, then launch again '
          'with --retry-failed).') in third.stdout
  assert record.read_text().count('#!/bin/bash') == 3  # Nothing submitted.
  # With a checkpoint of its own, it resumes from it, and its job waits for nothing.
  (root / 'ft' / 'checkpoints' / '8').mkdir(parents=True)
  fourth = _cli(*launch, env=env)
  assert 'Submitted 1 job(s): 4245' in fourth.stdout, fourth.stdout + fourth.stderr
  assert '--dependency' not in record.read_text().split('#!/bin/bash')[-1]


def test_a_run_whose_source_another_process_trains_waits_for_that_process(
    tmp_path, monkeypatch, capsys):
  """A killed launcher leaves its runs training (each in a session of its own): launched again,
  the sweep leaves the source to its process and starts the run after it once that process has
  ended with the source finished (it said: launch again later); if that process is killed
  instead, the run stays pending (exit status 75: launched again, the source resumes)."""
  import threading

  events = _fake_runs(monkeypatch, set())
  monkeypatch.setattr(sweep.workdir_lock, 'training_alive',
                      lambda workdir: os.path.exists(os.path.join(workdir, 'alive')))
  runs = "[{'name': 'ft', 'init_from.workdir': 'pre'}, {'name': 'pre'}]"
  launch = ['launch', _pre_ft_sweep(tmp_path, runs), '--root', str(tmp_path / 'root'),
            '--parallel', '2']

  def other_process(pre, finishes: bool):  # Holds pre's lock for 1.5 s, then ends.
    pre.mkdir(parents=True)
    (pre / 'alive').write_text('')

    def end():
      time.sleep(1.5)
      if finishes:
        (pre / 'ended').write_text(str(time.time()))
      (pre / 'alive').unlink()
    threading.Thread(target=end, daemon=True).start()

  other_process(tmp_path / 'root' / 'pre', finishes=True)
  assert sweep.main(launch) == 0
  assert [name for name, _, _ in events] == ['ft']
  assert events[0][1] >= float((tmp_path / 'root' / 'pre' / 'ended').read_text())
  out, err = capsys.readouterr()
  assert 'pre (its training process is alive)' in out
  assert 'sweep: ft waits for pre, which another process trains (its log.txt says which).' in err
  # Killed instead of finishing: nothing started; launch again later.
  events.clear()
  launch[3] = str(tmp_path / 'killed')
  other_process(tmp_path / 'killed' / 'pre', finishes=False)
  assert sweep.main(launch) == sweep_runs.STOPPED_STATUS and events == []
  assert 'sweep: ft not started: it starts from pre, which ended interrupted.' in (
      capsys.readouterr().err)


def test_a_run_given_another_source_under_its_name_is_refused(tmp_path):
  """Where a source lives may change on resume (a moved root), but a sweep names it by its
  run's name: another name is another recipe, refused as any other changed override is."""
  runs = "[{'name': 'ft', 'init_from.workdir': 'pre'}, {'name': 'pre'}, {'name': 'pre2'}]"
  root = str(tmp_path / 'root')
  sweep.plan(root, sweep_runs.load_sweep(_pre_ft_sweep(tmp_path, runs)))
  changed = sweep_runs.load_sweep(_pre_ft_sweep(tmp_path, runs.replace("'pre'}, {'name': 'pre'",
                                                                  "'pre2'}, {'name': 'pre'")))
  assert [run.after for run in changed] == ['pre2', None, None]
  with pytest.raises(ValueError, match=re.escape("Run 'ft' in sweep.json was launched with other "
                                                 'overrides')):
    sweep.plan(root, changed)


def test_runs_that_start_from_themselves_or_each_other_are_an_error_naming_them(tmp_path):
  runs = ("[{'name': 'a', 'init_from.workdir': 'b'}, {'name': 'b', 'init_from.workdir': 'c'}, "
          "{'name': 'c', 'init_from.workdir': 'a'}]")
  with pytest.raises(ValueError, match=re.escape(
      'runs that start from each other (config.init_from.workdir) can never start: a -> b -> c -> '
      "a. Make one of them start from scratch (init_from.workdir='')")):
    sweep_runs.load_sweep(_pre_ft_sweep(tmp_path, runs))
  with pytest.raises(ValueError, match=re.escape('never start: a -> a.')):
    sweep_runs.load_sweep(_pre_ft_sweep(tmp_path, "[{'name': 'a', 'init_from.workdir': 'a'}]"))


SHIPPED = {'smoke': 4, 'cpu_selection': None, 'cv5:quickstart': 5, 'ablation:smoke': None,
           'progressive:quickstart': 20}


def test_every_shipped_sweep_loads_and_names_only_fields_of_its_config():
  """load_sweep checks each override against its run's config; a shipped sweep that failed it
  would fail at `launch`, before any run."""
  folder = os.path.join(REPO, 'experiments', 'sweeps')
  assert sorted(name[:-3] for name in os.listdir(folder) if name.endswith('.py')) == sorted(
      spec.split(':')[0] for spec in SHIPPED)
  for spec, count in SHIPPED.items():
    runs = sweep_runs.load_sweep(spec)
    assert count is None or len(runs) == count, spec
  runs = {run.name: run for run in sweep_runs.load_sweep('progressive:quickstart')}
  for fold in range(5):  # Half the size, then the size from it with half the steps.
    pre, progressive = runs[f'pre-fold={fold}'], runs[f'progressive-fold={fold}']
    assert progressive.after == pre.name and pre.after is None
    assert pre.overrides['data.image_size'] == 32 and 'data.image_size' not in (
        progressive.overrides)
    assert progressive.overrides['num_train_steps'] == runs[f'short-fold={fold}'].overrides[
        'num_train_steps'] == 300  # configs/quickstart.py: 64 px, 600 steps, lr 3e-3.
    low_lr = runs[f'progressive_low_lr-fold={fold}']
    assert low_lr.after == pre.name and low_lr.overrides['optim.lr'] == pytest.approx(3e-4)


def test_a_changed_sweep_file_is_an_error_naming_the_run(trained_sweep, tmp_path):
  changed = tmp_path / 'tiny.py'
  with open(trained_sweep['file']) as f:
    changed.write_text(f.read().replace("'num_train_steps': 24", "'num_train_steps': 30"))
  done = _cli('unet_jax.sweep', 'launch', str(changed), '--root', trained_sweep['root'],
              '--dry-run')
  assert done.returncode != 0 and "Run 'loss=bce-seed=0'" in done.stderr
  # What a resume may change (how often a run validates, where its data is) is no other run:
  # launched again so, the sweep goes on, as each run's training does.
  changed.write_text(changed.read_text().replace("'num_train_steps': 30", "'num_train_steps': 24")
                     .replace("'eval.every_steps': 12", "'eval.every_steps': 6"))
  done = _cli('unet_jax.sweep', 'launch', str(changed), '--root', trained_sweep['root'],
              '--set', 'data.tfds_data_dir=elsewhere', '--dry-run')
  assert done.returncode == 0 and '0 to launch, 5 skipped' in done.stdout, done.stderr


def test_compare_prints_the_statistics_and_writes_the_tables(trained_sweep, tmp_path):
  out = tmp_path / 'comparison'
  done = _cli('unet_jax.compare', trained_sweep['root'], '--out', str(out), '--bootstrap', '300')
  assert done.returncode == 0, done.stderr
  assert 'bogus' not in done.stdout  # The failed run left no validation to compare.
  for text in ('### threshold_jaccard', '| loss=bce (baseline) | bce | 2 | 8 |', '± ',
               'p (Wilcoxon, Holm)', 'of 8 |'):
    assert text in done.stdout
  assert (out / 'comparison.md').read_text().strip() == done.stdout.split('Wrote')[0].strip()
  with open(out / 'comparison.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 * len(compare.DEFAULT_METRICS)
  # The long table holds every per-image value of every run, as its CSV has it.
  with open(out / 'results_long.csv') as f:
    long_rows = list(csv.DictReader(f))
  assert len(long_rows) == 4 * 8 * len(compare.DEFAULT_METRICS)
  run = os.path.join(trained_sweep['root'], 'loss=bce-seed=1')
  scores = results.read_per_image_csv(os.path.join(
      run, results.read_run_summary(run)['final']['per_image_csv']))
  mine = {r['image']: float(r['value']) for r in long_rows
          if r['run'] == 'loss=bce-seed=1' and r['metric'] == 'dice'}
  assert mine == {s.image_id: s.metrics()['dice'] for s in scores}


def test_tensorboard_hparams_shows_every_run_with_its_metrics(trained_sweep):
  """Read back with TensorBoard's own HParams plugin, as the dashboard reads it."""
  from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
  from tensorboard.plugins import base_plugin
  from tensorboard.plugins.hparams import hparams_plugin
  from werkzeug import test as wtest
  from werkzeug import wrappers

  root = trained_sweep['root']
  mux = plugin_event_multiplexer.EventMultiplexer()
  mux.AddRunsFromDirectory(root)
  mux.Reload()
  context = base_plugin.TBContext(logdir=root, multiplexer=mux,
                                  data_provider=data_provider.MultiplexerDataProvider(mux, root))
  apps = hparams_plugin.HParamsPlugin(context).get_plugin_apps()

  def post(route, body):
    client = wtest.Client(apps[route], wrappers.Response)
    response = client.post(route, data=json.dumps(body), content_type='application/json')
    assert response.status_code == 200
    return json.loads(response.get_data())

  experiment = post('/experiment', {'experimentName': ''})
  metrics = [m['name']['tag'] for m in experiment['metricInfos']]
  assert {'val_threshold_jaccard', 'val_dice', 'best_threshold_jaccard'} <= set(metrics)
  assert {'loss', 'seed', 'optim.lr'} <= {h['name'] for h in experiment['hparamInfos']}
  groups = post('/session_groups', {
      'experimentName': '', 'startIndex': 0, 'sliceSize': 100,
      'allowedStatuses': ['STATUS_UNKNOWN', 'STATUS_SUCCESS', 'STATUS_FAILURE', 'STATUS_RUNNING'],
      'colParams': [{'metric': {'tag': m}} for m in metrics] + [{'hparam': 'loss'},
                                                               {'hparam': 'seed'}]})
  shown = {(g['hparams']['loss'], g['hparams']['seed']): g for g in groups['sessionGroups']}
  assert set(shown) == {('bce', 0.0), ('bce', 1.0), ('bce_dice', 0.0), ('bce_dice', 1.0)}
  for (loss, seed), group in shown.items():
    summary = results.read_run_summary(os.path.join(root, f'loss={loss}-seed={int(seed)}'))
    value = {m['name']['tag']: m['value'] for m in group['metricValues']}
    assert value['val_dice'] == pytest.approx(summary['final']['metrics']['dice'], abs=1e-6)
    assert value['best_threshold_jaccard'] == pytest.approx(summary['best']['value'], abs=1e-6)


def _one_run_sweep(tmp_path):
  path = tmp_path / 'one.py'
  path.write_text(
      'from unet_jax import hyper\n\n\ndef get_sweep(arg=None):\n'
      "  return {'config': 'quickstart', 'overrides': {'data.image_size': 32, "
      "'data.synthetic_size': 32, 'data.num_examples': 20, 'model.depth': 1, "
      "'model.base_width': 4, 'batch_size': 8, 'num_train_steps': 2, 'eval.batch_size': 8, "
      "'optim.warmup_steps': 1}, 'runs': hyper.sweep('seed', [3])}\n")
  return str(path)


def test_slurm_executor_runs_through_submitits_local_executor(tmp_path):
  """Its jobs know no dependencies: a run that starts from another is submitted once that one's
  job has ended."""
  root = tmp_path / 'root'
  runs = "[{'name': 'ft', 'init_from.workdir': 'pre'}, {'name': 'pre'}]"
  done = _cli('unet_jax.sweep', 'launch', _pre_ft_sweep(tmp_path, runs), '--root', str(root),
              '--executor', 'slurm', '--submitit-cluster', 'local', '--wait')
  assert done.returncode == 0, done.stdout + done.stderr
  assert 'sweep: ft waits for pre: waiting for the jobs: 0/1 ended' in done.stdout, done.stdout
  assert 'Submitted 2 job(s)' in done.stdout
  assert results.read_run_summary(str(root / 'pre'))['state'] == 'finished'
  summary = results.read_run_summary(str(root / 'ft'))
  assert summary['state'] == 'finished' and summary['init_from']['workdir'] == str(root / 'pre')
  assert all(entry['job_id'] for entry in sweep_runs.read_manifest(str(root))['runs'].values())


def test_a_slurm_job_signalled_before_its_time_limit_checkpoints_requeues_and_finishes(tmp_path):
  """SIGUSR2 to a job (SLURM's warning before the time limit, or preemption) goes to submitit's
  handler, in the job's own process: the training is stopped cleanly (it checkpoints), not
  killed, the job requeues itself (here submitit's local executor restarts it) and the training
  resumes from that checkpoint and finishes."""
  sweep_file = tmp_path / 'long.py'
  sweep_file.write_text(
      'def get_sweep(arg=None):\n'
      "  return {'config': 'quickstart', 'overrides': {'data.image_size': 32, "
      "'data.synthetic_size': 32, 'data.num_examples': 20, 'model.depth': 1, "
      "'model.base_width': 4, 'batch_size': 8, 'num_train_steps': 600, 'log_every_steps': 1, "
      "'checkpoint_every_steps': 100000, 'eval.every_steps': 100000, 'eval.batch_size': 8, "
      "'optim.warmup_steps': 1}, 'runs': [{'seed': 3}]}\n")
  root = tmp_path / 'root'
  with open(tmp_path / 'launch.txt', 'w+') as out:  # Not a pipe: the job's process keeps it.
    status = subprocess.run(
        [sys.executable, '-m', 'unet_jax.sweep', 'launch', str(sweep_file), '--root', str(root),
         '--executor', 'slurm', '--submitit-cluster', 'local'], cwd=REPO, stdout=out,
        stderr=subprocess.STDOUT, timeout=300, check=False).returncode
    out.seek(0)
    printed = out.read()
  assert status == sweep_runs.STOPPED_STATUS and 'Submitted 1 job(s)' in printed, printed
  job = sweep_runs.read_manifest(str(root))['runs']['seed=3']['job_id']
  workdir, log = root / 'seed=3', root / 'slurm' / job / f'{job}_0_log.err'
  pids = [int(job)]  # The job's controller (submitit's local executor), killed at the end.
  try:
    deadline = time.monotonic() + 300
    while not log.is_file() or 'step 20/600 ' not in log.read_text():  # Training, past its compile.
      assert time.monotonic() < deadline, log.read_text()[-3000:] if log.is_file() else printed
      time.sleep(0.5)
    training = json.loads((workdir / '.locks' / 'train_process_0').read_text())['pid']
    pids.append(training)
    with open(f'/proc/{training}/stat') as f:
      job_process = int(f.read().rsplit(')', 1)[1].split()[1])  # The training's parent.
    with open(f'/proc/{training}/environ', 'rb') as f:
      environment = dict(item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item)
    # The job's own variables (as SLURM's on a cluster: its nodes, tasks, GPUs), less the
    # simulated device count the test suite sets.
    assert environment[b'SUBMITIT_LOCAL_JOB_ID'] == job.encode(), environment
    assert b'xla_force_host_platform_device_count' not in environment.get(b'XLA_FLAGS', b'')
    pids.append(job_process)
    os.kill(job_process, signal.SIGUSR2)
    while (results.read_run_summary(str(workdir)) or {}).get('state') != 'finished':
      assert time.monotonic() < deadline + 300, log.read_text()[-3000:]
      time.sleep(1)
  finally:  # Nothing left running if the test failed.
    for pid in pids:
      with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
  text = log.read_text()
  assert 'TrainingJob: SIGUSR2: the training' in text, text[-3000:]
  stopped = re.search(r'stopped at step (\d+)', text)
  assert stopped and 20 <= int(stopped.group(1)) < 600, text[-3000:]
  assert f'Resuming from the checkpoint of step {stopped.group(1)}' in text, text[-3000:]
  steps = [json.loads(line)['step'] for line in (workdir / 'metrics.jsonl').read_text().splitlines()
           if 'train_loss' in line]
  assert steps == list(range(1, 601))  # Each step logged once, across the two jobs.


def test_slurm_executor_submits_what_sbatch_needs(tmp_path):
  """A fake `sbatch` on PATH records what would be submitted."""
  env, record, _ = fake_slurm.install(tmp_path)
  root = tmp_path / 'root'
  done = _cli('unet_jax.sweep', 'launch', _one_run_sweep(tmp_path), '--root', str(root),
              '--executor', 'slurm', '--slurm-partition', 'gpu', '--slurm-time', '90',
              '--slurm-gpus-per-node', '8', '--slurm-nodes', '2', '--slurm-cpus-per-task', '16',
              '--slurm-mem-gb', '200', '--slurm-param', 'account=vision', '--slurm-param',
              'qos=high', '--slurm-param', 'exclusive', env=env)
  assert done.returncode == sweep_runs.STOPPED_STATUS, done.stdout + done.stderr  # Not ended yet.
  assert 'Submitted 1 job(s): 4242' in done.stdout
  submitted = record.read_text()
  for line in ('#SBATCH --partition=gpu', '#SBATCH --nodes=2', '#SBATCH --gpus-per-node=8',
               '#SBATCH --time=90', '#SBATCH --signal=USR2@120', '#SBATCH --ntasks-per-node=1',
               '#SBATCH --cpus-per-task=16', '#SBATCH --mem=200GB', '#SBATCH --account=vision',
               '#SBATCH --qos=high', '#SBATCH --exclusive\n'):
    assert line in submitted, line
  assert sweep_runs.read_manifest(str(root))['runs']['seed=3'] == {
      **sweep_runs.read_manifest(str(root))['runs']['seed=3'], 'state': 'submitted',
      'job_id': '4242'}
  # The command each node runs: the training, as a subprocess, across the nodes.
  pickled = next((tmp_path / 'root' / 'slurm').rglob('*_submitted.pkl')).read_bytes()
  assert b'unet_jax.main' in pickled and b'--jax_distributed' in pickled


def test_a_run_slurm_still_holds_is_not_submitted_twice(tmp_path):
  """Launching again while a run's job waits in SLURM's queue (it holds no workdir lock yet) must
  not submit it again; once SLURM no longer lists the job and the run did not finish, it is
  interrupted and submitted again; where squeue cannot be asked, it is submitted again with a
  warning (the workdir lock stops a second training)."""
  env, record, queue = fake_slurm.install(tmp_path)
  root = tmp_path / 'root'
  launch = ('unet_jax.sweep', 'launch', _one_run_sweep(tmp_path), '--root', str(root),
            '--executor', 'slurm')
  first = _cli(*launch, env=env)
  assert first.returncode == sweep_runs.STOPPED_STATUS, first.stdout + first.stderr
  assert 'Submitted 1 job(s): 4242' in first.stdout
  queue.write_text('4241|RUNNING\n4242|PENDING\n')  # Another job of the user's, and ours.
  status = _cli('unet_jax.sweep', 'status', '--root', str(root), env=env)
  assert '| seed=3 | pending (SLURM job 4242) |' in status.stdout, status.stdout
  again = _cli(*launch, env=env)
  assert again.returncode == sweep_runs.STOPPED_STATUS, again.stdout + again.stderr
  assert 'seed=3 (SLURM job 4242, pending)' in again.stdout
  assert record.read_text().count('#SBATCH --signal') == 1  # sbatch was called once in all.
  assert (tmp_path / 'squeue_args').read_text().split()[:3] == ['--noheader', '--array', '--user']
  queue.write_text('4241|RUNNING\n')  # Ended without a summary (e.g. cancelled while queued).
  status = _cli('unet_jax.sweep', 'status', '--root', str(root), env=env)
  assert '| seed=3 | interrupted |' in status.stdout, status.stdout
  third = _cli(*launch, env=env)
  assert third.returncode == sweep_runs.STOPPED_STATUS, third.stdout + third.stderr
  assert 'Submitted 1 job(s): 4243' in third.stdout
  queue.unlink()  # squeue fails: not a host it can be asked from.
  fourth = _cli(*launch, env=env)
  assert (fourth.returncode == sweep_runs.STOPPED_STATUS
          and 'Submitted 1 job(s): 4244' in fourth.stdout)
  assert 'cannot ask SLURM (squeue) whether job 4243 of seed=3 is still queued' in fourth.stderr
  assert sweep_runs.read_manifest(str(root))['runs']['seed=3']['job_id'] == '4244'
  assert record.read_text().count('#SBATCH --signal') == 3


def test_a_job_array_is_one_submission_whose_elements_squeue_and_sacct_answer_for(tmp_path):
  """--slurm-array: one sbatch for all runs; each run follows its own element ('4242_1') in
  squeue, sacct and submitit's log folder."""
  env, record, queue = fake_slurm.install(tmp_path)
  path = tmp_path / 'two.py'
  path.write_text(pathlib.Path(_one_run_sweep(tmp_path)).read_text().replace("[3]", "[3, 4]"))
  root = tmp_path / 'root'
  launch = ('unet_jax.sweep', 'launch', str(path), '--root', str(root), '--executor', 'slurm',
            '--slurm-array')
  first = _cli(*launch, env=env)
  assert first.returncode == sweep_runs.STOPPED_STATUS, first.stdout + first.stderr
  assert 'Submitted 2 job(s): 4242_0, 4242_1' in first.stdout, first.stdout
  assert record.read_text().count('#SBATCH --array=0-1') == 1
  queue.write_text('4242_0|RUNNING\n')  # Element 1 has ended, and failed.
  (tmp_path / 'accounting.txt').write_text('4242_1|FAILED|1:0\n4242_1.batch|FAILED|1:0\n')
  log = root / 'slurm' / '4242_1' / '4242_1_0_log.err'
  log.parent.mkdir(parents=True, exist_ok=True)
  log.write_text('RuntimeError: The training exited with status 1\n')
  # Element 0 trains on a node: its step as last logged, and its time left.
  results.write_run_summary(str(root / 'seed=3'), {
      'state': 'running', 'step': 100, 'num_train_steps': 1000, 'best': None,
      'wall_time_s': 60.0, 'config': {'batch_size': 16},
      'selection': {'metric': 'threshold_jaccard', 'split': 'val'}})
  (root / 'seed=3' / results.METRICS_JSONL).write_text(
      '{"step": 300, "train_loss": 0.5, "train_images_per_sec": 160.0}\n')
  status = _cli('unet_jax.sweep', 'status', '--root', str(root), env=env)
  row = next(line for line in status.stdout.splitlines() if line.startswith('| seed=3 |'))
  cells = row.split(' | ')  # Its wall time: 60 s, and the seconds since its summary was written.
  assert cells[1:4] + cells[5:] == ['running (SLURM job 4242_0)', '300/1000', '-', '0:01:10 |'], row
  assert '0:01:00' <= cells[4] <= '0:01:30', row
  assert '| seed=4 | failed (SLURM job 4242_1, failed) |' in status.stdout, status.stdout
  assert f'- seed=4: RuntimeError: The training exited with status 1 (output: {log})' in (
      status.stdout)
  again = _cli(*launch, env=env)
  assert again.returncode == sweep_runs.STOPPED_STATUS and 'seed=3 (SLURM job 4242_0, running)' in (
      again.stdout), again.stdout + again.stderr
  assert record.read_text().count('#SBATCH --array') == 1  # Nothing submitted again.
  # `cancel` scancels the jobs SLURM still holds, and only those.
  cancelled = _cli('unet_jax.sweep', 'cancel', '--root', str(root), env=env)
  assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
  assert 'Cancelled 1 SLURM job(s): seed=3 (4242_0).' in cancelled.stdout
  assert (tmp_path / 'scancelled').read_text() == '4242_0\n'
  queue.write_text('')
  assert 'nothing to cancel' in _cli('unet_jax.sweep', 'cancel', '--root', str(root),
                                     env=env).stdout
  assert (tmp_path / 'scancelled').read_text() == '4242_0\n'


def test_a_job_slurm_says_failed_is_a_failed_run_with_its_output_and_not_resubmitted(tmp_path):
  """A run whose SLURM job failed before the run wrote its end (out of memory, a crash at
  start-up) would fail again in a new job: SLURM's accounting (sacct) tells it from a job that
  was cancelled or lost its node, which is resumed. The failure names submitit's log, where the
  training's output is, since such a run has no log.txt."""
  env, record, queue = fake_slurm.install(tmp_path)
  root = tmp_path / 'root'
  launch = ('unet_jax.sweep', 'launch', _one_run_sweep(tmp_path), '--root', str(root),
            '--executor', 'slurm')
  assert 'Submitted 1 job(s): 4242' in _cli(*launch, env=env).stdout
  queue.write_text('')  # SLURM no longer holds it: it has ended.
  (tmp_path / 'accounting.txt').write_text(
      '4242|OUT_OF_MEMORY|0:125\n4242.batch|OUT_OF_MEMORY|0:125\n4242.extern|COMPLETED|0:0\n')
  log = root / 'slurm' / '4242' / '4242_0_log.err'
  log.write_text('Traceback ...\nslurmstepd: error: Detected 1 oom_kill event in StepId=4242.batch.'
                 ' Some of the step tasks have been OOM Killed.\n')
  status = _cli('unet_jax.sweep', 'status', '--root', str(root), env=env)
  assert '| seed=3 | failed (SLURM job 4242, out_of_memory) |' in status.stdout, status.stdout
  assert (f'- seed=3: slurmstepd: error: Detected 1 oom_kill event in StepId=4242.batch. Some of '
          f'the step tasks have been OOM Killed. (output: {log})') in status.stdout, status.stdout
  assert (tmp_path / 'sacct_args').read_text().split()[:4] == [
      '--noheader', '--parsable2', '--jobs', '4242']
  again = _cli(*launch, env=env)
  assert again.returncode == 1 and 'skipped (seed=3)' in again.stdout, again.stdout + again.stderr
  assert '| seed=3 | failed |' in again.stdout  # And the failure under the table.
  assert record.read_text().count('#SBATCH --signal') == 1  # Not submitted again.
  entry = sweep_runs.read_manifest(str(root))['runs']['seed=3']
  assert entry['state'] == 'failed' and entry['error'].startswith(
      'SLURM job 4242 ended OUT_OF_MEMORY (exit code 0:125):\nTraceback')
  retried = _cli(*launch, '--retry-failed', env=env)
  assert 'Submitted 1 job(s): 4243' in retried.stdout, retried.stdout + retried.stderr
  # A job cancelled (or timed out, or preempted, or on a lost node) is resumed, not failed.
  (tmp_path / 'accounting.txt').write_text('4243|CANCELLED by 1000|0:0\n')
  status = _cli('unet_jax.sweep', 'status', '--root', str(root), env=env)
  assert '| seed=3 | interrupted |' in status.stdout and 'Failed' not in status.stdout
  assert 'Submitted 1 job(s): 4244' in _cli(*launch, env=env).stdout


def test_the_readmes_quickstart_figure_draws_a_synthetic_runs_validation_images(trained_sweep,
                                                                                 tmp_path):
  """experiments/quickstart_figure.py draws the README's picture; this sweep's runs are the
  quickstart config on synthetic data, so one of them stands in for the quickstart's run. Each
  tile must be an image the run validated (its per-image CSV names them), untouched but for the
  true lesion's outline (scipy's erosion) in green and the tint where the model said lesion."""
  import numpy as np
  from PIL import Image
  from scipy import ndimage

  from unet_jax import synthetic

  workdir = os.path.join(trained_sweep['root'], GOOD[0])
  out = tmp_path / 'figure.png'
  made = _cli('experiments.quickstart_figure', '--workdir', workdir, '--output', str(out),
              '--count', '3', '--size', '48')
  assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
  grid = np.asarray(Image.open(out).convert('RGB')).astype(np.int32)
  assert grid.shape == (48, 3 * 48, 3)
  with open(os.path.join(workdir, results.validation_csv(24)), newline='') as f:
    validated = sorted(row['image_id'] for row in csv.DictReader(f))
  with open(os.path.join(workdir, 'config.json')) as f:
    data_seed = json.load(f)['data']['synthetic_seed']
  for tile, image_id in zip(np.split(grid, 3, axis=1), validated[:3], strict=True):
    image, truth = synthetic.make_example(data_seed, int(image_id.rsplit('_', 1)[1]), 48, 48)
    image = image.astype(np.int32)
    truth = truth.astype(bool)
    edge = truth & ~ndimage.binary_erosion(truth, border_value=1)
    assert edge.any() and (tile[edge] == [0, 255, 0]).all(), image_id
    tinted = np.round(0.55 * image + 0.45 * np.array([255, 110, 0])).astype(np.int32)
    as_is = (tile == image).all(-1)
    assert (as_is | (tile == tinted).all(-1))[~edge].all(), image_id
