"""The training loop end to end at tiny size: outputs, learning, checkpoints, exact resume.

References are independent of the loop's own bookkeeping: TensorBoard's own event loader for the
events, a run logging every step for the windowed training loss, `unet_jax.evaluate` restoring a
checkpoint for the per-image validation, orbax's directory listing for what was kept.
"""

import contextlib
import json
import logging
import os
import pathlib
import shutil
import time

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from configs import quickstart
from unet_jax import (
  checkpointing,
  compare,
  evaluate,
  inference,
  metric_logging,
  models,
  native_scoring,
  optim,
  results,
  run_config,
  train,
)
from unet_jax import train_step as ts


def tiny_config(**overrides):
  config = quickstart.get_config()
  config.data.image_size = 32
  config.data.synthetic_size = 48
  config.data.num_examples = 80
  config.data.num_folds = 4  # 60 train, 20 validate: not a multiple of the eval batch.
  config.data.resize_policy = 'pad'
  config.model.depth = 2
  config.model.base_width = 8
  config.model.dropout_rate = 0.5  # Dropout keys must follow the step for an exact resume.
  config.model.dropout_levels = (2,)
  config.batch_size = 16
  config.num_train_steps = 30
  config.log_every_steps = 5
  config.checkpoint_every_steps = 10
  config.max_checkpoints_to_keep = 1
  config.eval.batch_size = 16
  config.eval.every_steps = 10
  config.eval.pooled_every_steps = 5
  config.optim.warmup_steps = 5
  config.update_from_flattened_dict(overrides)
  return config


@contextlib.contextmanager
def _absl_messages(messages: list[str]):
  """Appends the messages absl logs at INFO and above in the block to `messages`."""
  logger = logging.getLogger('absl')
  handler = logging.Handler(logging.INFO)
  handler.emit = lambda record: messages.append(record.getMessage())
  level = logger.level
  logger.addHandler(handler)
  logger.setLevel(logging.INFO)
  try:
    yield
  finally:
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope='module')
def run_log() -> list[str]:
  """What the `run` fixture's training logged."""
  return []


@pytest.fixture(scope='module')
def run(tmp_path_factory, run_log):
  """(config, workdir, final metrics) of one finished tiny run, shared by the read-only tests."""
  workdir = str(tmp_path_factory.mktemp('run') / 'run')
  config = tiny_config()
  with _absl_messages(run_log):
    return config, workdir, train.train_and_evaluate(config, workdir)


def test_a_run_writes_its_summary_csvs_and_logs(run):
  config, workdir, final = run
  assert run_config.load(workdir).model.base_width == 8
  summary = results.read_run_summary(workdir)
  assert summary['state'] == 'finished' and summary['step'] == 30
  assert summary['num_params'] == models.count_params(
      ts.create_train_state(models.create_model(config.model), optim.create_optimizer(
          config.optim, 30), jax.random.key(0), 32).params)
  assert summary['devices'] == {'backend': 'cpu', 'kind': 'cpu', 'count': 8, 'processes': 1}
  # On CPU the last bits depend on the CPU model and the cores: recorded beside the versions.
  assert summary['host']['usable_cores'] == len(os.sched_getaffinity(0))
  assert f": {summary['host']['cpu']}\n" in pathlib.Path('/proc/cpuinfo').read_text()
  assert summary['versions']['jax'] == jax.__version__
  assert summary['config']['model']['base_width'] == 8
  assert summary['train_images_per_sec'] > 0 and 0 <= summary['data_wait_fraction'] < 1
  assert summary['timing']['timed_steps'] == 29  # The first, compiling step is not timed.
  # The final entry: the native validation of step 30, as its CSV says, plus the pooled pass.
  assert summary['final'] == summary['latest'] and summary['final']['step'] == 30
  scores = results.read_per_image_csv(os.path.join(workdir, summary['final']['per_image_csv']))
  assert len(scores) == 20 and {(s.height, s.width) for s in scores} == {(48, 48)}
  macro = native_scoring.summarize(scores)['macro_average']
  assert {k: v for k, v in final.items() if not k.startswith('pooled_')} == macro
  assert summary['final']['metrics'] == final and 'pooled_dice' in final
  assert sorted(os.listdir(os.path.join(workdir, 'validation'))) == [
      'step_10.csv', 'step_20.csv', 'step_30.csv']

  rows = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  train_rows = [r for r in rows if 'train_loss' in r]
  assert [r['step'] for r in train_rows] == [5, 10, 15, 20, 25, 30]
  assert {'train_images_per_sec', 'train_data_wait_fraction', 'train_lr'} <= set(train_rows[-1])
  assert train_rows[-1]['train_loss'] < 0.8 * train_rows[0]['train_loss']  # It learns.
  assert [r['step'] for r in rows if 'val_pooled_dice' in r] == [5, 10, 15, 20, 25, 30]
  native_rows = [r for r in rows if 'val_threshold_jaccard' in r]
  assert [r['step'] for r in native_rows] == [10, 20, 30]
  assert {k[4:] for k in native_rows[-1] if k.startswith('val_') and 'pooled' not in k} == set(
      config.eval.metrics)
  assert native_rows[-1]['val_dice'] == pytest.approx(final['dice'])


