"""Training and validation: `train_and_evaluate(config, workdir)`.

The path of a batch: `input_pipeline.train_batches` (tf.data, uint8 numpy out) ->
`DataParallel.place_batch` (one global array sharded over the devices, prefetched) ->
`train_step.train_step` (augmentation and normalization on the device, `augment.make_preprocess`;
loss, pmean'd grads, optimizer).

What a run leaves in `workdir` (re-running the same command resumes from the latest checkpoint):
  config.json          the resolved config (`unet_jax.run_config`)
  checkpoints/<step>/  orbax: the last K and the best (`unet_jax.checkpointing`); never step 1
  summary.json         the run summary: state, final and best metrics, timing, versions
                       (schema in `unet_jax.results`), written as training starts, at each
                       validation and at the end
  validation/step_<N>.csv  per-image scores of each native validation
  metrics.jsonl, events.out.tfevents.*  every logged scalar, each step once (`metric_logging`)

Validation (`config.eval`): `val_<metric>` per image at native resolution, as the challenge scores
(`unet_jax.evaluation.NativeValidation`); `val_pooled_<metric>` a cheap pooled S x S pass. The
best checkpoint is picked by `config.eval.best_metric` on the validation split.
"""

import collections
import contextlib
import os
import time
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging

from unet_jax import (
  augment,
  checkpointing,
  cli,
  config_checks,
  determinism,
  device_profile,
  evaluation,
  faults,
  init_from,
  input_pipeline,
  metric_logging,
  metrics,
  models,
  native_scoring,
  optim,
  parallel,
  preemption,
  results,
  run_config,
  workdir_lock,
)
from unet_jax import train_step as ts


def prefetch(iterator: Iterator, place: Callable, size: int = 2) -> Iterator:
  """Places up to `size` batches on the devices ahead of use, overlapping transfer and compute."""
  queue = collections.deque()
  for item in iterator:
    queue.append(place(item))
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def evaluate_pooled(dp: parallel.DataParallel, state, config: ml_collections.ConfigDict,
                    split: str = 'val') -> dict[str, float]:
  """The pooled S x S pass on a whole split: counts summed over every batch and device."""
  total = None
  for batch in input_pipeline.eval_batches(config, split):
    total = metrics.add_counts(
        total, dp.fetch_metrics(dp.eval_step(state, dp.place_batch(batch))))
  if total is None:
    raise ValueError(f'The {split!r} split is empty; check config.data.')
  return metrics.metrics_from_counts(total)


# jax.monitoring's event for an XLA compilation (a persistent-cache hit included): the one-off
# part of a validation pass that its seconds, as the ETA counts each pass, leave out.
COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


@contextlib.contextmanager
def _compiling() -> Iterator[list[float]]:
  """Yields a list that holds, once the block ends, the seconds of each XLA compilation in it."""
  seconds = []

  def listener(event: str, duration: float, **_):
    if event == COMPILE_EVENT:
      seconds.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seconds
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _due(step: int, every: int, last_step: int) -> bool:
  return step == last_step or (every > 0 and step % every == 0)


