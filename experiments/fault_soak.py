r"""A soak test: one small run killed many times at random moments, then compared with a clean run.

  python -m experiments.fault_soak [--kills 30] [--term-every 5] [--seed 0] [--out workdirs/soak]

It trains a small quickstart-sized run twice: once uninterrupted (the reference), and once as a
sequence of attempts, each started with the same command and sent SIGKILL (every
`--term-every`-th attempt, SIGTERM instead) at a random moment of its training, until `--kills`
signals have been sent; then the same command runs to the end. Each signal's moment is drawn
uniformly from half-way through an attempt's start-up to 60 steps into its training (both
measured on a warm start first), and the phase it landed in is read off the attempt's last log
line (start-up, training step, validation, checkpoint, summary). At the end it checks that the interrupted run
matches the reference: final parameters bit for bit, final validation metrics, every step once
in metrics.jsonl and in the TensorBoard events. Prints a table of phases and the verdict, exits
non-zero if any check fails. The result is recorded in experiments/results/reliability.md.
"""

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import time

if __package__ in (None, ''):  # `python experiments/fault_soak.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from unet_jax import cli  # The rest after the arguments: --help answers in a second, not 7.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = [
  '--config.num_train_steps=400', '--config.log_every_steps=5',
  '--config.checkpoint_every_steps=10', '--config.max_checkpoints_to_keep=2',
  '--config.batch_size=8', '--config.data.num_examples=80',
  '--config.data.image_size=32', '--config.data.synthetic_size=32', '--config.model.depth=2',
  '--config.model.base_width=8', '--config.model.dropout_rate=0.5',
  '--config.model.dropout_levels=2', '--config.optim.warmup_steps=5',
  '--config.eval.batch_size=8', '--config.eval.every_steps=15',
  '--config.eval.pooled_every_steps=5',
]


def _command(workdir: str, cache: str) -> list[str]:
  return [sys.executable, '-m', 'unet_jax.main', '--config', 'configs/quickstart.py',
          '--workdir', workdir, f'--compilation_cache_dir={cache}', *OVERRIDES]


def _phase(log: str) -> str:
  """Where a killed attempt was: the phase its last log line opened."""
  for line in reversed(log.splitlines()):
    if 'validating' in line and 'native resolution' in line:
      return 'native validation'
    if 'Saving the checkpoint' in line or 'saving the checkpoint' in line:
      return 'checkpoint save, summary write'
    if 'validation at step' in line or 'pooled S x S validation' in line:
      return 'pooled validation, checkpoint, summary'
    if '| loss' in line or 'First step' in line:
      return 'training steps'
    if 'Resuming' in line or 'Model:' in line:
      return 'start-up: restore, compile'
  return 'start-up: imports'


