"""experiments/gpu_check.sh runs blind on a lent GPU: it must work as written, within its deadline.

The script runs on CPU with the model shrunk, in two calls as a GPU session would make them: the
first with a deadline that lets only the first part start (the others are reported as not
started), the second given the first call's files (GPU_CHECK_DONE), which runs only the parts
still missing, and of a part whose earlier file was cut short by its time limit, the
configurations that file lacks. Together they must leave every part's JSON and print the table
with the targets. As on the GPU machine, TensorFlow, TFDS, ml_collections and CLU cannot be
imported there (each is replaced by a package that raises ImportError).
"""

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from experiments import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHRINK = ('--image-size 16 --base-width 2 --depth 1 --steps 1 --warmup 0 --matmul-size 32 '
          '--torch-compile none --precisions float32 --no-isolate')
PROBE = '--image-size 16 --base-width 2 --depth 1 --batch-size 2 --precision float32'
FAST = '--xla_backend_optimization_level=0'  # As every test: see conftest.
# What the GPU machine's image lacks (the developers' guide): the check must not import any of it.
GPU_MACHINE_LACKS = ('tensorflow', 'tensorflow_datasets', 'ml_collections', 'clu')
RESTART_PARTS = ('imports_s', 'backend_start_s', 'train_state_s', 'trace_and_lower_s',
                 'compile_or_load_s', 'run_s')
PARTS = ('machine', 'jax-aug', 'jax-noaug', 'torch', 'b256', 'upsample', 'restart',
         'determinism')


def _lacking(root):
  """A folder that, first on PYTHONPATH, makes GPU_MACHINE_LACKS unimportable."""
  for name in GPU_MACHINE_LACKS:
    os.makedirs(root / name, exist_ok=True)
    (root / name / '__init__.py').write_text(
        f'raise ImportError({name!r} " is not on the lent GPU machine (tests/gpu_check_test.py)")\n')
  return str(root)


def _pythonpath_lacking(root) -> str:
  """PYTHONPATH with `_lacking(root)` first."""
  return os.pathsep.join(p for p in (_lacking(root), os.environ.get('PYTHONPATH')) if p)


def _check(out, deadline, done=None, **more_env):
  path = _pythonpath_lacking(out.parent / 'lacks')
  env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, GPU_CHECK_ARGS=SHRINK, PYTHONPATH=path,
             GPU_CHECK_PROBE_ARGS=PROBE, GPU_CHECK_DEADLINE=str(deadline),
             GPU_CHECK_CACHE=str(out) + '_cache',
             XLA_FLAGS='--xla_backend_optimization_level=0')  # As every test: see conftest.
  env.update(more_env)
  if done:
    env['GPU_CHECK_DONE'] = str(done)
  return subprocess.run(['bash', 'experiments/gpu_check.sh'], cwd=ROOT, env=env,
                        capture_output=True, text=True, check=False, timeout=600)


def _check_restart(restart: dict):
  """The restart probe's three runs: each child's parts, timed one after another, make up its
  time, timed to its first step done, before it exits; both warm runs restored the checkpoint
  the cold run saved, and loaded its step from the cache that run filled; the last started its
  backend in a thread (what is left of the backend's start when the imports are done may be
  nothing: on a CPU it takes hundredths of a second)."""
  runs = (('cold', False, False), ('warm', True, False),
          ('warm_backend_beside_imports', True, True))
  assert sorted(restart) == sorted(['probe', *(run for run, _, _ in runs)])
  for run, restored, beside in runs:
    timing = restart[run]
    parts = [timing[k] for k in RESTART_PARTS]
    assert timing['backend_start_s'] >= 0
    assert all(timing[k] > 0 for k in RESTART_PARTS if k != 'backend_start_s')
    assert sum(parts) == pytest.approx(timing['in_process_s'], abs=0.05)
    assert sum(parts) <= timing['in_process_s'] + 1e-6
    assert (timing['in_process_s'] < timing['process_start_to_first_step_s']
            < timing['process_start_to_exit_s'])
    assert timing['state_restored'] is restored and timing['backend_beside_imports'] is beside
    assert ('save_s' in timing) is not restored and ('restore_s' in timing) is restored
    if restored:
      assert 0 < timing['restore_s'] < timing['train_state_s']
      assert timing['compile_or_load_s'] < restart['cold']['compile_or_load_s'] / 2
  assert restart['cold']['save_s'] > 0