def test_the_eta_counts_the_validations_the_run_then_made(run, run_log):
  """Each progress line's ETA counts the validation passes still due; before a pass of a kind is
  timed, it names how many are not counted. The reference: the passes the run then made, as its
  metrics.jsonl records them, and the seconds of each kind's latest pass in its summary."""
  _, workdir, _ = run
  rows = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  passes = [(r['step'], kind) for r in rows
            for kind, key in (('pooled', 'val_pooled_dice'), ('native', 'val_threshold_jaccard'))
            if key in r]
  progress = {int(m.split()[1].split('/')[0]): m.split('| ETA ')[1]
              for m in run_log if m.startswith('step ') and '| ETA ' in m}
  assert sorted(progress) == [5, 10, 15, 20, 25, 30]
  first = {kind: min(s for s, k in passes if k == kind) for kind in ('pooled', 'native')}
  for step, eta in progress.items():
    # Passes of a kind whose first pass came at or after this step (validation follows the
    # step's progress line) were not timed yet.
    untimed = sum(1 for s, kind in passes if s >= step and first[kind] >= step)
    note = f' + {untimed} validation{"s" if untimed > 1 else ""} not timed yet' if untimed else ''
    assert eta.endswith(note) and len(eta) == len('0:00:00') + len(note), (step, eta)
  # Before any pass: pooled at 5, ..., 30 and native at 10, 20, 30; at 10, the native ones.
  assert progress[5].endswith(' + 9 validations not timed yet')
  assert progress[10].endswith(' + 3 validations not timed yet')
  assert all(len(progress[step]) == len('0:00:00') for step in (15, 20, 25, 30))
  timing = results.read_run_summary(workdir)['timing']
  assert timing['pooled_validation_seconds'] > 0 and timing['native_validation_seconds'] > 0


def test_a_passs_seconds_leave_its_compilations_out(tmp_path, monkeypatch):
  """The ETA counts each pass still due at the seconds of the latest pass of its kind; a first
  pass's compilation would count for every later one. Here the pooled pass holds a 2 s
  compilation (as JAX reports one: its compile event, which a real compilation emits too), and
  the seconds recorded leave it out."""
  events = []

  def listener(event, seconds, **_):
    events.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    jax.jit(lambda x: x * 3 + 1).lower(np.arange(7.0)).compile()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert train.COMPILE_EVENT in events  # The event this JAX emits when XLA compiles.

  elapsed = []
  evaluate_pooled = train.evaluate_pooled

  def compiling_2s(*args):
    start = time.perf_counter()
    time.sleep(2.0)
    jax.monitoring.record_event_duration_secs(train.COMPILE_EVENT, 2.0)
    values = evaluate_pooled(*args)
    elapsed.append(time.perf_counter() - start)
    return values

  monkeypatch.setattr(train, 'evaluate_pooled', compiling_2s)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(**{'num_train_steps': 2, 'eval.every_steps': 2,
                                          'eval.pooled_every_steps': 2}), workdir)
  recorded = results.read_run_summary(workdir)['timing']['pooled_validation_seconds']
  # The pass took over 2 s; counted whole, its seconds would be too.
  assert len(elapsed) == 1 and elapsed[0] > 2.0
  assert 0 <= recorded < 2.0


