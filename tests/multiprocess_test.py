"""Two processes on JAX's own multi-process runtime (`jax.distributed`), on one machine.

Each process runs `python -m unet_jax.main --jax_distributed` with 2 CPU devices, as two hosts of
a cluster would: one global mesh of 4 devices, each process reading its own slice of the data.
A SIGTERM to one of them stops both at the same step; the same command resumes them.
Their validation metrics must equal those of the saved checkpoint evaluated in a single process:
every validation image counted exactly once across processes, none dropped or doubled by the
per-process slicing and padding, in the per-image validation (each process scores its slice,
then the counts are all-gathered) and in the pooled pass (a psum over the global mesh).
"""

import os
import socket
import subprocess
import sys

import jax
import pytest

from unet_jax import (
  evaluate,
  inference,
  metric_logging,
  models,
  optim,
  parallel,
  results,
  run_config,
  train,
)
from unet_jax import train_step as ts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = ['--config.num_train_steps=12', '--config.log_every_steps=4',
             '--config.eval.every_steps=12', '--config.eval.pooled_every_steps=12', '--config.checkpoint_every_steps=12',
             '--config.data.num_examples=84', '--config.data.num_folds=4',  # 21 val: uneven slices.
             '--config.data.image_size=32', '--config.data.synthetic_size=32',
             '--config.model.depth=2', '--config.model.base_width=8',
             '--config.batch_size=8', '--config.eval.batch_size=8',
             '--config.optim.warmup_steps=1', '--config.optim.lr=0.03']  # Some lesion found.


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch(workdir: str, faults: dict[int, str]) -> list[tuple[int, str]]:
  """Runs the two processes to their end: [(exit status, output)] by process."""
  address = f'127.0.0.1:{_free_port()}'
  procs = []
  for i in range(2):
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2 '
               '--xla_backend_optimization_level=0',  # As in this process: see conftest.
               UNET_JAX_FAULTS=faults.get(i, ''))
    procs.append(subprocess.Popen(
        [sys.executable, '-m', 'unet_jax.main', '--config', 'configs/quickstart.py', '--workdir',
         workdir, '--jax_distributed', f'--coordinator_address={address}', '--num_processes=2',
         f'--process_id={i}', '--compilation_cache_dir=', *OVERRIDES],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  return [(p.wait(timeout=400), p.communicate()[0]) for p in procs]


def test_two_processes_stop_together_resume_and_count_every_validation_image_once(tmp_path):
  workdir = str(tmp_path / 'run')
  # SIGTERM reaches process 1 alone, in step 5: JAX's preemption sync makes both processes stop
  # after the same step, checkpointed, with the "try again" status.
  stopped = _launch(workdir, {1: 'term@step:5'})
  for i, (status, out) in enumerate(stopped):
    assert status == 75, f'process {i}:\n{out[-3000:]}'
  step = results.read_run_summary(workdir)['step']
  assert results.read_run_summary(workdir)['state'] == 'stopped' and 5 <= step < 12
  assert f'stopped at step {step}' in stopped[0][1] and f'stopped at step {step}' in stopped[1][1]
  assert str(step) in os.listdir(os.path.join(workdir, 'checkpoints'))

  finished = _launch(workdir, {})
  outputs = [out for _, out in finished]
  for i, (status, out) in enumerate(finished):
    assert status == 0, f'process {i}:\n{out[-3000:]}'
    assert f'process {i}/2, 2 local / 4 global devices' in out
    assert f'Resuming from the checkpoint of step {step}' in out
  assert 'Final validation, per image' in outputs[0]  # Only process 0 prints and writes.
  assert 'Final validation' not in outputs[1]

  rows = metric_logging.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert rows[-1]['step'] == 12
  pooled = {k[len('val_pooled_'):]: v for r in rows if r['step'] == 12 for k, v in r.items()
            if k.startswith('val_pooled_')}
  assert 0 < pooled['dice'] < 1  # Not a degenerate all-background prediction.

  # The per-image validation: each process scored its slice; together, every image once, as a
  # single process evaluating the saved checkpoint scores them.
  summary = results.read_run_summary(workdir)
  assert summary['devices']['processes'] == 2 and summary['state'] == 'finished'
  distributed = results.read_per_image_csv(
      os.path.join(workdir, summary['final']['per_image_csv']))
  single = evaluate.evaluate_run(workdir, output_dir=str(tmp_path / 'eval'))
  assert single['num_images'] == len(distributed) == 21
  assert results.read_per_image_csv(str(tmp_path / 'eval' / 'per_image.csv')) == distributed

  # The pooled pass: the same checkpoint, evaluated here in one process over 8 devices.
  config = run_config.load(workdir)
  variables, step = inference.restore_variables(config, workdir)
  assert step == 12
  state = ts.create_train_state(models.create_model(config.model),
                                optim.create_optimizer(config.optim, 12),
                                jax.random.key(0), config.data.image_size)
  state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'])
  dp = parallel.make_data_parallel('shard_map', config.loss)
  reference = train.evaluate_pooled(dp, dp.place_state(state), config)
  for key in ('dice', 'jaccard', 'accuracy', 'sensitivity', 'specificity'):
    assert pooled[key] == reference[key], key
  assert pooled['loss'] == pytest.approx(reference['loss'], rel=1e-5)
