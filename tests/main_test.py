"""The command-line entry points, run as a user runs them."""

import json
import os
import subprocess
import sys

from conftest import tiny_folder_config  # tests/conftest.py; pytest puts tests/ on sys.path.

from unet_jax import config_from_run, run_config

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


# A command's end, seen from an atexit handler: those still run, after the freeze.
_A_COMMAND = """
import atexit, gc, sys
from unet_jax import cli
atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0, flush=True))
def main(*args):
  print('ran', flush=True)
  return 3
cli.run_absl(main) if sys.argv[1] == 'absl' else cli.run(main)
"""


def test_a_command_ends_without_collecting_the_garbage_of_all_it_imported():
  """`cli.skip_the_final_collection`: every command's process ends with what the collector
  tracks frozen, so the interpreter's last collection skips it (1.3 s of every exit of a process
  that imported TensorFlow), its exit status and atexit handlers as before."""
  for runner in ('absl', 'argparse'):
    done = subprocess.run([sys.executable, '-c', _A_COMMAND, runner], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert (done.returncode, done.stdout) == (3, 'ran\nfrozen at exit: True\n'), done.stderr


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


def test_a_runs_folder_is_the_config_it_recorded(tiny_folder_run):
  """`--config RUN` (or RUN/config.json) gives the config that run trained with, whichever file
  and overrides made it: the one the tests built in code, field for field and type for type
  (config.json holds tuples as lists)."""
  workdir, data_dir = tiny_folder_run
  made = tiny_folder_config(data_dir)  # The run was given 'data', relative to its folder.
  made.data.tfds_data_dir = run_config.absolute_data_path(made.data.tfds_data_dir)
  assert config_from_run.get_config(run_config.path(workdir)).to_dict() == made.to_dict()
  # The same command on the finished run: nothing to train, its metrics printed again.
  again = _run('unet_jax.main', '--config', workdir, '--workdir', workdir)
  assert again.returncode == 0, again.stderr[-2000:]
  assert 'Run summary:' in again.stdout and 'finished (step 1) under this config' in again.stderr
  # Overridden as any config is: the model of quickstart's config at the run's model fields.
  summary = _run('unet_jax.summary', '--config', workdir, '--config.model.base_width=8')
  assert summary.returncode == 0, summary.stderr[-2000:]
  assert summary.stdout == _run('unet_jax.summary', '--config', 'quickstart',
                                '--config.model.depth=1', '--config.model.base_width=8',
                                '--config.data.image_size=32').stdout


def test_a_file_or_folder_that_is_no_runs_config_is_refused_in_one_line(tiny_folder_run,
                                                                        tmp_path):
  workdir, _ = tiny_folder_run
  for config, said in (
      (os.path.join(workdir, 'summary.json'), "' is no config field; give a run's folder"),
      (os.path.dirname(workdir), f"it holds 1 run: give one, e.g. {workdir!r}."),
      (str(tmp_path), "a folder without a config.json, so not a run's; give a run's folder")):
    refused = _run('unet_jax.summary', '--config', config)
    assert refused.returncode == 1 and 'Traceback' not in refused.stderr, refused.stderr
    assert refused.stderr.startswith('Error: --config') and said in refused.stderr, refused.stderr
  (tmp_path / 'config.json').write_text(json.dumps({'optim': {'lr': 'fast'}}))
  typed = _run('unet_jax.summary', '--config', str(tmp_path))
  assert typed.returncode == 1 and "Could not override field 'lr'" in typed.stderr, typed.stderr