def test_the_validations_counted_are_those_the_loop_runs():
  """`results.validations_due` (a closed form, read by `sweep status` without the loop) against
  the loop's own test of each step, for cadences that do and do not divide the run."""
  for last in (1, 7, 30, 31):
    for every in (-1, 0, 1, 5, 10, 31, 40):
      for first in range(last + 2):
        want = sum(train._due(step, every, last) for step in range(max(first, 1), last + 1))
        assert results.validations_due(first, last, every) == want, (first, last, every)


def test_the_best_checkpoint_is_kept_beside_the_last_and_scores_as_recorded(run):
  _, workdir, _ = run
  summary = results.read_run_summary(workdir)
  best = summary['best']
  rows = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  history = {r['step']: r['val_threshold_jaccard'] for r in rows if 'val_threshold_jaccard' in r}
  # The first step with the highest value (a later tie is not an improvement).
  want = min(s for s, v in history.items() if v == max(history.values()))
  assert best['step'] == want and best['value'] == history[want]
  # max_checkpoints_to_keep=1: the last checkpoint, and the best one; never step 1.
  assert sorted(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints'))) == sorted(
      {30, want})
  # Restored and scored by evaluate: the CSV the run recorded for that step, image by image.
  out = evaluate.evaluate_run(workdir, checkpoint='best', output_dir=os.path.join(workdir, 'e'))
  assert out['source']['step'] == want and out['source']['selected_on_this_split']
  recorded = results.read_per_image_csv(os.path.join(workdir, best['per_image_csv']))
  assert results.read_per_image_csv(os.path.join(workdir, 'e', 'per_image.csv')) == recorded


def test_best_and_last_checkpoints_both_survive_pruning(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path), max_to_keep=2)
  state = {'x': np.zeros(3, np.float32)}
  for step, selection in [(10, 0.2), (20, None), (30, 0.6), (40, None), (50, None), (60, None)]:
    checkpointing.save(manager, step, state, selection=selection)
  manager.wait_until_finished()
  assert sorted(int(n) for n in os.listdir(tmp_path)) == [30, 50, 60]
  assert checkpointing.best(manager) == (30, 0.6)
  assert checkpointing.resolve_step(manager, 'best', 60) == 30
  assert checkpointing.resolve_step(manager, 'final', 60) == 60
  assert checkpointing.resolve_step(manager, 'latest', 70) == 60
  with pytest.raises(ValueError, match='has not finished'):
    checkpointing.resolve_step(manager, 'final', 70)
  with pytest.raises(ValueError, match=r'holds steps \[30, 50, 60\]'):
    checkpointing.resolve_step(manager, '40', 60)
  manager.close()


def test_reading_a_runs_checkpoints_changes_nothing_there(run, tmp_path):
  """evaluate, predict and a run started from another read runs that may be training now: the
  temporary folder of the checkpoint such a run is saving stays (the training run's own manager,
  the reference here, deletes it), and no folder is made where there was none."""
  config, workdir, _ = run
  live = shutil.copytree(workdir, tmp_path / 'live')
  saving = live / 'checkpoints' / '40.orbax-checkpoint-tmp-1764400000000000'
  saving.mkdir()
  (saving / 'part').write_text('written by the training process')
  _, step = inference.restore_variables(config, str(live), 'latest')
  assert step == 30 and saving.is_dir()
  with pytest.raises(FileNotFoundError, match='No checkpoint in'):
    inference.restore_variables(config, str(tmp_path / 'elsewhere'))
  assert not (tmp_path / 'elsewhere').exists()
  checkpointing.create_manager(str(live / 'checkpoints'), max_to_keep=1).close()
  deadline = time.monotonic() + 60
  while saving.exists() and time.monotonic() < deadline:  # Orbax deletes it in a thread.
    time.sleep(0.05)
  assert not saving.exists()


def _final_params(workdir, config):
  manager = checkpointing.open_for_reading(os.path.join(workdir, 'checkpoints'))
  model = models.create_model(config.model)
  target = ts.create_train_state(model, optim.create_optimizer(config.optim, 30),
                                 jax.random.key(0), config.data.image_size)
  state, step = checkpointing.restore_latest(manager, target)
  manager.close()
  return state, step


