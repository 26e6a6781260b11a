r"""Two probes of the GPU check (experiments/gpu_check.sh), each in its own process.

  python -m experiments.gpu_probes determinism [--deterministic] --out FILE [model flags]
  python -m experiments.gpu_probes restart --cache DIR --out FILE [model flags]

determinism  From one train state, the real train step twice on the same batch: are the two
             resulting parameters bit-identical? With --deterministic, XLA's deterministic GPU
             kernels are on (`--xla_gpu_deterministic_ops=true`, what `config.deterministic`
             sets; unet_jax/determinism.py), set here before JAX starts. Then --timed-steps
             steps are timed: their images/s against the jax-aug part's at the same batch size
             (the same model and step without the flag) is what determinism costs, which says
             whether `config.deterministic` could be on by default.
restart      How long a restarted run takes from process start to its first train step done,
             imports included: a child process is timed from its launch until its first step
             is done (not until it exits), three times. Cold: a run's start, with an empty
             persistent compilation cache: it initializes the train state, compiles the step,
             runs it, then saves a checkpoint. Warm: the run restarted, as a resumed training run
             does: it restores that checkpoint into the state's shapes (nothing initialized) and
             loads the step from the cache the cold run filled. Warm, backend beside imports:
             the same, with the backend (CUDA's start on a GPU) started in a thread as soon as
             JAX is imported, while the main thread imports the rest: XLA creates its client
             outside Python's lock, so the two can overlap (whether they do, and by how much, is
             what this run measures). Each run's parts are timed too (imports, the backend's
             start, or what is left of it, the train state and batch, tracing and lowering the
             step, compiling or loading it, running it).

Only jax, flax, optax and numpy are imported (the GPU machine has no TensorFlow). The model is
the seed's (configs/seed.py: depth 4, width 64, 'seed' head, nearest upsampling + conv) at 224
px unless the flags shrink it (the CPU test does).
"""

import argparse
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ''):  # Run as a file (`python experiments/X.py`): find `experiments`.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DETERMINISTIC_FLAG = '--xla_gpu_deterministic_ops=true'  # unet_jax.determinism.FLAG


def state_and_step(args, checkpoint: str | None = None, timings: dict | None = None):
  """(data-parallel step, state, batch, rng) of the seed model, as experiments.benchmark builds
  them (the real train step, augmenting on the device); the state restored from the latest
  checkpoint in `checkpoint`, as unet_jax.train resumes, when given (the restore's seconds, the
  state's shapes traced before it, then in `timings['restore_s']`)."""
  import jax

  from experiments import benchmark

  spec = benchmark.Spec(upsample=args.upsample, precision=args.precision,
                        batch_size=args.batch_size, image_size=args.image_size,
                        base_width=args.base_width, depth=args.depth, norm_position='after_act',
                        head='seed', augment=True)
  from unet_jax import augment, models, optim, parallel
  from unet_jax import train_step as ts

  model = models.UNet(**spec.model_kwargs(), dtype=parallel.compute_dtype(spec.precision),
                      bn_axis_name=ts.AXIS)
  import types

  tx = optim.create_optimizer(types.SimpleNamespace(**benchmark.OPTIM), num_train_steps=10_000)
  preprocess = augment.make_preprocess(types.SimpleNamespace(**benchmark.AUGMENT), 'unit', 0)
  dp = parallel.make_data_parallel('shard_map', benchmark.LOSS,
                                   parallel.make_mesh(jax.devices()[:1]), preprocess=preprocess)
  if checkpoint:
    from unet_jax import checkpointing

    abstract = ts.abstract_train_state(model, tx, spec.image_size, sharding=dp.state_sharding)
    start = time.perf_counter()
    manager = checkpointing.open_for_reading(checkpoint)
    state = jax.block_until_ready(checkpointing.restore(manager, manager.latest_step(), abstract))
    manager.close()
    if timings is not None:
      timings['restore_s'] = time.perf_counter() - start
  else:
    state = ts.create_train_state(model, tx, jax.random.key(0), spec.image_size)
  batch = benchmark.synthetic_batch(spec.batch_size, spec.image_size)
  return dp, state, batch, jax.random.key(1)