def test_two_calls_within_their_deadline_measure_every_part(tmp_path):
  pytest.importorskip('torch')
  first, second = tmp_path / 'first', tmp_path / 'second'
  # Parts start with 60-140 s left (GPU-sized): a 70 s deadline admits the machine probe alone.
  one = _check(first, 70)
  assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-2000:]
  # The probe, and the note that this card (none) is too small for batch 256.
  assert sorted(os.listdir(first)) == ['b256.json', 'machine.json'], one.stdout[-2000:]
  assert '--- jax-aug: not started' in one.stdout and 'GPU_CHECK_DONE' in one.stdout
  # As a part killed by its timeout leaves it: the first batch size measured, 'complete' false.
  spec = benchmark.Spec(upsample='resize_conv', precision='float32', batch_size=64,
                        image_size=16, base_width=2, depth=1, augment=False)
  measured = dict(framework='jax', **dataclasses.asdict(spec), images_per_s=123.0, compile_s=1.0,
                  mfu=0.5, peak_gib=None)
  cut_short = {'rows': [measured], 'complete': False}
  (first / 'jax-noaug.json').write_text(json.dumps(cut_short))
  two = _check(second, 3000, done=first)
  assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-2000:]
  assert '--- machine: measured by an earlier call' in two.stdout
  assert 'jax-noaug.json was cut short; measuring what it lacks' in two.stdout
  assert sorted(p[:-5] for p in os.listdir(second)) == sorted(PARTS[1:])
  results = {p: json.loads((second / f'{p}.json').read_text()) if (second / f'{p}.json').exists()
             else json.loads((first / f'{p}.json').read_text()) for p in PARTS}
  assert all(results[p]['complete'] for p in ('jax-aug', 'jax-noaug', 'torch', 'upsample'))
  assert [(r['framework'], r['batch_size'], r['augment']) for r in results['jax-aug']['rows']] == [
      ('jax', 64, True), ('jax', 128, True)]
  assert not any(r['augment'] for r in results['jax-noaug']['rows'])
  # Only the batch size the cut-short file lacked was measured; the other was kept from it.
  kept, new = results['jax-noaug']['rows']
  assert (kept['batch_size'], kept['images_per_s'], kept['resumed_from']) == (
      64, 123.0, str(first / 'jax-noaug.json'))
  assert new['batch_size'] == 128 and 'resumed_from' not in new
  assert [(r['framework'], r['batch_size'], r['augment']) for r in results['torch']['rows']] == [
      ('torch', 128, False)]
  assert results['determinism']['bit_identical'] is True
  _check_restart(results['restart'])
  assert results['machine']['jax']
  # jax-aug traces its steps: where the device time went, by kind (unet_jax/device_profile).
  assert all(r['profile']['kinds']['convolution']['share'] > 0 for r in results['jax-aug']['rows'])
  table = two.stdout[two.stdout.index('| part |'):]
  # No GPU of 60,000 MiB here: batch 256 is skipped with a note (GPU_CHECK_B256=1 forces it).
  assert results['b256'] == {
      'skipped': 'the card has under 60,000 MiB; batch 256 took 39.2 GiB on an H200'}
  for text in ('JAX / PyTorch, equal work (no augmentation), batch 128', 'dense_d2s',
               '| warm restart < 10 s |', 'bit-identical | True', '| b256 | batch 256 | skipped',
               '| determinism | deterministic ops, batch 2: images/s | ',
               '| restart | cold, by part: imports / backend start / train state / trace and '
               'lower / compile or load / run, s | ',
               "| restart | warm, by part: imports / backend start / train state restored from "
               "the cold run's checkpoint / trace and lower / compile or load / run, s | ",
               '| restart | warm, backend started beside the imports: process start to first '
               'step done, s | ',
               " (orbax's restore "):
    assert text in table
  breakdown = next(line for line in table.splitlines()
                   if line.startswith('| jax-aug | device time by kind, batch 128 | '))
  assert 'convolution ' in breakdown and 'ms of kernels per step' in breakdown
  assert 'cut short' not in table