def _events(workdir):
  """{tag: [steps]} as TensorBoard itself reads the run's event files."""
  loader = event_accumulator.EventAccumulator(workdir, size_guidance={'scalars': 0, 'tensors': 0})
  loader.Reload()
  return {tag: [e.step for e in loader.Tensors(tag)] for tag in loader.Tags()['tensors']}


def test_resume_is_exact_and_logs_each_step_once(tmp_path, run, monkeypatch):
  """Stopped at step 10 (checkpointed), and crashed after logging up to step 20 with its
  checkpoint lost and a half-written line: resuming ends with the parameters and metrics of
  the uninterrupted run, and every step logged once (checked with TensorBoard's loader). Only
  the run's start initializes a train state: a resume restores into its shapes alone."""
  config, straight, final = run
  workdir = str(tmp_path / 'interrupted')
  initialized = []
  create = ts.create_train_state
  monkeypatch.setattr(ts, 'create_train_state',
                      lambda *args: initialized.append(args) or create(*args))
  train.train_and_evaluate(config, workdir, stop_after_step=10)  # As if pre-empted.
  assert results.read_run_summary(workdir)['state'] == 'stopped'
  assert _final_params(workdir, config)[1] == 10
  del initialized[:]  # The run's start, and _final_params's target.
  train.train_and_evaluate(config, workdir, stop_after_step=20)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '20'))  # Killed before this save landed.
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 21, "train_lo')  # Killed mid-line.
  again = train.train_and_evaluate(config, workdir)
  assert not initialized

  resumed, step = _final_params(workdir, config)
  reference, _ = _final_params(straight, config)
  assert step == 30
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference.params), strict=True):
    np.testing.assert_array_equal(a, b)
  assert again == final
  def values(run_dir):  # Every logged value but the timings, row by row.
    rows = metric_logging.read_jsonl(os.path.join(run_dir, 'metrics.jsonl'))
    return [{k: v for k, v in r.items() if 'per_sec' not in k and 'wait' not in k} for r in rows]

  assert [r['step'] for r in values(workdir) if 'train_loss' in r] == [5, 10, 15, 20, 25, 30]
  assert values(workdir) == values(straight)
  events = _events(workdir)
  assert events['train_loss'] == [5, 10, 15, 20, 25, 30]
  assert events['val_threshold_jaccard'] == [10, 20, 30]
  assert events == _events(straight)
  summary = results.read_run_summary(workdir)
  # Throughput counts every step trained, the redone ones too: 9 + 9 + 19 after compiling.
  assert summary['state'] == 'finished' and summary['timing']['timed_steps'] == 37


def test_a_run_resumed_under_other_devices_or_packages_says_so_and_records_each(tmp_path, caplog):
  """The environment of a session is what JAX and the installed packages report; an earlier
  session's is what it recorded (edited here, as if it had run on 4 devices of another jax)."""
  config = tiny_config(num_train_steps=6, checkpoint_every_steps=2, log_every_steps=2,
                       **{'eval.every_steps': 0, 'eval.pooled_every_steps': 0})
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir, stop_after_step=2)
  path = os.path.join(workdir, results.RUN_SUMMARY)
  summary = results.read_json(path)
  here = {'devices': summary['devices'], 'host': summary['host'], 'versions': summary['versions']}
  assert summary['devices']['count'] == jax.device_count() == 8
  assert summary['environments'] == [{'from_step': 0, **here}]
  elsewhere = json.loads(json.dumps(here))
  elsewhere['devices']['count'] = 4
  elsewhere['versions']['jax'] = '0.0.1'
  results.write_json(path, {**summary, 'environments': [{'from_step': 0, **elsewhere}]})
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(config, workdir, stop_after_step=4)
  warned = [r.getMessage() for r in caplog.records if 'it goes on with' in r.getMessage()]
  assert len(warned) == 1
  assert 'trained to step 2 with devices.count 4, versions.jax 0.0.1' in warned[0]
  assert f"goes on with devices.count 8, versions.jax {jax.__version__}" in warned[0]
  expected = [{'from_step': 0, **elsewhere}, {'from_step': 2, **here}]
  assert results.read_json(path)['environments'] == expected
  # Under the same environment again: nothing said, nothing added.
  caplog.clear()
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(config, workdir)
  assert not [r for r in caplog.records if 'it goes on with' in r.getMessage()]
  assert results.read_json(path)['environments'] == expected
  assert compare.load_run(workdir, 'final', ['dice']).environments == 2  # Named by compare.
  # A summary written before the field counts as one environment from step 0; a restart from
  # step 0 (no checkpoint) starts the list again.
  assert train._environments(here, here, 4, 6) == [{'from_step': 0, **here}]
  assert train._environments({'environments': expected}, here, 0, 6) == [
      {'from_step': 0, **here}]
  # A finished run started again elsewhere (it only validates, if anything) trains nowhere new.
  assert train._environments({'environments': expected[:1]}, here, 6, 6) == expected[:1]