def _run(command, env, kill_after: float | None, sig):
  """Runs the command, sending `sig` after `kill_after` seconds; returns (status, log)."""
  process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  if kill_after is not None:
    try:
      process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
      process.send_signal(sig)
  log = process.communicate(timeout=600)[0]
  return process.returncode, log


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 2)[2])
  parser.add_argument('--kills', type=int, default=30, help='Signals to send in all.')
  parser.add_argument('--term-every', type=int, default=5,
                      help='Every Nth signal is SIGTERM (a clean stop) instead of SIGKILL.')
  parser.add_argument('--seed', type=int, default=0, help='Seeds the moments of the signals.')
  parser.add_argument('--out', default=os.path.join(REPO, 'workdirs', 'soak'),
                      help='Folder for the two runs (replaced).')
  args = parser.parse_args(argv)
  cli.check_can_be_folder(args.out, '--out')
  import jax
  import numpy as np
  from tensorboard.backend.event_processing import event_accumulator

  from unet_jax import (
    checkpointing,
    metric_logging,
    models,
    optim,
    results,
    run_config,
    train_step,
  )

  shutil.rmtree(args.out, ignore_errors=True)
  os.makedirs(args.out)
  cache = os.path.join(args.out, 'xla_cache')
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  reference, workdir = os.path.join(args.out, 'reference'), os.path.join(args.out, 'soaked')

  status, log = _run(_command(reference, cache), env, None, None)
  if status:
    print(log[-3000:])
    return 1
  # Calibrated on a warm start: how long start-up takes, and a training step.
  start = time.perf_counter()
  process = subprocess.Popen(_command(os.path.join(args.out, 'warm'), cache), cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  for line in process.stdout:
    if 'First step' in line:
      break
  startup = time.perf_counter() - start
  for line in process.stdout:
    if 'Trained steps' in line:
      break
  step_time = (time.perf_counter() - start - startup) / 400
  process.communicate()
  print(f'Start-up {startup:.1f} s, {step_time * 1000:.0f} ms a step (validation included).',
        flush=True)

  rng = random.Random(args.seed)
  phases, outcomes = collections.Counter(), collections.Counter()
  sent = 0
  while sent < args.kills:
    sig = signal.SIGTERM if args.term_every and (sent + 1) % args.term_every == 0 else \
        signal.SIGKILL
    # From half-way through start-up to 60 steps into training: about a third of the signals
    # land in start-up (imports, restore, compile), the rest in training, validation and saves.
    moment = rng.uniform(0.5 * startup, startup + 60 * step_time)
    status, log = _run(_command(workdir, cache), env, moment, sig)
    state = (results.read_run_summary(workdir) or {}).get('state', 'none')
    if status == 0 and state == 'finished':
      print(f'The run finished before signal {sent + 1}.', flush=True)
      break
    sent += 1
    phase = _phase(log)
    phases[(signal.Signals(sig).name, phase)] += 1
    outcomes[status] += 1
    print(f'{sent:3d}: {signal.Signals(sig).name} after {moment:4.1f} s -> status {status}, '
          f'summary {state}, {phase}', flush=True)
  status, log = _run(_command(workdir, cache), env, None, None)
  if status:
    print(log[-3000:])
    return 1

  # The checks, against the reference.
  config = run_config.load(workdir)

  def params(path):
    manager = checkpointing.open_for_reading(os.path.join(path, 'checkpoints'))
    target = train_step.create_train_state(
      models.create_model(config.model),
      optim.create_optimizer(config.optim, config.num_train_steps), jax.random.key(0),
      config.data.image_size)
    state, step = checkpointing.restore_latest(manager, target)
    manager.close()
    return state.params, step

  def logged(path):
    rows = metric_logging.read_jsonl(os.path.join(path, 'metrics.jsonl'))
    return [(r['step'], sorted(r)) for r in rows]

  def events(path):
    loader = event_accumulator.EventAccumulator(path, size_guidance={'tensors': 0})
    loader.Reload()
    return {tag: [e.step for e in loader.Tensors(tag)] for tag in loader.Tags()['tensors']}

  (mine, step), (theirs, _) = params(workdir), params(reference)
  checks = {
    'final step': step == config.num_train_steps,
    'parameters bit for bit': all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True)),
    'final validation metrics': results.read_run_summary(workdir)['final']['metrics'] ==
                                results.read_run_summary(reference)['final']['metrics'],
    'metrics.jsonl: each step once': logged(workdir) == logged(reference),
    'TensorBoard events: each step once': events(workdir) == events(reference),
    'summary.json finished': results.read_run_summary(workdir)['state'] == 'finished',
  }
  print(f'\n{sent} signals (exit statuses: {dict(outcomes)}), then the same command to the end:')
  print('| signal | where it landed | count |\n|---|---|---|')
  for (name, phase), count in sorted(phases.items()):
    print(f'| {name} | {phase} | {count} |')
  print()
  for name, ok in checks.items():
    print(f'{name}: {"ok" if ok else "FAILED"}')
  return 0 if all(checks.values()) else 1


if __name__ == '__main__':
  sys.exit(main())