def determinism(args) -> dict:
  if args.deterministic:
    flags = os.environ.get('XLA_FLAGS', '')
    os.environ['XLA_FLAGS'] = f'{flags} {DETERMINISTIC_FLAG}'.strip()
  import jax
  import numpy as np

  dp, state, batch, rng = state_and_step(args)
  print('determinism: compiling the step (a minute on a GPU), then two steps and '
        f'{args.timed_steps} timed...', file=sys.stderr, flush=True)
  results = []
  for _ in range(2):
    placed = dp.place_state(jax.tree.map(np.array, jax.device_get(state)))  # A fresh copy.
    new_state, _ = dp.train_step(placed, dp.place_batch(batch), rng)
    results.append(jax.device_get(new_state.params))
  # Timed as experiments.benchmark times the jax-aug rows it is compared with: the batch placed
  # once, a warm-up step (compiled above), then the steps back to back.
  timed, placed_batch = dp.place_state(state), dp.place_batch(batch)
  timed, _ = dp.train_step(timed, placed_batch, rng)
  jax.block_until_ready(timed)
  start = time.perf_counter()
  for _ in range(args.timed_steps):
    timed, _ = dp.train_step(timed, placed_batch, rng)
  jax.block_until_ready(timed)
  seconds = time.perf_counter() - start
  leaves = list(zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True))
  differing = sum(not np.array_equal(a, b) for a, b in leaves)
  worst = max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in leaves)
  return {'probe': 'determinism', 'deterministic_ops': args.deterministic,
          'xla_flags': os.environ.get('XLA_FLAGS', ''), 'device': str(jax.devices()[0]),
          'bit_identical': differing == 0, 'differing_leaves': differing,
          'leaves': len(leaves), 'max_abs_diff': worst, 'batch_size': args.batch_size,
          'timed_steps': args.timed_steps,
          'images_per_s': args.timed_steps * args.batch_size / seconds if seconds else None}


# The restart probe's runs, in order, with the flags of each child (`first-step`).
RESTART_RUNS = {'cold': [], 'warm': ['--resume'],
                'warm_backend_beside_imports': ['--resume', '--backend-beside-imports']}


def restart(args) -> dict:
  """Cold, then the warm runs (RESTART_RUNS): a child process per run, timed from launch to its
  first step done (the child's clock, time.time(), read at that moment: the same clock as the
  launch's)."""
  import shutil

  checkpoint = _checkpoint_dir(args)
  for folder in (args.cache, checkpoint):
    shutil.rmtree(folder, ignore_errors=True)
  child = [sys.executable, '-m', 'experiments.gpu_probes', 'first-step', '--cache', args.cache,
           '--checkpoint', checkpoint, *_model_argv(args)]
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  timings = {}
  for run, flags in RESTART_RUNS.items():
    print(f'restart: the {run} run...', file=sys.stderr, flush=True)  # A minute each on a GPU.
    launched, start = time.time(), time.perf_counter()
    done = subprocess.run([*child, *flags], cwd=repo, capture_output=True, text=True,
                          check=False)
    exited = time.perf_counter() - start
    if done.returncode:
      raise RuntimeError(f'{run} start failed:\n{done.stderr[-2000:]}')
    report = json.loads(done.stdout.strip().splitlines()[-1])
    timings[run] = {'process_start_to_first_step_s': report.pop('first_step_done_at') - launched,
                    'process_start_to_exit_s': exited, **report}
  return {'probe': 'restart', **timings}


