r"""How long JAX takes to trace and lower the seed's train step, in a fresh process, by variant.

  python -m experiments.trace_cost [--variants default,disable_jit,no_locations] [--repeats 2]
                                   [--batch-size 2] [--out FILE] [model flags]

Tracing and lowering the step is paid by every process that runs it, a warm restart included
(the persistent compilation cache skips only the compile): 2-2.5 s of a warm restart's 11 s on
an H200, by the restart probe's parts (experiments/results/benchmark_gpu.md). Each variant runs in
a process of its own (the first trace of a process pays for JAX's own first-use costs, as a
restart does), the variants alternating, `--repeats` times each:

  default        the step as training traces it
  disable_jit    its body traced under `jax.disable_jit()`: jax.numpy's own jitted functions are
                 traced inline instead of as nested jit calls (a measurement, not an option:
                 `disable_jit` also unrolls `lax.scan` into a Python loop and fails
                 `lax.while_loop` on a traced condition)
  no_locations   `jax_traceback_in_locations_limit=0`: no source locations in the lowered module

The model is the restart probe's (experiments/gpu_probes.py: the seed's, augmenting on the
device), built as it builds it; only JAX, flax, optax and numpy are imported.
"""

import argparse
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ''):  # Run as a file (`python experiments/X.py`): find `experiments`.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = ('default', 'disable_jit', 'no_locations')


def measure(variant: str, probe_argv: list[str]) -> dict:
  """In this process: the seed step's first trace and lowering under `variant`, in seconds."""
  import jax

  if variant == 'no_locations':
    jax.config.update('jax_traceback_in_locations_limit', 0)
  from experiments import gpu_probes
  from unet_jax import train_step as ts

  if variant == 'disable_jit':
    step = ts.train_step

    def inline_step(*args, **kwargs):
      with jax.disable_jit():
        return step(*args, **kwargs)

    ts.train_step = inline_step  # parallel.make_data_parallel wraps it when called.
  args = gpu_probes.parse_args(['first-step', *probe_argv])
  dp, state, batch, rng = gpu_probes.state_and_step(args)
  state, placed = dp.place_state(state), dp.place_batch(batch)
  jax.block_until_ready((state, placed))
  start = time.perf_counter()
  traced = dp.train_step.trace(state, placed, rng)
  middle = time.perf_counter()
  lowered = traced.lower()
  end = time.perf_counter()
  return {'variant': variant, 'trace_s': middle - start, 'lower_s': end - middle,
          'total_s': end - start, 'stablehlo_chars': len(lowered.as_text())}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated, of {", ".join(VARIANTS)}')
  parser.add_argument('--repeats', type=int, default=2, help='processes per variant')
  parser.add_argument('--out', default='', help='a JSON file for the rows')
  parser.add_argument('--child', default='', help=argparse.SUPPRESS)  # One measurement.
  args, probe_argv = parser.parse_known_args(argv)
  if args.child:
    print(json.dumps(measure(args.child, probe_argv)), flush=True)
    return 0
  variants = args.variants.split(',')
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    parser.error(f'--variants: {", ".join(unknown)} not one of {", ".join(VARIANTS)}')
  if not probe_argv:
    probe_argv = ['--batch-size', '2']
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rows = []
  for repeat in range(args.repeats):
    for variant in variants:
      print(f'{variant} ({repeat + 1}/{args.repeats})...', file=sys.stderr, flush=True)
      done = subprocess.run([sys.executable, '-m', 'experiments.trace_cost', '--child', variant,
                             *probe_argv], cwd=repo, capture_output=True, text=True, check=False)
      if done.returncode:
        raise SystemExit(f'{variant} failed:\n{done.stderr[-2000:]}')
      rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
  print('| variant | trace, s | lower, s | together, s | StableHLO, characters |')
  print('|---|---|---|---|---|')
  for row in rows:
    print(f"| {row['variant']} | {row['trace_s']:.2f} | {row['lower_s']:.2f} | "
          f"{row['total_s']:.2f} | {row['stablehlo_chars']:,} |")
  if args.out:
    from unet_jax import results

    results.write_json(args.out, {'model_flags': probe_argv, 'rows': rows})
  return 0


if __name__ == '__main__':
  sys.exit(main())