def test_a_part_stopped_by_the_deadline_keeps_what_it_finished(tmp_path):
  """A part starts with less than its budget left and runs until the deadline, no longer: the
  configuration it finished is in its JSON, marked incomplete, for the next call to go on from."""
  # Batch 2 takes a few seconds; batch 4096 would take minutes.
  cut = _check(tmp_path / 'cut', 20, GPU_CHECK_PARTS='jax-noaug', GPU_CHECK_MIN_S='5',
               GPU_CHECK_ARGS=SHRINK + ' --batch-sizes 2,4096 --steps 300')
  assert cut.returncode == 0, cut.stdout[-3000:] + cut.stderr[-2000:]
  assert 'cut short by the deadline, this call: jax-noaug.' in cut.stdout
  assert '| jax-noaug | cut short by its time limit |' in cut.stdout
  saved = json.loads((tmp_path / 'cut' / 'jax-noaug.json').read_text())
  assert saved['complete'] is False
  assert [r['batch_size'] for r in saved['rows']] == [2]


def test_a_variant_runs_only_the_parts_asked_for(tmp_path):
  """How a speed-work session measures a variant beside its baseline: its own folder, the parts
  it names, its extra flags."""
  variant = _check(tmp_path / 'variant', 3000, GPU_CHECK_PARTS='machine',
                   GPU_CHECK_ARGS='--norm-position before_act')
  assert variant.returncode == 0, variant.stdout[-3000:] + variant.stderr[-2000:]
  assert os.listdir(tmp_path / 'variant') == ['machine.json']
  for name in PARTS[1:]:
    assert f'--- {name}: not asked for (GPU_CHECK_PARTS)' in variant.stdout or name == 'b256'
  assert 'b256' not in variant.stdout


def test_the_table_shows_what_failed_and_what_was_cut_short(tmp_path):
  """A blind GPU run's failures must reach the printed table, the only output a reader sees
  whole: the benchmark keeps a failed configuration as an 'error' row with its stderr's end."""
  from experiments import gpu_table

  error = {'framework': 'error', 'upsample': 'resize_conv', 'batch_size': 128,
           'error': 'Traceback (most recent call last):\n  ...\nRESOURCE_EXHAUSTED: Out of memory'}
  (tmp_path / 'jax-aug.json').write_text(json.dumps({'rows': [error], 'complete': False}))
  table = gpu_table.table([str(tmp_path)])
  assert '| jax-aug | cut short by its time limit |' in table
  assert ('| jax-aug | failed: resize_conv, batch 128 | Traceback (most recent call last): ... '
          'RESOURCE_EXHAUSTED: Out of memory |') in table
  assert '| >= 2,000 images/s (best batch, with augmentation) | n/a | not measured |' in table


def test_the_table_puts_what_deterministic_ops_cost_beside_the_same_step_without_them(tmp_path):
  from experiments import gpu_table

  row = {'framework': 'jax', 'upsample': 'resize_conv', 'batch_size': 64, 'augment': True,
         'images_per_s': 1000.0, 'compile_s': 30.0, 'mfu': 0.3, 'peak_gib': 20.0}
  (tmp_path / 'jax-aug.json').write_text(json.dumps({'rows': [row], 'complete': True}))
  (tmp_path / 'determinism.json').write_text(json.dumps({
      'bit_identical': True, 'differing_leaves': 0, 'leaves': 32, 'batch_size': 64,
      'timed_steps': 10, 'images_per_s': 800.0}))
  table = gpu_table.table([str(tmp_path)])
  assert ('| determinism | deterministic ops, batch 64: images/s | 800.0; 1000.0 without '
          '(jax-aug): 0.80x |') in table, table
  # The probe run without --deterministic (do two identical steps differ at all?) says so.
  (tmp_path / 'determinism.json').write_text(json.dumps({
      'deterministic_ops': False, 'bit_identical': False, 'differing_leaves': 30, 'leaves': 32,
      'batch_size': 64, 'timed_steps': 10, 'images_per_s': 990.0}))
  table = gpu_table.table([str(tmp_path)])
  assert ("| determinism | two identical steps, XLA's default ops: bit-identical | False (30 of "
          '32 leaves differ) |') in table, table
  assert 'deterministic ops' not in table