def first_step(args) -> dict:
  """The child of `restart`: imports, builds (or, with --resume, restores), compiles (or loads)
  and runs one step, each part timed (the 11.0 s of the first warm restart measured on an H200
  did not say which to cut); without --resume it then saves the state as the checkpoint the
  warm run restores."""
  inside = time.perf_counter()
  import jax

  if args.backend_beside_imports:  # Its errors, if any, are raised by jax.devices() below.
    import threading

    threading.Thread(target=_start_backend, daemon=True).start()
  from experiments import benchmark  # noqa: F401  (state_and_step's imports, timed here)
  from unet_jax import compilation_cache

  imported = time.perf_counter()
  compilation_cache.enable_compilation_cache(args.cache)  # Read at the first compile, not here.
  jax.devices()  # The backend's start (CUDA and cuDNN on a GPU), or the rest of it.
  started = time.perf_counter()
  restored = {}  # The restore's part of the train state's time.
  dp, state, batch, rng = state_and_step(args, _checkpoint_dir(args) if args.resume else None,
                                          restored)
  state, placed = dp.place_state(state), dp.place_batch(batch)
  jax.block_until_ready((state, placed))
  built = time.perf_counter()
  lowered = dp.train_step.lower(state, placed, rng)  # What a jitted call traces and lowers.
  traced = time.perf_counter()
  compiled = lowered.compile()  # Compiled, or loaded from the persistent cache.
  loaded = time.perf_counter()
  state, metrics = compiled(state, placed, rng)
  jax.block_until_ready((state, metrics))
  done_at, done = time.time(), time.perf_counter()
  timings = {'first_step_done_at': done_at, 'first_step_s': done - built,
             'in_process_s': done - inside, 'imports_s': imported - inside,
             'backend_start_s': started - imported, 'train_state_s': built - started,
             'trace_and_lower_s': traced - built, 'compile_or_load_s': loaded - traced,
             'run_s': done - loaded, 'state_restored': args.resume,
             'backend_beside_imports': args.backend_beside_imports, **restored}
  if not args.resume:  # After the first step, so not in its time: what the warm run restores.
    from unet_jax import checkpointing

    manager = checkpointing.create_manager(_checkpoint_dir(args), max_to_keep=1)
    checkpointing.save(manager, 1, state)
    manager.wait_until_finished()
    manager.close()
    timings['save_s'] = time.perf_counter() - done
  return timings


def _start_backend():
  """jax.devices() in a thread: an error is left for the main thread's own call to raise."""
  import contextlib

  import jax

  with contextlib.suppress(Exception):
    jax.devices()


def _checkpoint_dir(args) -> str:
  return args.checkpoint or f'{args.cache.rstrip(os.sep)}_checkpoint'


def _model_argv(args) -> list[str]:
  return ['--image-size', str(args.image_size), '--base-width', str(args.base_width), '--depth',
          str(args.depth), '--batch-size', str(args.batch_size), '--precision', args.precision,
          '--upsample', args.upsample]


def parse_args(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('probe', choices=('determinism', 'restart', 'first-step'))
  parser.add_argument('--deterministic', action='store_true')
  parser.add_argument('--timed-steps', type=int, default=10,
                      help='determinism: steps timed after the check.')
  parser.add_argument('--cache', default='/tmp/unet_jax_restart_cache')
  parser.add_argument('--checkpoint', default='',
                      help='restart: where the cold run saves the state the warm run restores '
                           '(default: the --cache folder\'s name + "_checkpoint").')
  parser.add_argument('--resume', action='store_true',
                      help='first-step: restore the state from --checkpoint, as a restart.')
  parser.add_argument('--backend-beside-imports', action='store_true',
                      help='first-step: start the backend in a thread while the main thread '
                           'imports the rest.')
  parser.add_argument('--out', default='')
  parser.add_argument('--image-size', type=int, default=224)
  parser.add_argument('--base-width', type=int, default=64)
  parser.add_argument('--depth', type=int, default=4)
  parser.add_argument('--batch-size', type=int, default=64)
  parser.add_argument('--precision', default='bfloat16')
  parser.add_argument('--upsample', default='resize_conv')
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  result = {'determinism': determinism, 'restart': restart, 'first-step': first_step}[
      args.probe](args)
  print(json.dumps(result), flush=True)
  if args.out:  # Whole or not at all (a rename), as the benchmark's files: a part's timeout
    from unet_jax import results  # may kill it mid-write. Imported once JAX has its flags.

    results.write_json(args.out, result)
  return 0


if __name__ == '__main__':
  sys.exit(main())
