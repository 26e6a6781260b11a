"""experiments/run_gpu_benchmark.sh runs blind on a lent GPU: its parts must work as written.

Runs the headline part on CPU with the model shrunk (BENCH_EXTRA_ARGS, appended to every
benchmark call) and checks what comes back: a JSON per call with JAX and PyTorch rows, the log,
and the augmentation-cost line.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ('--image-size 16 --base-width 4 --depth 1 --steps 1 --warmup 0 --matmul-size 64 '
        '--torch-compile none')


def test_headline_part_runs_and_writes_its_results(tmp_path):
  pytest.importorskip('torch')
  env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, BENCH_EXTRA_ARGS=TINY,
             AUGMENT_COST_ARGS='--image-size 32 --batch-size 4 --steps 2',
             JAX_CACHE_DIR=str(tmp_path / 'cache'), XLA_FLAGS='')
  proc = subprocess.run(['bash', 'experiments/run_gpu_benchmark.sh', 'main-a'], cwd=ROOT,
                        env=env, capture_output=True, text=True, check=False, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert sorted(os.listdir(tmp_path)) == [
    'cache', 'main-a.json', 'main-a.log']
  rows = json.loads((tmp_path / 'main-a.json').read_text())['rows']
  assert [(r['framework'], r['batch_size']) for r in rows] == [
    ('jax', 32), ('torch', 32), ('jax', 64), ('torch', 64)]
  assert all(r['image_size'] == 16 and r['augment'] for r in rows)
  assert 'augmentation FLOPs / train FLOPs' in proc.stdout
  assert 'jax | transpose | bf16 | yes | 32 |' in proc.stdout


def test_unknown_part_is_an_error(tmp_path):
  proc = subprocess.run(['bash', 'experiments/run_gpu_benchmark.sh', 'nope'], cwd=ROOT,
                        env=dict(os.environ, PYTHON='true', OUT=str(tmp_path)),
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 2 and 'unknown part' in proc.stderr