def test_the_table_compares_steps_queued_back_to_back_beside_steps_waited_for(tmp_path):
  """The 2026-11-30 H200 steps had 6.3 ms of 85 ms without a kernel running: the rows time
  steps queued as training queues them too, and the table sets the two frameworks' side by
  side."""
  from experiments import gpu_table

  jax_row = {'framework': 'jax', 'upsample': 'resize_conv', 'batch_size': 128, 'augment': False,
             'images_per_s': 1500.0, 'pipelined_images_per_s': 1600.0, 'compile_s': 60.0,
             'mfu': 0.5, 'peak_gib': 20.0}
  torch_row = {'framework': 'torch', 'upsample': 'resize_conv', 'batch_size': 128,
               'images_per_s': 1250.0, 'pipelined_images_per_s': 1280.0, 'torch_compile': 'default',
               'torch_device': 'NVIDIA H200', 'torch_version': '2.11.0+cu130', 'torch_cuda': '13.0',
               'cudnn': 91300}
  (tmp_path / 'jax-noaug.json').write_text(json.dumps({'rows': [jax_row], 'complete': True}))
  (tmp_path / 'torch.json').write_text(json.dumps({'rows': [torch_row], 'complete': True}))
  table = gpu_table.table([str(tmp_path)])
  assert ('| jax-noaug | without augmentation, batch 128, steps queued back to back (one wait at '
          'the end, as training runs them): images/s | 1600.0 |') in table, table
  assert '| torch | batch 128, steps queued back to back: images/s | 1280.0 |' in table
  assert '| torch | ran on | NVIDIA H200, torch 2.11.0+cu130, CUDA 13.0, cuDNN 91300 |' in table
  assert '| torch | JAX / PyTorch, equal work (no augmentation), batch 128 | 1.20x |' in table
  assert ('| torch | JAX / PyTorch, equal work, steps queued back to back, batch 128 | 1.25x |'
          in table)


def test_the_table_refuses_a_folder_that_is_not_there_instead_of_printing_an_empty_table(
    tmp_path, capsys):
  """A mistyped GPU_CHECK_DONE (or `--help`) once printed a table of 'n/a' rows and status 0."""
  from experiments import gpu_table

  for argv in ([str(tmp_path / 'gpu' / '2026-11-28')], []):
    with pytest.raises(SystemExit) as exit_info:
      gpu_table.main(argv)
    assert exit_info.value.code == 2
  error = capsys.readouterr().err
  assert f"no such folder: {tmp_path / 'gpu' / '2026-11-28'}" in error
  assert 'give the folder(s)' in error
  assert gpu_table.main([str(tmp_path)]) == 0  # An empty folder that exists: its table.
  assert '| target | measured | met |' in capsys.readouterr().out


def test_the_recorded_gpu_table_is_what_its_files_print():
  """benchmark_gpu.md's table of each GPU session is the one `python experiments/gpu_table.py
  experiments/results/gpu/<date>` prints from the JSON files committed beside it: no figure in
  it was typed by hand, and a change to the table's code that would print them otherwise shows
  here."""
  from experiments import gpu_table

  results = os.path.join(ROOT, 'experiments', 'results')
  with open(os.path.join(results, 'benchmark_gpu.md'), encoding='utf-8') as f:
    recorded = f.read()
  sessions = sorted(os.listdir(os.path.join(results, 'gpu')))
  assert sessions, 'no GPU session recorded'
  for date in sessions:
    assert f'### {date}: ' in recorded, date
  # Each folder of JSON files: a session's check, or a variant's (gpu/<date>/<variant>/).
  folders = [folder for folder, _, files in os.walk(os.path.join(results, 'gpu'))
             if any(name.endswith('.json') for name in files)]
  assert len(folders) >= len(sessions)
  for folder in folders:
    printed = gpu_table.table([folder])
    assert printed in recorded, f'{os.path.relpath(folder, results)}:\n{printed}'


