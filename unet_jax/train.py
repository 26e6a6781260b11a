"""Training and periodic evaluation: `train_and_evaluate(config, workdir)`.

The path of a batch: `input_pipeline.train_batches` (tf.data, uint8 numpy out) ->
`DataParallel.place_batch` (one global array sharded over the devices, prefetched) ->
`train_step.train_step` (augmentation and normalization on the device, `augment.make_preprocess`;
loss, pmean'd grads, optimizer). Checkpoints, metrics and the resolved config live in `workdir`; re-running the
same command resumes from the latest checkpoint.
"""

import collections
import json
import os
import time
from collections.abc import Callable, Iterator

import jax
import ml_collections
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from unet_jax import augment, checkpointing, input_pipeline, metric_logging, metrics, models, optim
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


def write_config(config: ml_collections.ConfigDict, workdir: str):
  """Writes the resolved config to workdir/config.json (atomically); warns if a resumed run's
  config differs from the one it started with."""
  path = os.path.join(workdir, 'config.json')
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      if f.read() != text:
        logging.warning('The config differs from the one in %s, which this run resumes; '
                        'writing the new one over it.', path)
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, path)


def validate_config(config: ml_collections.ConfigDict, num_devices: int):
  """Config errors that would otherwise surface late (after compiling, or mid-run)."""
  ts.check_batch_divides(config.batch_size, num_devices, 'config.batch_size')
  ts.check_batch_divides(config.eval_batch_size, num_devices, 'config.eval_batch_size')
  for field in ('num_train_steps', 'log_every_steps', 'eval_every_steps',
                'checkpoint_every_steps', 'max_checkpoints_to_keep'):
    if config[field] <= 0:
      raise ValueError(f'config.{field}={config[field]} must be positive.')
  factor = 2**config.model.depth
  if config.data.image_size % factor:
    raise ValueError(f'config.data.image_size={config.data.image_size} must be a multiple of '
                     f'2**config.model.depth = {factor}.')


