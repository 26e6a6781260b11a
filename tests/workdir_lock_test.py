"""One writer per workdir and per sweep root, held against other processes (the OS's flock is the
reference: another process holds the lock, then is killed with SIGKILL)."""

import datetime
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from unet_jax import results, sweep, sweep_runs, workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLD = '''
import sys, time
from unet_jax import workdir_lock
with workdir_lock.exclusive(sys.argv[1], sys.argv[2], in_use='', fix=''):
  print('held', flush=True)
  time.sleep(300)
'''


@pytest.fixture
def holder():
  """Starts a process that holds `<folder>/.locks/<name>` until it is killed; yields its start."""
  started = []

  def hold(folder, name):
    process = subprocess.Popen([sys.executable, '-c', HOLD, str(folder), name], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == 'held'
    started.append(process)
    return process

  yield hold
  for process in started:
    process.kill()
    process.wait()


def test_a_held_lock_refuses_others_and_a_killed_holder_releases_it(tmp_path, holder):
  process = holder(tmp_path, 'train_process_0')
  with (pytest.raises(workdir_lock.InUse, match=rf'busy \(pid {process.pid} on host .*\); wait'),
        workdir_lock.exclusive(str(tmp_path), 'train_process_0', in_use='busy', fix='wait')):
    pass
  with workdir_lock.exclusive(str(tmp_path), 'train_process_1', in_use='', fix=''):
    pass  # Another process index of a multi-host run locks its own file.
  process.send_signal(signal.SIGKILL)
  process.wait()
  with workdir_lock.training(str(tmp_path), 0) as path:  # No stale lock after kill -9.
    holder_now = (tmp_path / '.locks' / 'train_process_0').read_text()
  assert path.endswith('train_process_0') and holder_now.startswith(f'{{"pid": {os.getpid()},')


def test_a_second_sweep_launcher_is_refused_before_it_touches_the_manifest(tmp_path, holder):
  (tmp_path / 'none.py').write_text(NO_RUNS)
  root = tmp_path / 'root'
  process = holder(root, 'launcher')
  with pytest.raises(workdir_lock.InUse, match=rf'pid {process.pid} .*sweep status --root'):
    sweep.main(['launch', str(tmp_path / 'none.py'), '--root', str(root)])
  assert not (root / sweep_runs.MANIFEST).exists()
  process.kill()
  process.wait()
  assert sweep.main(['launch', str(tmp_path / 'none.py'), '--root', str(root)]) == 0
  assert (root / sweep_runs.MANIFEST).exists()


NO_RUNS = "def get_sweep(arg=None):\n  return {'config': 'quickstart', 'runs': []}\n"


ONE_RUN = "def get_sweep(arg=None):\n  return {'config': 'quickstart', 'runs': [{'seed': 3}]}\n"

# The local launcher started on a run `plan` did not see in use (it was locked after): the
# launcher imports no JAX, so its children are forked from a process without JAX's threads.
LAUNCH_ONE = """
import sys
from unet_jax import local_launcher, sweep_runs
runs = sweep_runs.load_sweep(sys.argv[1])
manifest = {'runs': {r.name: {'overrides': r.overrides, 'hash': r.hash, 'error': None}
                     for r in runs}}
print(local_launcher.LocalLauncher(sys.argv[2], 1).launch(runs, manifest))
"""


def test_a_sweep_leaves_a_run_another_process_trains_to_it(tmp_path, holder, capsys):
  # As when a killed launcher left its run training, or a job still runs it.
  (tmp_path / 'one.py').write_text(ONE_RUN)
  root = tmp_path / 'root'
  holder(root / 'seed=3', workdir_lock.training_lock_name())
  assert sweep.main(['launch', str(tmp_path / 'one.py'), '--root', str(root)]) == (
      sweep_runs.STOPPED_STATUS)  # Nothing launched; not ended yet.
  assert ('1 left to the process or SLURM job that has them: seed=3 (its training process is '
          'alive).') in capsys.readouterr().out
  assert sweep_runs.read_manifest(str(root))['runs']['seed=3']['state'] == 'running'
  # Started anyway (locked between plan and start): `python -m unet_jax.main` meets the lock,
  # names its holder, writes nothing, and the launcher records the run as running, not failed.
  process = holder(tmp_path / 'late' / 'seed=3', workdir_lock.training_lock_name())
  done = subprocess.run([sys.executable, '-c', LAUNCH_ONE, str(tmp_path / 'one.py'),
                         str(tmp_path / 'late')], cwd=REPO, capture_output=True, text=True,
                        timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip() == "{'seed=3': 'running'}"
  assert 'seed=3 is being trained by another process' in done.stderr
  log = (tmp_path / 'late' / 'seed=3' / 'log.txt').read_text()
  assert (f"Error: The workdir '{tmp_path / 'late' / 'seed=3'}' is in use by another training "
          f'process (pid {process.pid} on host ') in log and 'Traceback' not in log
  # Nothing of the run written: no config.json, no checkpoint, no summary (the launcher's log).
  assert sorted(os.listdir(tmp_path / 'late' / 'seed=3')) == ['.locks', 'log.txt']


def test_status_tells_a_live_run_from_one_whose_process_is_gone(tmp_path, holder):
  def record(name, state):
    (tmp_path / name).mkdir()
    results.write_run_summary(str(tmp_path / name), {
        'state': state, 'step': 5, 'num_train_steps': 10, 'best': None, 'wall_time_s': 1.0,
        'selection': {'metric': 'threshold_jaccard', 'split': 'val'}})

  record('alive', 'running')
  record('killed', 'running')  # Its process died without a word: no lock held.
  record('resumed', 'stopped')  # Going on again, not validated since.
  record('done', 'finished')
  (tmp_path / 'starting').mkdir()  # The launcher started it; no summary yet.
  sweep_runs.write_manifest(str(tmp_path), {'runs': {
      n: {'state': 'running' if n == 'starting' else None}
      for n in ('alive', 'killed', 'resumed', 'done', 'starting')}})
  for name in ('alive', 'resumed', 'starting', 'killed'):
    process = holder(tmp_path / name, workdir_lock.training_lock_name())
  process.kill()  # 'killed': its lock file stays, its lock is gone.
  process.wait()
  table = sweep.status_table(str(tmp_path)).splitlines()
  states = {line.split(' | ')[0][2:]: line.split(' | ')[1] for line in table[2:7]}
  assert states == {'alive': 'running', 'killed': 'interrupted', 'resumed': 'running',
                    'done': 'finished', 'starting': 'running'}
  assert table[7:] == ['', '5 runs: 1 finished, 3 running, 1 interrupted.']


def test_status_shows_a_live_runs_last_logged_step_and_its_time_left(tmp_path, holder,
                                                                      monkeypatch):
  """summary.json is written at validations: a running run showed the step and wall time of
  its last one, hundreds of steps behind, and nothing of how long it has left. The time left
  counts the validations still due, at the seconds of the run's latest pass of each kind."""
  config = {'batch_size': 16, 'num_train_steps': 1000,
            'eval': {'every_steps': 500, 'pooled_every_steps': 100}}

  def record(name, state, rows=(), timing=None):
    (tmp_path / name).mkdir()
    results.write_run_summary(str(tmp_path / name), {
        'state': state, 'step': 100, 'num_train_steps': 1000, 'best': None, 'wall_time_s': 60.0,
        'train_images_per_sec': 100.0, 'config': config, 'timing': timing or {},
        'selection': {'metric': 'threshold_jaccard', 'split': 'val'}})
    path = tmp_path / name / results.RUN_SUMMARY  # Written at 12:00:00; it is 12:00:30 now.
    path.write_text(json.dumps({**json.loads(path.read_text()),
                                'updated': '2026-11-29T12:00:00+00:00'}))
    # A validation row, training rows, and a last line half written (a crash mid-write).
    lines = [json.dumps(row) for row in rows] + ['{"step": 31']
    (tmp_path / name / results.METRICS_JSONL).write_text('\n'.join(lines))

  training = [{'step': s, 'train_loss': 0.5, 'train_images_per_sec': 160.0} for s in (250, 300)]
  record('logged', 'running', [*training, {'step': 300, 'val_pooled_dice': 0.8}],
         {'pooled_validation_seconds': 2.0, 'native_validation_seconds': 20.0})
  record('unlogged', 'running')  # Its speed from its summary; no validation timed yet.
  record('gone', 'running', training)  # No process: interrupted, nothing left to time.
  sweep_runs.write_manifest(str(tmp_path), {'runs': {
      n: {'state': 'running'} for n in ('logged', 'unlogged', 'gone')}})
  holder(tmp_path / 'logged', workdir_lock.training_lock_name())
  holder(tmp_path / 'unlogged', workdir_lock.training_lock_name())
  now = datetime.datetime(2026, 11, 29, 12, 0, 30, tzinfo=datetime.UTC).timestamp()
  monkeypatch.setattr(time, 'time', lambda: now)
  table = sweep.status_table(str(tmp_path)).splitlines()
  monkeypatch.undo()
  assert table[0] == '| run | state | step | best | wall time | time left |'
  assert sorted(table[2:5]) == [
      '| gone | interrupted | 100/1000 | - | 0:01:00 | - |',  # Its wall time as recorded.
      # 700 steps x 16 / 160 s = 70 s; pooled passes at 400, ..., 1000: 7 x 2 s; native passes
      # at 500 and 1000: 2 x 20 s.
      '| logged | running | 300/1000 | - | 0:01:30 | 0:02:04 |',
      # (1000 - 100) x 16 / 100 s; 9 pooled (200, ..., 1000) and 2 native passes to come.
      '| unlogged | running | 100/1000 | - | 0:01:30 | 0:02:24 + 11 validations not timed yet |']


def test_a_waiting_lock_waits_for_its_holder_and_never_shares_a_removed_file(tmp_path, holder):
  """`waiting` (a preparation of the dataset) waits while another process holds the lock and
  says whom it waits for; it takes the lock once that process is killed. A holder that removes
  the lock file (its preparation failed in a folder it made) lets a waiter take the new file at
  the path, never the removed one, so two holders never overlap."""
  import threading

  process = holder(tmp_path, 'prepare')
  said, events = [], []

  def wait_then_hold():
    with workdir_lock.waiting(str(tmp_path), 'prepare', log_wait=said.append, poll_s=0.05):
      events.append('held')

  waiter = threading.Thread(target=wait_then_hold)
  waiter.start()
  deadline = time.monotonic() + 60
  while not said and time.monotonic() < deadline:
    time.sleep(0.01)
  assert waiter.is_alive() and events == []
  assert said and said[0].startswith(f'Waiting for another process (pid {process.pid} on host ')
  process.kill()
  process.wait()
  waiter.join(timeout=30)
  assert events == ['held']

  # The first holder removes the file while a second waits on it.
  release, taken = threading.Event(), threading.Event()
  refused = []

  def second():
    with workdir_lock.waiting(str(tmp_path), 'prepare', log_wait=lambda m: None, poll_s=0.05):
      taken.set()
      release.wait(30)

  with workdir_lock.waiting(str(tmp_path), 'prepare', log_wait=said.append) as path:
    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=0.5)
    assert not taken.is_set()
    workdir_lock.remove_lock_file(path)
    assert not os.path.exists(os.path.dirname(path))  # Its folder too, when empty.
  assert taken.wait(30)
  try:  # The second holds the file now at the path: a third process is refused.
    with workdir_lock.exclusive(str(tmp_path), 'prepare', in_use='busy', fix=''):
      pass
  except workdir_lock.InUse as error:
    refused.append(str(error))
  release.set()
  thread.join(timeout=30)
  assert refused and refused[0].startswith(f'busy (pid {os.getpid()} on host ')