def _xla_accepts(flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-c', 'import jax; jax.numpy.zeros(2).block_until_ready()'],
                        cwd=ROOT, env=dict(os.environ, XLA_FLAGS=flags), capture_output=True,
                        text=True, check=False, timeout=300)


def test_every_xla_flag_a_gpu_session_is_to_set_is_one_xla_knows():
  """XLA aborts any process whose XLA_FLAGS holds a flag it does not know, which on a lent GPU
  loses that part of the check and its minute of device time. Every `--xla_...=value` that the
  prepared commands (benchmark_gpu.md, gpu_check.sh) and config.deterministic set goes through
  XLA's own parser here: GPU flags parse on a CPU, and an unknown one fails here as there."""
  from unet_jax import determinism

  texts = [determinism.FLAG]
  for path in ('experiments/results/benchmark_gpu.md', 'experiments/gpu_check.sh'):
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
      texts.append(f.read())
  flags = sorted(set(re.findall(r"--xla_[a-z0-9_]+=[^\s'\"\\)`]+", '\n'.join(texts))))
  assert '--xla_gpu_deterministic_ops=true' in flags and len(flags) >= 4, flags
  known = _xla_accepts(' '.join(flags))
  assert known.returncode == 0, known.stderr[-2000:]
  unknown = _xla_accepts('--xla_gpu_autotune_levle=1')  # What a typo does.
  assert unknown.returncode != 0 and 'Unknown flag' in unknown.stderr, unknown.stderr[-2000:]


def _prepared_calls() -> list[str]:
  """The bash blocks of benchmark_gpu.md that the next GPU session passes to the device tool as
  they are written (each headed `# run(command=<these lines>, ...)`)."""
  with open(os.path.join(ROOT, 'experiments', 'results', 'benchmark_gpu.md'),
            encoding='utf-8') as f:
    return re.findall(r'```bash\n# run\(command=<these lines>[^\n]*\n(.*?)```', f.read(), re.S)