def evaluate(dp: ts.DataParallel, state, config: ml_collections.ConfigDict,
             split: str = 'val') -> dict[str, float]:
  """Metrics of `state` on a whole split, from counts summed over every batch and device."""
  total = None
  for batch in input_pipeline.eval_batches(config, split):
    total = metrics.add_counts(
        total, dp.fetch_metrics(dp.eval_step(state, dp.place_batch(batch))))
  if total is None:
    raise ValueError(f'The {split!r} split is empty; check config.data.')
  return metrics.metrics_from_counts(total)


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_after_step: int | None = None) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the final val metrics.

  `stop_after_step` ends the run early, checkpointed, as a pre-empted job would end; the schedule
  still follows `config.num_train_steps`, so running again without it finishes the same run.
  """
  workdir = os.path.abspath(workdir)  # Orbax requires absolute paths.
  mesh = ts.make_mesh()
  validate_config(config, mesh.devices.size)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    write_config(config, workdir)
  writer = metric_logging.create_writer(workdir)

  dtype = ts.compute_dtype(config.precision)
  model = models.create_model(config.model, dtype=dtype, bn_axis_name=ts.AXIS)
  optimizer = optim.create_optimizer(config.optim, config.num_train_steps)
  schedule = optim.create_schedule(config.optim, config.num_train_steps)  # For logging the lr.
  rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)
  state = ts.create_train_state(model, optimizer, init_rng, config.data.image_size)
  logging.info('Model: %s parameters, %s BatchNorm statistics, compute dtype %s.',
               f'{models.count_params(state.params):,}',
               f'{models.count_params(state.batch_stats):,}', jax.numpy.dtype(dtype).name)

  preprocess = augment.make_preprocess(config.augment, config.data.normalize, config.seed)
  dp = ts.make_data_parallel(config.parallelism, config.loss, mesh, preprocess=preprocess)
  if dp.mode == 'shard_map':
    state = jax.device_put(state, NamedSharding(mesh, P()))
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  manager = checkpointing.create_manager(ckpt_dir, every_steps=config.checkpoint_every_steps,
                                         max_to_keep=config.max_checkpoints_to_keep)
  state, restored_step = checkpointing.restore_latest(manager, state)
  start_step = int(restored_step or 0)
  if restored_step is not None:
    logging.info('Resuming from the checkpoint of step %d in %s.', start_step, ckpt_dir)
  state = dp.place_state(state)

  batches = input_pipeline.train_batches(config, start_step=start_step)
  batches = prefetch(batches, dp.place_batch)
  images_per_step = config.batch_size
  window_start, wait_time, window_steps = time.perf_counter(), 0.0, 0
  train_start, timed_steps = None, 0
  val_metrics = None

  last_step = config.num_train_steps
  if stop_after_step is not None:
    last_step = min(last_step, stop_after_step)
  for step in range(start_step + 1, last_step + 1):
    wait_start = time.perf_counter()
    batch = next(batches)
    wait_time += time.perf_counter() - wait_start
    state, step_metrics = dp.train_step(state, batch, dropout_rng)
    window_steps += 1

    if step == start_step + 1:
      # The first step compiles; time the rest.
      jax.block_until_ready(state)
      logging.info('First step (compile included) took %.1f s.', time.perf_counter() - wait_start)
      train_start, window_start, wait_time, window_steps = time.perf_counter(), time.perf_counter(), 0.0, 0

    if step % config.log_every_steps == 0 or step == last_step:
      scalars = {k: float(v) for k, v in dp.fetch_metrics(step_metrics).items()}
      if not all(map(_is_finite, scalars.values())):
        raise FloatingPointError(f'Step {step}: non-finite training metrics {scalars}. Lower '
                                 'config.optim.lr or set config.optim.grad_clip_norm.')
      now = time.perf_counter()
      elapsed = now - window_start
      timed_steps += window_steps
      if window_steps:
        scalars['images_per_sec'] = window_steps * images_per_step / elapsed
        scalars['data_wait_fraction'] = wait_time / elapsed
      scalars['lr'] = float(schedule(step - 1))
      writer.write_scalars(step, {f'train_{k}': v for k, v in scalars.items()})
      rate = timed_steps / (now - train_start) if timed_steps else 0.0
      eta = (config.num_train_steps - step) / rate if rate else 0.0
      logging.info('step %d/%d | loss %.4f | %.1f img/s | data wait %.0f%% | ETA %s', step,
                   config.num_train_steps, scalars['loss'], scalars.get('images_per_sec', 0.0),
                   100 * scalars.get('data_wait_fraction', 0.0), _format_eta(eta))
      window_start, wait_time, window_steps = time.perf_counter(), 0.0, 0

    if step % config.eval_every_steps == 0 or step == last_step:
      eval_start = time.perf_counter()
      val_metrics = evaluate(dp, state, config)
      writer.write_scalars(step, {f'val_{k}': v for k, v in val_metrics.items()})
      logging.info('eval at step %d: %s', step, _format_metrics(val_metrics))
      window_start += time.perf_counter() - eval_start  # Eval time is not training time.
      train_start += time.perf_counter() - eval_start

    if step == last_step or manager.should_save(step):
      # Asked first, so the state is gathered to one copy (a gather per leaf in 'pmap' mode)
      # only on the steps that save, not on every step.
      checkpointing.save(manager, step, dp.fetch_state(state), force=True)
      logging.info('Saved the checkpoint of step %d.', step)
    writer.flush()

  if train_start is not None:
    logging.info('Trained steps %d-%d in %s (after the first, compiling step).', start_step + 1,
                 last_step, _format_eta(time.perf_counter() - train_start))
  if val_metrics is None:  # Nothing left to train: the run had already finished.
    logging.info('The checkpoint is at step %d, config.num_train_steps=%d: nothing to train.',
                 start_step, config.num_train_steps)
    val_metrics = evaluate(dp, state, config)
  manager.wait_until_finished()
  manager.close()
  writer.close()
  return val_metrics


def _is_finite(x: float) -> bool:
  return x == x and abs(x) != float('inf')


def _format_metrics(values: dict[str, float]) -> str:
  return ', '.join(f'{k} {v:.4f}' for k, v in sorted(values.items()))


def summary_text(val_metrics: dict[str, float], workdir: str) -> str:
  """What a run prints when it ends: the final metrics and where its outputs are."""
  return '\n'.join([
      'Final validation metrics: ' + json.dumps({k: round(v, 4) for k, v in val_metrics.items()}),
      f'Checkpoints:     {os.path.join(workdir, "checkpoints")}',
      f'TensorBoard:     tensorboard --logdir {workdir}',
      f'Metrics (JSONL): {os.path.join(workdir, "metrics.jsonl")}',
      f'Config:          {os.path.join(workdir, "config.json")}',
  ])
