"""Real training subprocesses stopped by SIGTERM and killed with SIGKILL, resumed after each.

One run goes through every kind of interruption at seeded points (`unet_jax.faults`): Ctrl-C
twice (the second mid-checkpoint), SIGTERM mid-step, then SIGKILL mid-checkpoint (before orbax's
rename), mid-step, mid-validation and mid-summary-write, each followed by the same command. None
may leave a file in the temporary folder. It must end exactly where an uninterrupted run ends:
the same parameters and validation metrics, every logged value the same (but the training loss of
the logging window a stop cut short), and every step once in metrics.jsonl and in the TensorBoard
events (read with TensorBoard's own loader)."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from configs import quickstart
from unet_jax import checkpointing, faults, metric_logging, models, optim, results
from unet_jax import train_step as ts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = {
    'num_train_steps': 24, 'log_every_steps': 4, 'checkpoint_every_steps': 8,
    'max_checkpoints_to_keep': 2, 'batch_size': 8, 'data.num_examples': 40,
    'data.image_size': 32, 'data.synthetic_size': 32, 'model.depth': 2, 'model.base_width': 8,
    'model.dropout_rate': 0.5, 'model.dropout_levels': (2,), 'optim.warmup_steps': 4,
    'eval.batch_size': 8, 'eval.every_steps': 8, 'eval.pooled_every_steps': 4,
}
# (UNET_JAX_FAULTS, expected exit status, step of the last complete checkpoint afterwards)
SCHEDULE = (
    # Ctrl-C, then Ctrl-C again while the checkpoint the first asked for is written: it ends at
    # once (130), and that checkpoint is whole or absent, never half-written (orbax finishes its
    # rename before the process exits).
    ('int@step:4,int@checkpoint:4', 130, 4),
    ('term@step:6', 75, 6),  # Preempted: checkpoints the step it stopped at.
    ('kill@checkpoint:16', -signal.SIGKILL, 8),  # Killed before checkpoint 16 was renamed.
    ('kill@step:12', -signal.SIGKILL, 8),
    ('kill@validation:16', -signal.SIGKILL, 8),
    ('kill@summary:24', -signal.SIGKILL, 24),  # After the final checkpoint, in the summary.
    ('', 0, 24),
)


def _config():
  config = quickstart.get_config()
  config.update_from_flattened_dict(OVERRIDES)
  return config


def _command(workdir):
  overrides = [f'--config.{k}={",".join(map(str, v)) if isinstance(v, tuple) else v}'
               for k, v in OVERRIDES.items()]
  return [sys.executable, '-m', 'unet_jax.main', '--config', 'configs/quickstart.py',
          '--workdir', workdir, f'--compilation_cache_dir={jax.config.jax_compilation_cache_dir}',
          *overrides]


def _params(workdir):
  config = _config()
  manager = checkpointing.open_for_reading(os.path.join(workdir, 'checkpoints'))
  target = ts.create_train_state(models.create_model(config.model), optim.create_optimizer(
      config.optim, config.num_train_steps), jax.random.key(0), config.data.image_size)
  state, step = checkpointing.restore_latest(manager, target)
  manager.close()
  return state.params, step


def _logged(workdir):
  rows = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  return [{k: v for k, v in r.items() if 'per_sec' not in k and 'wait' not in k} for r in rows]


def _events(workdir):
  loader = event_accumulator.EventAccumulator(workdir, size_guidance={'tensors': 0})
  loader.Reload()
  return {tag: [e.step for e in loader.Tensors(tag)] for tag in loader.Tags()['tensors']}


def test_the_fault_hook_parses_its_schedule():
  assert faults.parse('kill@checkpoint:16, term@step:6') == {
      ('checkpoint', 16): 'kill', ('step', 6): 'term'}
  with pytest.raises(ValueError, match='ACTION@PHASE:STEP'):
    faults.parse('kill@16')
  with pytest.raises(ValueError, match='PHASE one of'):
    faults.parse('kill@restore:3')


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
  """Every writer of run files (results.write_atomic, the events' rewrite) goes through
  results.atomic_path."""
  path = tmp_path / 'summary.json'
  results.write_atomic(str(path), 'old\n')
  with pytest.raises(RuntimeError, match='disk full'), results.atomic_path(str(path)) as tmp:
    with open(tmp, 'w') as f:
      f.write('half')
    raise RuntimeError('disk full')
  with pytest.raises(RuntimeError, match='killed'):
    results.write_atomic(str(path), b'new', before_rename=lambda: _raise(RuntimeError('killed')))
  assert os.listdir(tmp_path) == ['summary.json'] and path.read_text() == 'old\n'
  results.write_atomic(str(path), 'n\u00e9w\r\n')  # Text as UTF-8, newlines as given.
  assert path.read_bytes() == 'n\u00e9w\r\n'.encode()


def _raise(error):
  raise error


# Logs steps 1-6, then drops 4-6 as a resume does, killed (SIGKILL) just before the rewritten
# event file would replace the old one.
_KILLED_MID_REWRITE = '''
import os, signal, sys
from unet_jax import metric_logging
writer = metric_logging.create_writer(sys.argv[1])
for step in range(1, 7):
  writer.write_scalars(step, {'train_loss': 1.0 / step})
writer.close()
replace = os.replace
def killed_before_the_events_rename(src, dst):
  if 'tfevents' in os.path.basename(dst):
    os.kill(os.getpid(), signal.SIGKILL)
  replace(src, dst)
os.replace = killed_before_the_events_rename
metric_logging.truncate_after(sys.argv[1], 3)
'''


def test_an_events_rewrite_killed_midway_leaves_nothing_tensorboard_reads_twice(tmp_path):
  """The temporary of the events' rewrite stays behind after a kill; TensorBoard reads every
  file whose name holds 'tfevents', hidden or not, so its name must not: the run's events are
  read once, as they were, and the next resume rewrites them."""
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  done = subprocess.run([sys.executable, '-c', _KILLED_MID_REWRITE, workdir], cwd=REPO,
                        capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
  assert any(name.endswith('.tmp') for name in os.listdir(workdir))  # What the kill left.
  assert _events(workdir) == {'train_loss': [1, 2, 3, 4, 5, 6]}
  metric_logging.truncate_after(workdir, 3)  # The resume.
  assert _events(workdir) == {'train_loss': [1, 2, 3]}


def _run(workdir, fault, tmpdir=None):
  # One CPU device, as a user's machine has: the uninterrupted reference runs the same way.
  env = {**os.environ, faults.ENV: fault, 'XLA_FLAGS': '--xla_backend_optimization_level=0'}
  if tmpdir:
    env['TMPDIR'] = tmpdir
  return subprocess.run(_command(workdir), cwd=REPO, capture_output=True, text=True, env=env,
                        timeout=300, check=False)


def test_sigterm_and_kills_at_every_phase_end_as_an_uninterrupted_run(tmp_path):
  reference = str(tmp_path / 'reference')
  done = _run(reference, '')
  assert done.returncode == 0, done.stderr[-3000:]
  final = results.read_run_summary(reference)['final']['metrics']
  _check_a_finished_run_run_again(reference, done.stdout)
  workdir = str(tmp_path / 'interrupted')
  tmpdir = tmp_path / 'tmp'
  tmpdir.mkdir()
  for fault, status, checkpoint in SCHEDULE:
    done = _run(workdir, fault, str(tmpdir))
    assert done.returncode == status, f'{fault}: {done.returncode}\n{done.stderr[-3000:]}'
    # Nothing left in the temporary folder, even by a kill (TensorFlow's AutoGraph once left a
    # generated file per input function there: unet_jax.input_pipeline traces them as written).
    assert os.listdir(tmpdir) == [], fault
    manager = checkpointing.open_for_reading(os.path.join(workdir, 'checkpoints'))
    assert manager.latest_step() == checkpoint, fault
    manager.close()
    summary = results.read_run_summary(workdir)
    if fault.startswith('int'):
      assert 'SIGINT received: the run stops after the current step' in done.stderr
      assert done.stderr.endswith('\nInterrupted.\n'), done.stderr[-3000:]
      assert 'Traceback' not in done.stderr, done.stderr[-3000:]  # orbax logged one of it.
    if fault.startswith('term'):
      assert 'stopped at step 6 (SIGTERM); run the same command to resume' in done.stdout
      assert summary['state'] == 'stopped' and summary['step'] == 6
    # Never half-written, whenever the kill came; written from the start (the Ctrl-C came
    # before the first validation that writes one).
    assert summary is not None, fault
    if fault.startswith('int'):
      assert summary['state'] == 'running' and summary['step'] == 0, summary

  summary = results.read_run_summary(workdir)
  assert summary['state'] == 'finished' and summary['final']['metrics'] == final
  params, step = _params(workdir)
  reference_params, _ = _params(reference)
  assert step == 24
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference_params), strict=True):
    np.testing.assert_array_equal(a, b)
  # Every logged value equals the uninterrupted run's, except the training loss and gradient
  # norm of step 8: their window (steps 5-8) was cut by the stop after step 6, so the resumed
  # run averages steps 7-8 only.
  logged, expected = _logged(workdir), _logged(reference)
  assert [r.keys() for r in logged] == [r.keys() for r in expected]
  for got, want in zip(logged, expected, strict=True):
    if got['step'] == 8 and 'train_loss' in got:
      got, want = got['train_lr'], want['train_lr']
    assert got == want
  assert [r['step'] for r in logged if 'train_loss' in r] == list(range(4, 25, 4))
  events = _events(workdir)
  assert events == _events(reference) and events['train_loss'] == list(range(4, 25, 4))
  assert not [n for n in os.listdir(os.path.join(workdir, 'checkpoints')) if 'tmp' in n]


def _imported(stderr: str) -> set[str]:
  """The modules Python's `-X importtime` log names."""
  return {line.rsplit('|', 1)[1].strip() for line in stderr.splitlines()
          if line.startswith('import time:')}


def _check_a_finished_run_run_again(workdir, printed):
  """The same command on a finished run prints what the training run printed at its end,
  answered from the run's files: no TensorFlow, no model (a second, not 6). A field that differs,
  even one a run may change, goes the full way: it is checked and recorded."""
  env = {**os.environ, 'XLA_FLAGS': '--xla_backend_optimization_level=0'}
  again = subprocess.run([sys.executable, '-X', 'importtime', *_command(workdir)[1:]], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=300, check=False)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout == printed and printed.startswith('Final validation, per image'), printed
  assert not {'tensorflow', 'flax', 'orbax.checkpoint', 'unet_jax.train'} & _imported(
      again.stderr)
  changed = subprocess.run(
      [sys.executable, '-X', 'importtime', *_command(workdir)[1:], '--config.log_every_steps=8'],
      cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False)
  assert changed.returncode == 0, changed.stderr[-3000:]
  assert changed.stdout == printed
  assert {'tensorflow', 'unet_jax.train'} <= _imported(changed.stderr)
  assert results.read_json(os.path.join(workdir, 'config.json'))['log_every_steps'] == 8
