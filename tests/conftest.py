"""Test set-up: 8 simulated CPU devices, so data-parallel code runs as on an 8-GPU host.

The flags must be set before JAX initializes its backend, i.e. before any test module imports
jax. Besides the device count, XLA's backend optimizations are off: the tests' programs are tiny
and run a few steps, so compiling dominates their time, and unoptimized code compiles 2-5x
faster (the whole suite about 20% faster). Semantics do not change; every comparison in the
suite is between programs compiled the same way, or against a tolerance.
"""

import contextlib
import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8'
                           ' --xla_backend_optimization_level=0').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')  # As `unet_jax/__init__.py`.

import importlib.util

import pytest

# TensorFlow and Triton (which CUDA builds of PyTorch load for torch.compile and torch.optim) each
# link an LLVM of their own statically: loading Triton after TensorFlow segfaults in dlopen
# (`import tensorflow; import triton`: TensorFlow 2.21, triton 3.8, torch 2.14; PythonOT/POT#839
# met the same). A test worker imports TensorFlow for one file and trains the PyTorch twin in the
# next, so where Triton is installed (a GPU machine's PyTorch) it is loaded first. CPU builds of
# PyTorch have no Triton. No command of ours loads both (the benchmark imports no TensorFlow).
if importlib.util.find_spec('triton') is not None:
  import triton  # noqa: F401

# The files that take longest, longest first (each file's summed durations in `pytest
# --durations=0` on 2 cores, 2026-11-28: 139 s down to 54 s). pytest-xdist hands whole files to
# its workers in collection order (`make test` passes --no-loadscope-reorder, which would otherwise
# order them by their count of tests and leave the longest for last), so starting with these lets
# the short files fill in around them and both workers end together (measured: the suite from
# 8 min 32 s to 7 min 36 s).
LONGEST_FIRST = ('paper_test.py', 'train_test.py', 'multiprocess_test.py', 'gpu_check_test.py',
                 'faults_test.py', 'sweep_test.py', 'train_step_test.py', 'configs_test.py')


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: files keep order.


# Mixed sizes and aspect ratios, as real ISIC photos have.
TINY_RUN_SIZES = ((40, 52), (52, 40), (37, 45))


def tiny_folder_config(data_dir: str):
  """A 1-step run of a tiny U-Net on a folder of images: enough to have a checkpoint to load."""
  from configs import quickstart

  config = quickstart.get_config()
  config.data.source = 'folder'
  config.data.dir = data_dir
  config.data.image_size = 32
  config.data.resize_policy = 'crop'  # Two tiles per photo: validation must score them all.
  config.data.num_folds = 3
  config.augment.enabled = False
  config.model.depth = 1
  config.model.base_width = 4
  config.batch_size = 8  # Tests simulate 8 devices.
  config.num_train_steps = 1
  config.log_every_steps = 1
  config.eval.batch_size = 8
  config.eval.every_steps = 1
  config.eval.pooled_every_steps = 1
  config.checkpoint_every_steps = 1
  config.optim.warmup_steps = 1
  return config


@pytest.fixture(scope='session')
def tiny_folder_run(tmp_path_factory):
  """(workdir, data_dir) of a trained 1-step run on 12 synthetic images in the ISIC layout,
  shared by the evaluation and prediction tests (they only read it).

  Trained from its own folder with config.data.dir='data', as given on a command line: the
  tests that read it from elsewhere find the data only because the run records it absolute."""
  from unet_jax import synthetic, train

  root = tmp_path_factory.mktemp('tiny_run')
  data_dir = str(root / 'data')
  synthetic.write_folder(data_dir, 12, seed=0, sizes=TINY_RUN_SIZES)
  workdir = str(root / 'run')
  with contextlib.chdir(root):
    train.train_and_evaluate(tiny_folder_config('data'), 'run')
  return workdir, data_dir


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA cache for the session, shared by the pytest-xdist workers: the many tiny
  training runs share programs, and each `train_and_evaluate` builds fresh jitted functions, so
  without it each would recompile."""
  from unet_jax import compilation_cache as cache

  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):  # Each worker's basetemp is <run root>/popen-gwN.
    root = root.parent
  cache.enable_compilation_cache(str(root / 'xla_cache'))


@pytest.fixture(scope='session', autouse=True)
def temporary_files_in_basetemp(tmp_path_factory):
  """The processes the tests start write their temporary files under pytest's own temporary
  folder, which pytest prunes, and the system's /tmp would keep what a process killed with SIGKILL
  leaves there (the fault tests kill dozens). The test process itself too: TFDS leaves an empty
  folder per builder of a dataset not prepared yet."""
  import tempfile

  folder = tmp_path_factory.getbasetemp() / 'tmp'
  folder.mkdir(exist_ok=True)
  os.environ['TMPDIR'] = tempfile.tempdir = str(folder)


# A tiny sweep: 2 losses x 2 seeds on the synthetic data, 24 steps each, and one run that fails.
TEST_SWEEP = '''
from unet_jax import hyper

TINY = {
  'data.image_size': 32, 'data.synthetic_size': 32, 'data.num_examples': 40,
  'model.depth': 2, 'model.base_width': 8, 'batch_size': 8, 'num_train_steps': 24,
  'log_every_steps': 8, 'checkpoint_every_steps': 12, 'max_checkpoints_to_keep': 1,
  'optim.warmup_steps': 4, 'eval.batch_size': 8, 'eval.every_steps': 12,
  'eval.pooled_every_steps': 12,
}


def get_sweep(arg=None):
  return {
    'config': 'quickstart',
    'overrides': TINY,
    'runs': hyper.chain([
      hyper.product([hyper.sweep('loss', ['bce', 'bce_dice']), hyper.sweep('seed', [0, 1])]),
      hyper.fixed('model.norm', 'bogus'),  # Fails at start: recorded, the others go on.
    ]),
  }
'''


@pytest.fixture(scope='session')
def trained_sweep(tmp_path_factory):
  """(sweep file, root, what the launcher printed) of the test sweep, launched with
  `python -m unet_jax.sweep launch` (2 at once), stopped with SIGTERM once the first run has
  finished, and launched again to the end.

  """
  import json
  import signal
  import subprocess
  import sys
  import time

  base = tmp_path_factory.mktemp('sweep')
  sweep_file = base / 'tiny.py'
  sweep_file.write_text(TEST_SWEEP)
  root = base / 'root'
  command = [sys.executable, '-m', 'unet_jax.sweep', 'launch', str(sweep_file), '--root',
             str(root), '--parallel', '2']
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  first = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
  manifest = root / 'sweep.json'
  deadline = time.time() + 300
  while time.time() < deadline and first.poll() is None:
    if manifest.exists():
      states = [r.get('state') for r in json.loads(manifest.read_text())['runs'].values()]
      if 'finished' in states:
        break
    time.sleep(0.5)
  first.send_signal(signal.SIGTERM)
  out_first = first.communicate(timeout=300)[0]
  finished_first = sorted(name for name, r in json.loads(manifest.read_text())['runs'].items()
                          if r.get('state') == 'finished')
  second = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600,
                          check=False)
  return {'file': str(sweep_file), 'root': str(root), 'first': out_first,
          'first_status': first.returncode, 'finished_first': finished_first,
          'second': second.stdout + second.stderr, 'second_status': second.returncode}