class _Record:
  """The run summary as the loop fills it in (`results` documents the fields).

  Everything in it can be rebuilt from the workdir: the best step from the checkpoints, a step's
  metrics from its per-image CSV and metrics.jsonl, so a resumed run continues the record of the
  interrupted one whatever moment it was stopped at. Timing sums carry over from the last
  summary written.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, state, start_step: int,
               init_from: dict | None):
    self.workdir, self.config = workdir, config
    previous = results.read_run_summary(workdir) or {}
    self.timing = dict(previous.get('timing') or
                       {'timed_steps': 0, 'timed_seconds': 0.0, 'wait_seconds': 0.0})
    self.wall_before = previous.get('wall_time_s', 0.0)
    self.started = time.perf_counter()
    self.static = {
        'num_train_steps': config.num_train_steps,
        'num_params': models.count_params(state.params),
        'num_batch_stats': models.count_params(state.batch_stats),
        'selection': {'metric': config.eval.best_metric, 'split': 'val'},
        'config': config.to_dict(),
        'versions': results.package_versions(),
        'devices': results.devices(),
        'host': results.host(),  # Process 0's.
        # What it started from (`unet_jax.init_from`), recorded by the session that started it.
        'init_from': init_from or previous.get('init_from'),
    }
    self.static['environments'] = _environments(previous, self.static, start_step,
                                                config.num_train_steps)
    self.previous_state = previous.get('state')
    self._entries = {}
    self.latest = None
    validated = [s for s in _validated_steps(workdir) if s <= start_step]
    if validated:
      self.latest = self.entry(max(validated))

  def validated(self, step: int, values: dict[str, float], native: bool):
    """Records the validation of `step` (its metrics as computed, not read back)."""
    csv = results.validation_csv(step) if native else None
    self._entries[step] = {'step': step, 'metrics': dict(values), 'per_image_csv': csv}
    self.latest = self._entries[step]

  def entry(self, step: int) -> dict:
    """{'step', 'metrics', 'per_image_csv'} of a validated step; read back from its files when
    an earlier session validated it."""
    if step in self._entries:
      return self._entries[step]
    csv = results.validation_csv(step)
    values = {}
    if os.path.exists(os.path.join(self.workdir, csv)):
      scores = results.read_per_image_csv(os.path.join(self.workdir, csv))
      values.update(native_scoring.summarize(scores)['macro_average'])
    else:
      csv = None
    jsonl = os.path.join(self.workdir, metric_logging.JSONL)
    if os.path.exists(jsonl):
      for row in metric_logging.read_jsonl(jsonl):
        if row['step'] == step:
          values.update({k[len('val_'):]: v for k, v in row.items()
                         if k.startswith('val_pooled_')})
    self._entries[step] = {'step': step, 'metrics': values, 'per_image_csv': csv}
    return self._entries[step]

  def add_timing(self, steps: int, seconds: float, wait: float):
    self.timing['timed_steps'] += steps
    self.timing['timed_seconds'] += seconds
    self.timing['wait_seconds'] += wait

  def timed_validation(self, kind: str, seconds: float):
    """The latest pass of a kind (`results.VALIDATION_CADENCE`), its compilations left out:
    what the ETA counts per pass still due."""
    self.timing[results.validation_seconds_field(kind)] = max(0.0, seconds)

  def write(self, state: str, step: int, best: tuple[int, float] | None, *, error: str = ''):
    if jax.process_index() > 0:
      return
    seconds = self.timing['timed_seconds']
    summary = {
        **self.static,
        'state': state,
        'step': step,
        'wall_time_s': self.wall_before + time.perf_counter() - self.started,
        'timing': self.timing,
        'train_images_per_sec': (self.timing['timed_steps'] * self.config.batch_size / seconds
                                 if seconds else None),
        'data_wait_fraction': self.timing['wait_seconds'] / seconds if seconds else None,
        'latest': self.latest,
        'best': {**self.entry(best[0]), 'value': best[1]} if best else None,
        'final': self.latest if state == 'finished' else None,
    }
    if error:
      summary['error'] = error
    results.write_run_summary(self.workdir, summary,
                              before_rename=lambda: faults.fire('summary', step))


_ENVIRONMENT = ('devices', 'host', 'versions')


def _environments(previous: dict, now: dict, start_step: int,
                  num_train_steps: int) -> list[dict]:
  """Each environment the run trained in, with the step it began there: devices, packages and,
  on CPU, the CPU and its cores set a run's last bits, so a run resumed under others does not end
  as an uninterrupted run under either would. It says so when it resumes, and its summary keeps
  the list (a summary from before this field counts as one environment from step 0). A run
  trained to the end trains no more: its list stays as it is."""
  past = previous.get('environments')
  if past is None and previous.get('devices'):
    past = [{'from_step': 0, **{k: previous[k] for k in _ENVIRONMENT if k in previous}}]
  past = [e for e in past or [] if e['from_step'] < start_step]  # Not what a resume dropped.
  current = {k: now[k] for k in _ENVIRONMENT}
  if past and start_step >= num_train_steps:
    return past
  if past:
    changed = _changes(past[-1], current)
    if not changed:
      return past
    logging.warning(
        'This run trained to step %d with %s; it goes on with %s: it will not end as an '
        'uninterrupted run under either would, to the last bits (summary.json lists each under '
        "'environments').", start_step,
        ', '.join(f'{key} {old}' for key, old, _ in changed),
        ', '.join(f'{key} {new}' for key, _, new in changed))
  return [*past, {'from_step': start_step, **current}]


def _changes(before: dict, now: dict) -> list[tuple[str, object, object]]:
  """(dotted key, before, now) of what differs; the host only on CPU, and only keys both have."""
  keys = [(group, key) for group in _ENVIRONMENT if group != 'host' or
          now['devices']['backend'] == 'cpu' for key in now[group] if key in before.get(group, {})]
  return [(f'{group}.{key}', before[group][key], now[group][key]) for group, key in keys
          if before[group][key] != now[group][key]]


def _validated_steps(workdir: str) -> list[int]:
  folder = os.path.join(workdir, results.VALIDATION_DIR)
  if not os.path.isdir(folder):
    return []
  return sorted(int(n[len('step_'):-len('.csv')]) for n in os.listdir(folder)
                if n.startswith('step_') and n.endswith('.csv'))


def _forget_after(workdir: str, step: int) -> None:
  """What an interrupted session wrote after the checkpoint a run resumes from is dropped, so
  that the resumed run writes each step once (metrics.jsonl, events, per-image CSVs)."""
  metric_logging.truncate_after(workdir, step)
  for later in _validated_steps(workdir):
    if later > step:
      os.remove(os.path.join(workdir, results.validation_csv(later)))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_after_step: int | None = None) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the final
  validation metrics (native per-image macro averages by name, the pooled pass as 'pooled_*').

  `stop_after_step` ends the run early, checkpointed, as a pre-empted job would end (state
  'stopped'); the schedule still follows `config.num_train_steps`, so running again without it
  finishes the same run. SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 (from the moment this is called) end it
  after the current step, checkpointed, by raising `preemption.Stopped`.
  """
  with preemption.StopSignals() as stop, contextlib.ExitStack() as held:
    return _train_and_evaluate(config, workdir, stop, stop_after_step, held)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        stop: preemption.StopSignals, stop_after_step: int | None,
                        held: contextlib.ExitStack) -> dict[str, float]:
  mesh = parallel.make_mesh()
  config_checks.check(config, mesh.devices.size)
  config = run_config.with_absolute_data_paths(config)  # As config.json records them.
  determinism.check(config.deterministic, jax.default_backend())
  cli.check_can_be_folder(workdir, 'The workdir')  # As given: '~/runs' is refused, not made.
  workdir = os.path.abspath(workdir)  # Orbax requires absolute paths.
  # The data source answers before the workdir exists: a wrong folder or missing data leaves
  # nothing behind (the 'isic' source prepares its TFDS data here if it can).
  for split in ('train', 'val'):
    input_pipeline.num_examples(config, split)
  # Another run's parameters, for a run that starts (a wrong source leaves no workdir behind).
  initial = None if results.has_checkpoint(workdir) else init_from.load(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  # Until the run ends: a second training in this workdir stops here, before it writes anything.
  held.enter_context(workdir_lock.training(workdir, jax.process_index(), logging.warning))

  dtype = parallel.compute_dtype(config.precision)
  model = models.create_model(config.model, dtype=dtype, bn_axis_name=ts.AXIS)
  optimizer = optim.create_optimizer(config.optim, config.num_train_steps)
  schedule = optim.create_schedule(config.optim, config.num_train_steps)  # For logging the lr.
  rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)
  preprocess = augment.make_preprocess(config.augment, config.data.normalize, config.seed)
  dp = parallel.make_data_parallel(config.parallelism, config.loss, mesh, preprocess=preprocess)
  ckpt_dir = os.path.join(workdir, results.CHECKPOINTS_DIR)
  manager = checkpointing.create_manager(ckpt_dir, max_to_keep=config.max_checkpoints_to_keep)
  restored_step = manager.latest_step()
  try:  # A run goes on only under the config it was trained with (every process checks).
    run_config.check_resume(config, workdir, restored_step, logging.warning)
  except ValueError:
    manager.close()
    raise
  if jax.process_index() == 0:
    run_config.write(config, workdir)
  if restored_step is None:
    state = jax.device_put(
        ts.create_train_state(model, optimizer, init_rng, config.data.image_size),
        dp.state_sharding)
  else:  # Every value comes from the checkpoint: the initializers are neither compiled nor run.
    state = checkpointing.restore(manager, restored_step, ts.abstract_train_state(
        model, optimizer, config.data.image_size, sharding=dp.state_sharding))
  logging.info('Model: %s parameters, %s BatchNorm statistics, compute dtype %s.',
               f'{models.count_params(state.params):,}',
               f'{models.count_params(state.batch_stats):,}', jax.numpy.dtype(dtype).name)
  start_step = int(restored_step or 0)
  if restored_step is not None:
    logging.info('Resuming from the checkpoint of step %d in %s.', start_step, ckpt_dir)
  elif config.init_from.workdir:
    initial = initial or init_from.load(config, workdir)  # Its checkpoints were no checkpoint.
    variables, source = initial
    state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'])
    logging.info('Starting from the parameters of %s (its checkpoint of step %d, %s).',
                 source['workdir'], source['step'], source['checkpoint'])
  if jax.process_index() == 0:
    # Without a checkpoint, nothing an earlier session logged belongs to this run (-1: drop all).
    _forget_after(workdir, start_step if restored_step is not None else -1)
  state = dp.place_state(state)
  record = _Record(workdir, config, dp.fetch_state(state), start_step,
                   initial[1] if initial else None)
  best = checkpointing.best(manager)
  writer = metric_logging.create_writer(workdir)
  if start_step == 0:
    metric_logging.write_hparams(workdir, config.to_dict(), [
        *(f'val_{m}' for m in config.eval.metrics), f'best_{config.eval.best_metric}',
        'val_pooled_dice', 'train_loss'])
  native = evaluation.NativeValidation(config)
  last_step = config.num_train_steps
  if stop_after_step is not None:
    last_step = min(last_step, stop_after_step)

  def validate(step: int) -> dict[str, float]:
    """The validation passes due at `step` (logged and recorded); returns their metrics."""
    values = {}
    if _due(step, config.eval.pooled_every_steps, last_step):
      with _compiling() as compiled:
        start = time.perf_counter()
        pooled = evaluate_pooled(dp, state, config)
      record.timed_validation('pooled', time.perf_counter() - start - sum(compiled))
      writer.write_scalars(step, {f'val_pooled_{k}': v for k, v in pooled.items()})
      values.update({f'pooled_{k}': v for k, v in pooled.items()})
    if _due(step, config.eval.every_steps, last_step):
      logging.info('validating %d images at native resolution (step %d)...', len(native.ids),
                   step)
      with _compiling() as compiled:
        start = time.perf_counter()
        scores = native(dp.local_variables(state), step)
      if jax.process_index() == 0:
        results.write_per_image_csv(os.path.join(workdir, results.validation_csv(step)), scores)
      record.timed_validation('native', time.perf_counter() - start - sum(compiled))
      macro = native_scoring.summarize(scores)['macro_average']
      writer.write_scalars(step, {f'val_{k}': macro[k] for k in config.eval.metrics})
      values.update(macro)
      logging.info('validation at step %d (%d images at native resolution, %.1f s): %s', step,
                   len(scores), native.seconds,
                   ', '.join(f'{k} {macro[k]:.4f}' for k in config.eval.metrics))
    if 'pooled_dice' in values:
      logging.info('pooled S x S validation at step %d: %s', step, ', '.join(
          f'{k} {values["pooled_" + k]:.4f}' for k in ('dice', 'jaccard', 'loss')))
    if values:
      writer.flush()
      record.validated(step, values, native='jaccard' in values)
    return values

  profile = _Profile(workdir, start_step + 2, config.profile_steps, last_step)
  try:
    if start_step >= last_step:
      if record.latest is None or record.latest['step'] != start_step:
        # Trained to the end but stopped before its last validation: validate it now.
        validate(start_step)
      logging.info('The checkpoint is at step %d (config.num_train_steps=%d): nothing to train.',
                   start_step, config.num_train_steps)
      finished = start_step >= config.num_train_steps
      record.write('finished' if finished else 'stopped', start_step, best)
      return _final_metrics(record.latest)
    # From the start: what a run that ends before its first validation (a second Ctrl-C, a
    # kill, an error) leaves says what it is, where it began and in which environment.
    record.write('running', start_step, best)
    batches = prefetch(input_pipeline.train_batches(config, start_step=start_step),
                       dp.place_batch)
    window = []  # The step metrics (on the device) of the current logging window.
    timed_steps, window_start, wait_time = 0, time.perf_counter(), 0.0
    train_start = None
    # The first step whose loss or gradients were not finite (-1: none), kept on the device and
    # read only where it matters (logging and saving steps): no host sync per step.
    first_bad = jax.numpy.int32(-1)
    saved = start_step
    for step in range(start_step + 1, last_step + 1):
      wait_start = time.perf_counter()
      batch = next(batches)
      wait_time += time.perf_counter() - wait_start
      profile.start_if_due(step)
      state, step_metrics = dp.train_step(state, batch, dropout_rng)
      profile.stop_if_due(step, dp, state, batch, dropout_rng)
      first_bad = _track_finite(first_bad, step, step_metrics)
      faults.fire('step', step)
      window.append(step_metrics)
      timed_steps += 1

      if step == start_step + 1:
        # The first step compiles; time the rest.
        jax.block_until_ready(state)
        logging.info('First step (compile included) took %.1f s.',
                     time.perf_counter() - wait_start)
        train_start = window_start = time.perf_counter()
        timed_steps, wait_time = 0, 0.0

      if step % config.log_every_steps == 0 or step == last_step:
        _check_finite(first_bad, saved)
        # The mean over the logging window, fetched once per window rather than every step.
        fetched = [dp.fetch_metrics(m) for m in window]
        scalars = {k: float(np.mean([f[k] for f in fetched])) for k in fetched[0]}
        elapsed = time.perf_counter() - window_start
        if timed_steps:
          record.add_timing(timed_steps, elapsed, wait_time)
          scalars['images_per_sec'] = timed_steps * config.batch_size / elapsed
          scalars['data_wait_fraction'] = wait_time / elapsed
        scalars['lr'] = float(schedule(step - 1))
        writer.write_scalars(step, {f'train_{k}': v for k, v in scalars.items()})
        timing = record.timing
        # The steps left at this run's mean speed, and the validations due from this step on
        # ('-' while no step is timed: the first, compiling one is not).
        eta = results.format_time_left(*results.time_left(
            step, config.num_train_steps, timing['timed_seconds'] / timing['timed_steps'],
            config.eval.to_dict(), timing, first_unvalidated=step)) if timing['timed_steps'] else '-'
        logging.info('step %d/%d | loss %.4f | %.1f img/s | data wait %.0f%% | ETA %s', step,
                     config.num_train_steps, scalars['loss'],
                     scalars.get('images_per_sec', 0.0),
                     100 * scalars.get('data_wait_fraction', 0.0), eta)
        writer.flush()
        window, timed_steps, wait_time = [], 0, 0.0
        window_start = time.perf_counter()

      eval_start = time.perf_counter()
      values = validate(step)
      selection = values.get(config.eval.best_metric)
      improved = selection is not None and (best is None or selection > best[1])
      stopping = stop.should_stop(step)
      if (improved or stopping or step == last_step
          or step % config.checkpoint_every_steps == 0):
        _check_finite(first_bad, saved)  # A non-finite state never reaches a checkpoint.
        # Gathered to one copy (a gather per leaf in 'pmap' mode) only on the steps that save.
        checkpointing.save(manager, step, dp.fetch_state(state),
                           selection=selection if improved else None)
        saved = step
        if improved:
          best = (step, selection)
          writer.write_scalars(step, {f'best_{config.eval.best_metric}': selection})
          logging.info('New best %s %.4f: saving the checkpoint of step %d.',
                       config.eval.best_metric, selection, step)
        else:
          logging.info('Saving the checkpoint of step %d.', step)
      if stopping:
        manager.wait_until_finished()
        record.write('stopped', step, best)
        raise preemption.Stopped(step, stop.reason)
      if values and step != last_step:
        manager.wait_until_finished()  # summary.json names only checkpoints that exist.
        record.write('running', step, best)
      window_start += time.perf_counter() - eval_start  # Validation is not training time.

    manager.wait_until_finished()
    logging.info('Trained steps %d-%d in %s (after the first, compiling step).', start_step + 1,
                 last_step, cli.clock(time.perf_counter() - train_start))
    finished = last_step == config.num_train_steps
    record.write('finished' if finished else 'stopped', last_step, best)
    return _final_metrics(record.latest)
  except preemption.Stopped as stopped:
    logging.warning('%s', stopped)
    raise
  except BaseException as error:
    if not isinstance(error, KeyboardInterrupt):
      record.write('failed', int(manager.latest_step() or 0), checkpointing.best(manager),
                   error=f'{type(error).__name__}: {error}')
    raise
  finally:
    profile.close()
    manager.wait_until_finished()
    manager.close()
    writer.close()


