"""The command-line entry points, run as a user runs them."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True,
                        timeout=300, check=False)


def test_help_explains_the_flags():
  result = _run('unet_jax.main', '--help')
  # absl ends --help with status 1, as a wrong call; ours with 0 (`cli.run_absl`).
  assert result.returncode == 0, result.stderr[-2000:]
  assert _run('unet_jax.main', '--config', 'quickstart', '--workdir', 'x', '--nonsense'
              ).returncode == 1
  for text in ('--config', '--workdir', '--jax_distributed', '--config.<field>=<value>'):
    assert text in result.stdout
  # Every preset that ships (each configs/*.py) is named; the list was once written by hand, and
  # went stale when presets were added.
  shipped = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, 'configs'))
                   if n.endswith('.py') and n != '__init__.py')
  named = ' '.join(result.stdout.split())  # absl wraps the help text.
  assert f"preset's name ({', '.join(shipped)})" in named, named[:1500]


def test_a_misspelt_config_field_is_an_error_that_names_it(tmp_path):
  result = _run('unet_jax.main', '--config', 'configs/quickstart.py', '--workdir',
                str(tmp_path / 'run'), '--config.optim.lrr=0.1')
  assert result.returncode == 1
  # One line naming it, the nearest field and the moved one (not ml_collections' 40 lines of
  # chained tracebacks from inside absl's flag parsing).
  assert result.stderr.strip() == ("Error: --config.optim.lrr=0.1: 'optim.lrr' is no field of "
                                   "quickstart.py (did you mean 'optim.lr' or 'optim.b2' or "
                                   "'optim.b1'?)."), result.stderr
  assert not os.path.exists(tmp_path / 'run')  # Nothing written for a config that is wrong.
  moved = _run('unet_jax.main', '--config', 'quickstart', '--workdir', str(tmp_path / 'run'),
               '--config.eval_every_steps=3')
  assert moved.returncode == 1 and moved.stderr.strip().endswith(
      "(it is now 'eval.pooled_every_steps')."), moved.stderr
  # A mistyped value stays absl's own error (its flag and value), with no traceback.
  value = _run('unet_jax.main', '--config', 'quickstart', '--workdir', str(tmp_path / 'run'),
               '--config.optim.lr=fast')
  assert value.returncode == 1 and 'Traceback' not in value.stderr
  assert "flag --config.optim.lr=fast: could not convert string to float: 'fast'" in value.stderr


def test_summary_prints_totals_without_training():
  result = _run('unet_jax.summary', '--config', 'configs/seed.py')
  assert result.returncode == 0, result.stderr
  assert 'trainable parameters: 31,044,617' in result.stdout
  assert 'BatchNorm statistics (non-trainable): 11,780' in result.stdout


def test_summary_takes_a_presets_name_as_training_does():
  by_path = _run('unet_jax.summary', '--config', 'configs/seed.py')
  by_name = _run('unet_jax.summary', '--config', 'seed')
  assert by_name.returncode == 0, by_name.stderr
  assert by_name.stdout == by_path.stdout
  unknown = _run('unet_jax.summary', '--config', 'seeed')
  assert unknown.returncode == 1
  assert unknown.stderr.strip().startswith("Error: --config 'seeed': no such file, and not a "
                                           'preset. Presets: default,'), unknown.stderr