def test_the_logged_loss_is_the_mean_over_its_window(tmp_path, run):
  """The shared run logs every 5 steps; the same run logging every step (validation off, which
  changes no parameter) gives the per-step losses its windows must average."""
  _, windowed, _ = run
  every = tiny_config(log_every_steps=1, **{'eval.every_steps': 0, 'eval.pooled_every_steps': 0})
  train.train_and_evaluate(every, str(tmp_path / 'every'), stop_after_step=10)
  per_step = {r['step']: r['train_loss'] for r in metric_logging.read_jsonl(
      str(tmp_path / 'every' / 'metrics.jsonl')) if 'train_loss' in r}
  logged = {r['step']: r['train_loss'] for r in metric_logging.read_jsonl(
      os.path.join(windowed, 'metrics.jsonl')) if 'train_loss' in r and r['step'] <= 10}
  assert sorted(per_step) == list(range(1, 11))
  assert logged == pytest.approx({5: np.mean([per_step[s] for s in range(1, 6)]),
                                  10: np.mean([per_step[s] for s in range(6, 11)])}, rel=1e-6)


def test_a_finished_run_is_not_trained_again(tmp_path):
  # Also the pmap path end to end (train_step_test checks its step against shard_map's) and its
  # exact resume, and config.profile_steps: steps 2-3 traced, read back by JAX's own trace reader.
  workdir = str(tmp_path / 'run')
  config = tiny_config(num_train_steps=10, parallelism='pmap', profile_steps=2)
  first = train.train_and_evaluate(config, workdir)
  rows_before = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  profile = results.read_json(os.path.join(workdir, 'device_profile.json'))
  assert (profile['first_step'], profile['last_step'], profile['steps']) == (2, 3, 2)
  trace = os.path.join(workdir, profile['trace'])
  assert trace.endswith('.xplane.pb') and os.path.dirname(os.path.dirname(trace)) == os.path.join(
      workdir, 'plugins', 'profile')  # Where TensorBoard's Profile tab looks.
  # Each of the tiny U-Net's 13 conv layers (depth 2: 2 per level, an upsampling conv per
  # decoder level, the 1x1 head) runs forward in each traced step, on each of the 8 devices.
  assert profile['kinds']['convolution']['launches_per_step'] >= 13 * 8
  assert jax.profiler.ProfileData.from_file(trace).planes  # A trace JAX can read back.
  again = train.train_and_evaluate(config, workdir)
  assert again == first
  assert metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl')) == rows_before
  # pmap's resume: restored on one device, then replicated, it ends where the straight run did.
  resumed = str(tmp_path / 'resumed')
  train.train_and_evaluate(config, resumed, stop_after_step=5)
  assert train.train_and_evaluate(config, resumed) == first
  for a, b in zip(jax.tree.leaves(_final_params(resumed, config)[0]),
                  jax.tree.leaves(_final_params(workdir, config)[0]), strict=True):
    np.testing.assert_array_equal(a, b)


def test_a_finished_runs_files_answer_for_it_until_its_final_checkpoint_is_gone(tmp_path, run):
  # What `python -m unet_jax.main` prints for a finished run without loading it (faults_test
  # runs that command): the metrics the training returned, while the final checkpoint exists.
  config, workdir, final = run
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  assert results.finished_metrics(copy) == final
  assert run_config.unchanged(config, copy)
  assert not run_config.unchanged(tiny_config(log_every_steps=6), copy)
  shutil.rmtree(os.path.join(copy, 'checkpoints', str(config.num_train_steps)))
  assert results.finished_metrics(copy) is None
  assert results.finished_metrics(str(tmp_path / 'none')) is None