class _Profile:
  """`config.profile_steps`: a jax.profiler trace of the steps `first`.. (at most `steps`, none
  past `last_step`) in `<workdir>/plugins/profile/`, and where their device time went
  (`unet_jax/device_profile.py`) in `<workdir>/device_profile.json` and the log. Process 0 only:
  each process would trace its own devices alike."""

  def __init__(self, workdir: str, first: int, steps: int, last_step: int):
    self.workdir, self.first = workdir, first
    self.last = min(first + steps - 1, last_step) if steps and jax.process_index() == 0 else -1
    self.active = False

  def start_if_due(self, step: int) -> None:
    if step == self.first and self.first <= self.last:
      jax.profiler.start_trace(self.workdir)
      self.active = True

  def stop_if_due(self, step: int, dp: parallel.DataParallel, state, *step_args) -> None:
    """After the last traced step: `state` is its result, `step_args` its other arguments."""
    if not (self.active and step == self.last):
      return
    jax.block_until_ready(state)  # The traced steps' kernels must end inside the trace.
    self.close()
    steps = self.last - self.first + 1
    try:  # A diagnosis: a trace it cannot read (a newer format, say) must not end the run.
      trace = device_profile.newest_trace(self.workdir)
      breakdown = device_profile.read_trace(trace, steps,
                                            hlo_text=_compiled_text(dp, state, *step_args))
    except Exception as error:
      logging.warning('Traced steps %d-%d, but could not read the trace: %s', self.first,
                      self.last, error)
      return
    results.write_json(os.path.join(self.workdir, 'device_profile.json'), {
        'first_step': self.first, 'last_step': self.last,
        'trace': os.path.relpath(trace, self.workdir), **breakdown})
    logging.info('Device time of steps %d-%d: %s. Trace: %s (TensorBoard\'s Profile tab).',
                 self.first, self.last, device_profile.format_breakdown(breakdown), trace)

  def close(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False


def _compiled_text(dp: parallel.DataParallel, *args) -> str | None:
  """The train step's compiled HLO, which jit's cache already holds after the step has run
  (no compiling); None under pmap, whose lower() would compile again."""
  return dp.train_step.lower(*args).compile().as_text() if dp.mode == 'shard_map' else None


@jax.jit
def _track_finite(first_bad: jax.Array, step: int, step_metrics: dict) -> jax.Array:
  finite = jax.numpy.all(jax.numpy.stack([jax.numpy.all(jax.numpy.isfinite(x))
                                          for x in jax.tree.leaves(step_metrics)]))
  return jax.numpy.where((first_bad < 0) & ~finite, step, first_bad)


def _check_finite(first_bad: jax.Array, saved: int) -> None:
  """Raises if a step's loss or gradients were NaN or Inf (one host sync)."""
  step = int(first_bad)
  if step >= 0:
    raise FloatingPointError(
        f'Step {step}: the loss or the gradient norm is not finite (NaN or Inf). Nothing after '
        f'step {saved} was saved, so the checkpoints hold only finite states. Try a lower '
        'config.optim.lr, config.optim.grad_clip_norm > 0, a longer warmup, or '
        "config.precision='float32'; then train again in a new workdir, or resume from step "
        f'{saved} with the change.')


def _final_metrics(entry: dict | None) -> dict[str, float]:
  return dict(entry['metrics']) if entry else {}