def _run_prepared_calls(tmp_path, python3: str, timeout: int, **more_env) -> list[str]:
  """Runs the two calls as written, in order, from the repository, with `python3` (an
  executable script's text) first on PATH and as gpu_check.sh's PYTHON, $OUT at tmp_path/out,
  and only the calls' own XLA_FLAGS (none, as on the GPU machine, where they set none). Each
  must exit 0; returns their outputs."""
  calls = _prepared_calls()
  assert len(calls) == 2, calls
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'python3').write_text(python3)
  (bin_dir / 'python3').chmod(0o755)
  env = dict(os.environ, OUT=str(tmp_path / 'out'), PYTHON=str(bin_dir / 'python3'),
             PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
             GPU_CHECK_CACHE=str(tmp_path / 'cache'), **more_env)
  env.pop('XLA_FLAGS', None)
  outputs = []
  for call in calls:
    done = subprocess.run(['bash', '-c', call], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outputs.append(done.stdout)
  return outputs


# A `python3` that, asked to run a benchmark or a probe, records its command line instead (and
# writes a benchmark's --out file with no rows); anything else it runs.
_RECORDING_PYTHON = """import json, os, sys
argv = sys.argv[1:]
if argv[:2] in (['-m', 'experiments.benchmark'], ['-m', 'experiments.gpu_probes']):
  with open(os.environ['CALLS_LOG'], 'a', encoding='utf-8') as f:
    f.write(json.dumps({'argv': argv, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
                        'jax_platforms': os.environ.get('JAX_PLATFORMS', '')}) + '\\n')
  if '--out' in argv and argv[1] == 'experiments.benchmark':
    out = argv[argv.index('--out') + 1]
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    with open(out, 'w', encoding='utf-8') as f:
      json.dump({'complete': True, 'rows': []}, f)
  sys.exit(0)
os.execv(sys.executable, [sys.executable, *argv])
"""


def test_the_prepared_gpu_calls_give_each_part_valid_flags_and_a_folder_of_its_own(tmp_path):
  """In every `make test`, in seconds: the next GPU session's two calls, run as benchmark_gpu.md
  writes them (bash, gpu_check.sh, the parts it picks) with a python3 that records each
  benchmark and probe instead of running it. Each recorded command line must parse with that
  program's own parser (a misspelt flag fails here, not on the GPU), and each variant must be
  what the file says, in a folder of its own. The slow test below runs them for real."""
  from experiments import gpu_probes

  out, log = tmp_path / 'out', tmp_path / 'calls.jsonl'
  for printed in _run_prepared_calls(tmp_path, f'#!{sys.executable}\n{_RECORDING_PYTHON}', 300,
                                     CALLS_LOG=str(log)):
    assert 'exit status 0' in printed and not re.search(r'exit status [1-9]', printed)
  runs = {}
  for line in log.read_text().splitlines():
    record = json.loads(line)
    program, argv = record['argv'][1], record['argv'][2:]
    args = (benchmark.parse_args if program == 'experiments.benchmark'
            else gpu_probes.parse_args)(argv)  # SystemExit(2) on a flag it does not know.
    runs[os.path.relpath(args.out, out)] = (args, record)
  assert sorted(runs) == sorted([
      'base/jax-aug.json', 'pool/jax-aug.json', 'pair/jax-noaug.json', 'pair/torch.json',
      'pair/restart.json', 'fusion_autotuner_off/jax-aug.json', 'autotune1/jax-aug.json',
      'autotune0/jax-aug.json', 'transpose/upsample.json', 'dense_d2s/upsample.json',
      'nondeterministic/determinism.json', 'b16/jax-aug.json'])
  for name, (args, _) in runs.items():
    if 'probe' in args:  # The probes' model is the seed's by default.
      assert (args.image_size, args.base_width, args.depth) == (224, 64, 4), name
      continue
    # The seed's model at 224 px in bf16, compiled cold, as the baseline of 2026-11-30.
    assert (args.image_size, args.base_width, args.depth, args.head, args.precisions,
            args.compilation_cache) == (224, 64, 4, 'seed', 'bfloat16', ''), name
    assert args.upsample == {'transpose/upsample.json': 'transpose',
                             'dense_d2s/upsample.json': 'dense_d2s'}.get(name, 'resize_conv')
    assert args.batch_sizes == ('16' if name.startswith('b16') else '128'), name
    assert args.pool == ('reshape' if name.split('/')[0] in ('pool', 'pair') else
                         'reduce_window'), name
    assert args.compile_only == (name == 'autotune0/jax-aug.json'), name
  flags = {name: record['xla_flags'] for name, (_, record) in runs.items()}
  assert flags.pop('fusion_autotuner_off/jax-aug.json') == (
      '--xla_gpu_experimental_enable_fusion_autotuner=false')
  assert flags.pop('autotune1/jax-aug.json') == '--xla_gpu_autotune_level=1'
  assert flags.pop('autotune0/jax-aug.json') == '--xla_gpu_autotune_level=0'
  assert set(flags.values()) == {''}  # The others as XLA's defaults.
  assert runs['pair/jax-noaug.json'][0].augment is False  # The equal-work pair, in one call.
  assert runs['pair/torch.json'][0].frameworks == 'torch'
  assert runs['pair/torch.json'][1]['jax_platforms'] == 'cpu'  # Never sharing the card.
  assert runs['pair/restart.json'][0].probe == 'restart'
  probe = runs['nondeterministic/determinism.json'][0]
  assert probe.probe == 'determinism' and probe.deterministic is False


@pytest.mark.slow
def test_the_prepared_gpu_calls_run_as_written_and_their_tables_name_each_variant(tmp_path):
  """The next GPU session's two device calls, copied from benchmark_gpu.md and run here as
  written, shrunk (about 90 s on 2 cores, so not in `make test`: `pytest -m slow
  tests/gpu_check_test.py` before a GPU session's calls; the test above checks each call's
  commands in every run): `python3` (the GPU machine's, and gpu_check.sh's PYTHON) is a
  wrapper that appends the small model's flags to each benchmark and probe (argparse keeps the
  last of a repeated flag). Every variant must leave its JSON in its own folder, measured in
  full, and its table must name what it changed: a call that stops at a typo costs that session
  its minutes."""
  from experiments import gpu_table

  # XLA:CPU's backend optimizations off, as in every test (conftest), appended to the call's
  # own XLA_FLAGS; the two-call test above covers the traced profile.
  wrapper = f"""#!/usr/bin/env bash
export XLA_FLAGS="${{XLA_FLAGS:+$XLA_FLAGS }}{FAST}"
case "$1 $2" in
  '-m experiments.benchmark') exec {sys.executable} "$@" {SHRINK} --profile-steps 0 ;;
  '-m experiments.gpu_probes') exec {sys.executable} "$@" {PROBE} ;;
  *) exec {sys.executable} "$@" ;;
esac
"""
  _run_prepared_calls(tmp_path, wrapper, 900,
                      PYTHONPATH=_pythonpath_lacking(tmp_path / 'lacks'))
  out = tmp_path / 'out'
  have_torch = importlib.util.find_spec('torch') is not None
  expected = {'base': ['jax-aug'], 'pool': ['jax-aug'],
              'pair': ['jax-noaug', 'restart'] + (['torch'] if have_torch else []),
              'fusion_autotuner_off': ['jax-aug'], 'autotune1': ['jax-aug'],
              'autotune0': ['jax-aug'], 'transpose': ['upsample'], 'dense_d2s': ['upsample'],
              'nondeterministic': ['determinism'], 'b16': ['jax-aug']}
  assert sorted(os.listdir(out)) == sorted(expected)
  tables = {}
  for folder, parts in expected.items():
    assert sorted(os.listdir(out / folder)) == sorted(f'{p}.json' for p in parts), folder
    for part in parts:
      result = json.loads((out / folder / f'{part}.json').read_text())
      assert result.get('complete') is not False, (folder, part)
      assert all(r['framework'] != 'error' for r in result.get('rows', [])), (folder, part)
    tables[folder] = gpu_table.table([str(out / folder)])
  settings = "settings other than the check's"
  for folder in ('base', 'b16'):  # Only what this test adds.
    assert f'| jax-aug | {settings} | XLA_FLAGS={FAST} |' in tables[folder], folder
  assert f'| jax-aug | {settings} | --pool reshape, XLA_FLAGS={FAST} |' in tables['pool']
  assert f'| jax-noaug | {settings} | --pool reshape, XLA_FLAGS={FAST} |' in tables['pair']
  for folder, flag in (('fusion_autotuner_off', 'experimental_enable_fusion_autotuner=false'),
                       ('autotune1', 'autotune_level=1'), ('autotune0', 'autotune_level=0')):
    assert f'| jax-aug | {settings} | XLA_FLAGS=--xla_gpu_{flag} {FAST} |' in tables[folder], folder
  assert '| >= 2,000 images/s (best batch, with augmentation) | n/a | not measured |' in tables[
      'autotune0']  # Compile only.
  assert "| determinism | two identical steps, XLA's default ops: bit-identical |" in tables[
      'nondeterministic']
  _check_restart(json.loads((out / 'pair' / 'restart.json').read_text()))
  assert ("| restart | warm, by part: imports / backend start / train state restored from the "
          "cold run's checkpoint / trace and lower / compile or load / run, s | ") in tables['pair']
  if have_torch:  # The pair, measured in one call: the equal-work ratio, waited and queued.
    assert f'| torch | {settings} | XLA_FLAGS={FAST} |' in tables['pair']  # No pool: JAX's.
    torch_rows = json.loads((out / 'pair' / 'torch.json').read_text())['rows']
    assert [(r['framework'], r['batch_size'], r['augment']) for r in torch_rows] == [
        ('torch', 128, False)]
    for text in ('| torch | JAX / PyTorch, equal work (no augmentation), batch 128 | ',
                 '| torch | JAX / PyTorch, equal work, steps queued back to back, batch 128 | ',
                 '| torch | ran on | cpu, torch '):
      assert text in tables['pair'], text
  for form in ('transpose', 'dense_d2s'):
    assert f'| upsample | {form}, batch 128: images/s | ' in tables[form]