def test_a_run_goes_on_only_under_the_config_it_was_trained_with(tmp_path, run):
  config, workdir, final = run
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  files = {n: pathlib.Path(copy, n).read_bytes() for n in ('config.json', 'summary.json')}
  changed = tiny_config(**{'optim.lr': 0.5, 'model.base_width': 4})
  with pytest.raises(ValueError, match=rf"trained to step {config.num_train_steps} under another "
                     rf"config \(model\.base_width: 8 there, 4 now; optim\.lr: "
                     rf"{config.optim.lr!r} there, 0\.5 now\)"):
    train.train_and_evaluate(changed, copy)
  for name, before in files.items():  # Nothing rewritten.
    assert pathlib.Path(copy, name).read_bytes() == before, name
  # How often it validates or logs does not change what it trains: accepted and recorded.
  assert train.train_and_evaluate(tiny_config(**{'eval.every_steps': 15}), copy) == final
  assert run_config.load(copy).eval.every_steps == 15
  # Without a checkpoint the run starts over, under the new config.
  shutil.rmtree(os.path.join(copy, 'checkpoints'))
  train.train_and_evaluate(tiny_config(**{'num_train_steps': 5, 'optim.lr': 0.5}), copy)
  assert run_config.load(copy).optim.lr == 0.5


def test_a_diverging_run_never_checkpoints_a_non_finite_state(tmp_path):
  """Checkpoints every step, logs every 10: the NaN is caught at the first save after it, which
  names the step it appeared at; every checkpoint left is finite; the run is marked failed."""
  workdir = str(tmp_path / 'run')
  config = tiny_config(num_train_steps=10, log_every_steps=10, checkpoint_every_steps=1,
                       max_checkpoints_to_keep=5,
                       **{'optim.lr': 1e30, 'optim.grad_clip_norm': 0.0,
                          'optim.schedule': 'constant', 'eval.every_steps': 0,
                          'eval.pooled_every_steps': 0})
  with pytest.raises(FloatingPointError, match=r'Step (\d+): the loss or the gradient') as error:
    train.train_and_evaluate(config, workdir)
  bad = int(error.value.args[0].split(':')[0].split()[1])
  kept = sorted(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert kept == list(range(1, bad)) and f'Nothing after step {bad - 1} was saved' in str(
      error.value)
  manager = checkpointing.open_for_reading(os.path.join(workdir, 'checkpoints'))
  target = ts.create_train_state(models.create_model(config.model), optim.create_optimizer(
      config.optim, 10), jax.random.key(0), config.data.image_size)
  for step in kept:
    state = checkpointing.restore(manager, step, target)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves((state.params, state.opt_state)))
  manager.close()
  summary = results.read_run_summary(workdir)
  assert summary['state'] == 'failed' and f'Step {bad}' in summary['error']


def test_config_errors_come_before_compiling(tmp_path):
  with pytest.raises(ValueError, match='config.batch_size=12'):
    train.train_and_evaluate(tiny_config(batch_size=12), str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='config.data.image_size=30'):
    train.train_and_evaluate(tiny_config(**{'data.image_size': 30}), str(tmp_path / 'b'))
  with pytest.raises(ValueError, match='config.eval.best_metric'):
    train.train_and_evaluate(tiny_config(**{'eval.best_metric': 'pooled_loss'}),
                             str(tmp_path / 'c'))
  assert not os.path.exists(tmp_path / 'a' / 'checkpoints')


def test_a_config_json_from_before_a_rename_names_the_new_field(tmp_path, run):
  _, workdir, _ = run
  old = str(tmp_path / 'old')
  shutil.copytree(workdir, old)
  with open(os.path.join(old, 'config.json')) as f:
    tree = json.load(f)
  tree['eval_every_steps'] = tree['eval'].pop('pooled_every_steps')
  with open(os.path.join(old, 'config.json'), 'w') as f:
    json.dump(tree, f)
  with pytest.raises(ValueError, match=r'eval_every_steps is now eval\.pooled_every_steps'):
    train.train_and_evaluate(tiny_config(), old)
  with pytest.raises(ValueError, match=r'eval\.pooled_every_steps'):
    evaluate.evaluate_run(old)
