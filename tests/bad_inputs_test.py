"""Bad input is refused with an error that names the file or field and the fix, or accepted with
a warning that says what was done. experiments/results/bad_inputs.md lists every kind with the
test that checks it; this file holds those not tested beside their module."""

import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from configs import default
from unet_jax import cli, evaluate, inference, input_pipeline, native_scoring, photos, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES, MASKS = 'ISIC2018_Task1-2_Training_Input', 'ISIC2018_Task1_Training_GroundTruth'


def _folder(tmp_path, n=6):
  root = str(tmp_path / 'data')
  synthetic.write_folder(root, num=n, seed=0, sizes=((40, 52),))
  return root


def _config(root, **data):
  config = default.get_config()
  config.data.source = 'folder'
  config.data.dir = root
  config.data.image_size = 32
  config.data.num_folds = 3
  config.batch_size = 2
  config.eval.batch_size = 2
  config.data.update(data)
  return config


def _read_all(config):
  next(input_pipeline.train_batches(config, process_index=0, process_count=1))
  list(input_pipeline.eval_batches(config, 'val', process_index=0, process_count=1))


@pytest.mark.parametrize('cache', [True, False])
def test_a_truncated_photo_in_a_folder_is_named(tmp_path, cache):
  root = _folder(tmp_path)
  path = os.path.join(root, IMAGES, 'ISIC_0000003.jpg')
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 3])
  with pytest.raises(ValueError, match=r'Cannot decode image .*ISIC_0000003\.jpg'):
    _read_all(_config(root, cache=cache))


def test_a_corrupt_mask_in_a_folder_is_named(tmp_path):
  root = _folder(tmp_path)
  path = os.path.join(root, MASKS, 'ISIC_0000002_segmentation.png')
  with open(path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n not a png at all')
  with pytest.raises(ValueError, match=r'Cannot decode mask .*ISIC_0000002_segmentation\.png'):
    _read_all(_config(root))


def test_a_mask_of_another_size_in_a_folder_names_both_files(tmp_path):
  root = _folder(tmp_path)
  tf.io.write_file(os.path.join(root, MASKS, 'ISIC_0000001_segmentation.png'),
                   tf.io.encode_png(np.zeros((30, 30, 1), np.uint8)))
  with pytest.raises(ValueError, match=r'Mask .*ISIC_0000001_segmentation\.png is 30x30 \(HxW\) '
                     r'but its image .*ISIC_0000001\.jpg is 40x52'):
    _read_all(_config(root))


def test_a_mask_without_its_image_is_named(tmp_path):
  root = _folder(tmp_path)
  shutil.copy(os.path.join(root, MASKS, 'ISIC_0000001_segmentation.png'),
              os.path.join(root, MASKS, 'ISIC_0000099_segmentation.png'))
  with pytest.raises(FileNotFoundError, match=r'1 mask\(s\) have no image, e.g. mask '
                     r'.*ISIC_0000099_segmentation\.png.? expects image .*ISIC_0000099\.jpg'):
    input_pipeline.num_examples(_config(root), 'train')


def test_greyscale_rgba_and_16_bit_photos_are_converted_with_a_warning(tmp_path, caplog):
  rgb, _ = synthetic.make_example(0, 0, 20, 24)
  grey = rgb.mean(axis=2).astype(np.uint8)
  photos_in = {
      'grey.jpg': Image.fromarray(grey, 'L'),
      'rgba.png': Image.fromarray(np.dstack([rgb, np.full(grey.shape, 128, np.uint8)]), 'RGBA'),
      'deep.png': Image.fromarray(grey.astype(np.uint16) * 257),  # 16-bit greyscale.
  }
  for name, image in photos_in.items():
    image.save(tmp_path / name)
  with caplog.at_level(logging.WARNING):
    for name in photos_in:
      image, native = photos.read_photo(str(tmp_path / name), 16)
      assert image.dtype == np.uint8 and image.shape == (20, 24, 3) and native == (20, 24)
      if name != 'rgba.png':  # Greys: three equal channels, the 8-bit values.
        assert np.array_equal(image[..., 0], image[..., 2])
        assert abs(int(image[..., 0].astype(int).mean()) - int(grey.mean())) <= 2
      else:
        np.testing.assert_array_equal(image, rgb)  # Alpha dropped, PNG is lossless.
  for name, mode in (('grey.jpg', 'L'), ('rgba.png', 'RGBA'), ('deep.png', 'I;16')):
    assert any(name in r.getMessage() and f'PIL mode {mode}' in r.getMessage() and
               'converted to 8-bit RGB' in r.getMessage() for r in caplog.records), name


def test_masks_not_strictly_0_255_are_binarized_with_a_warning(tmp_path, capfd, caplog):
  values = np.array([[0, 10, 128, 129, 200, 255]], np.uint8)
  path = str(tmp_path / 'm.png')
  Image.fromarray(values, 'L').save(path)
  mask = photos.decode_mask(tf.io.read_file(path), path)  # As the pipeline reads it.
  np.testing.assert_array_equal(mask.numpy()[0, :, 0], [0, 0, 0, 1, 1, 1])
  assert 'has values other than 0 and 255; binarized at > 128' in capfd.readouterr().err
  with caplog.at_level(logging.WARNING):
    truth = native_scoring.binarize(native_scoring.read_mask(path))  # As scoring reads it.
  np.testing.assert_array_equal(truth[0], [False, False, False, True, True, True])
  assert 'binarized at > 128' in caplog.text


def test_a_workdir_without_a_checkpoint_says_to_train_it(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text(default.get_config().to_json())
  with pytest.raises(FileNotFoundError, match=r'No checkpoint in .*; train the run first'):
    inference.load_predictor(str(workdir), checkpoint='final')
  with pytest.raises(FileNotFoundError, match=r'is not a directory|does not exist'):
    inference.load_predictor(str(tmp_path / 'nowhere'))
  # A sweep's root given for one of its runs (evaluate, predict, figures): names a run of it.
  with pytest.raises(FileNotFoundError, match=re.escape(
      f"'{tmp_path}' is a folder of 1 run, not a run: give one of them, e.g. '{workdir}'.")):
    inference.load_predictor(str(tmp_path))


def test_a_checkpoint_of_another_model_names_the_parameter_and_both_shapes(
    tiny_folder_run, tmp_path):
  workdir, _ = tiny_folder_run
  other = tmp_path / 'other'
  shutil.copytree(workdir, other)
  with open(other / 'config.json') as f:
    tree = json.load(f)
  tree['model']['base_width'] *= 2
  with open(other / 'config.json', 'w') as f:
    json.dump(tree, f)
  with pytest.raises(ValueError, match=r'params/\w+/conv/\w+ is \(.*\) in the checkpoint and '
                     r'\(.*\) in this model'):
    inference.load_predictor(str(other), checkpoint='final')


def test_an_unwritable_output_folder_fails_before_any_work(tiny_folder_run, tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(OSError, match=rf"--output .*a_file/masks' cannot be made: "
                     rf"'{re.escape(str(blocker))}' in its path is a file"):
    cli.ensure_writable(str(blocker / 'masks'), '--output')
  with pytest.raises(OSError, match=r"--output .*a_file' is a file, not a folder"):
    cli.ensure_writable(str(blocker), '--output')
  done = subprocess.run(
      [sys.executable, '-m', 'unet_jax.predict', f'--workdir={tiny_folder_run[0]}',
       f'--input={blocker}', f'--output={blocker / "masks"}'], cwd=REPO, capture_output=True, text=True, timeout=300,
      check=False)
  assert done.returncode == 1 and 'Error: --output ' in done.stderr
  assert 'in its path is a file' in done.stderr and 'Traceback' not in done.stderr
  if os.geteuid() != 0:  # root may write anywhere.
    locked = tmp_path / 'locked'
    locked.mkdir(mode=0o500)
    with pytest.raises(OSError, match=r"--output .*locked/masks' is not writable: no permission"):
      cli.ensure_writable(str(locked / 'masks'), '--output')


def test_a_training_workdir_that_cannot_be_a_folder_is_refused_in_one_line(tmp_path):
  """It was a FileExistsError traceback, after the data had been checked."""
  from unet_jax import train

  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  config = default.get_config()
  config.data.num_examples = 10
  config.batch_size = config.eval.batch_size = 8
  with pytest.raises(OSError, match=rf"^The workdir '{re.escape(str(blocker))}' is a file, not a "
                     'folder; give a folder, or move the file.'):
    train.train_and_evaluate(config, str(blocker))
  done = subprocess.run(
      [sys.executable, '-m', 'unet_jax.main', '--config', 'quickstart', '--workdir',
       str(blocker / 'run')], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 1 and 'Traceback' not in done.stderr, done.stderr[-3000:]
  assert (f"Error: The workdir '{blocker / 'run'}' cannot be made: '{blocker}' in its path is a "
          'file; give another folder.') in done.stderr


def test_a_path_with_a_tilde_the_shell_left_is_refused_or_explained(tmp_path, monkeypatch):
  """`--workdir=~/runs/x` reaches a command as '~/runs/x': the shell expands a '~' only at the
  start of a word. An output folder is refused, naming the path meant, before a folder named '~'
  is made here; an input that is not found says which path was meant."""
  from unet_jax import figures, predict, run_config, sweep, train

  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  monkeypatch.chdir(tmp_path)
  meant = str(tmp_path / 'home' / 'runs' / 'x')
  refused = f".*starts with a '~' the shell left as it is.*give '{re.escape(meant)}'"
  # Data that is not there: were the workdir not refused first, this would fail in a second.
  config = _config(str(tmp_path / 'no_data'))
  config.batch_size = config.eval.batch_size = 8
  with pytest.raises(OSError, match="^The workdir '~/runs/x'" + refused):
    train.train_and_evaluate(config, '~/runs/x')
  with pytest.raises(OSError, match="^--root '~/runs/x'" + refused):
    sweep.main(['launch', 'smoke', '--root', '~/runs/x'])
  with pytest.raises(ValueError, match=re.escape(f"give data.dir={meant}.")):
    sweep.main(['launch', 'smoke', '--root', 'r', '--set', 'data.dir=~/runs/x', '--dry-run'])
  config = _config('', source='isic', tfds_data_dir='~/runs/x')
  with pytest.raises(ValueError, match=r"^config\.data\.tfds_data_dir='~/runs/x'" + refused):
    input_pipeline.num_examples(config, 'train')
  with pytest.raises(OSError, match=re.escape(f"give '{tmp_path / 'home'}'")):
    figures.main(['curves', str(tmp_path), '--out', '~/curves.png'])
  # The benchmark writes its JSON after minutes of measuring: refused before the first.
  from experiments import benchmark

  with pytest.raises(OSError, match=re.escape(f"give '{tmp_path / 'home'}'")):
    benchmark.main(['--preset', 'cpu-small', '--out', '~/bench.json'])
  assert os.listdir(tmp_path) == []  # No folder named '~', nor anything else.
  hint = f"the shell leaves a '~' after '=' as it is: did you mean '{meant}'?"
  for read in (lambda: input_pipeline.num_examples(_config('~/runs/x'), 'train'),
               lambda: native_scoring.list_masks('~/runs/x'),
               lambda: predict.list_inputs(['~/runs/x']),
               lambda: run_config.load('~/runs/x')):
    with pytest.raises(FileNotFoundError, match=re.escape(hint)):
      read()
  os.makedirs(tmp_path / '~' / 'runs')  # A folder actually named '~' here is taken as it is.
  assert cli.unexpanded_home('~/runs/x') is None


def test_extra_predictions_are_named(tmp_path):
  truth, pred = tmp_path / 't', tmp_path / 'p'
  truth.mkdir()
  pred.mkdir()
  mask = np.zeros((6, 7), np.uint8)
  Image.fromarray(mask, 'L').save(truth / 'ISIC_0000001_segmentation.png')
  for ident in ('ISIC_0000001', 'ISIC_0000002'):
    Image.fromarray(mask, 'L').save(pred / f'{ident}_segmentation.png')
  with pytest.raises(ValueError, match=r'1 prediction\(s\) .* have no truth mask .*ISIC_0000002'):
    evaluate.evaluate_folders(str(pred), str(truth))


def test_the_parent_of_the_archives_folders_given_for_one_names_the_subfolder(tmp_path):
  """The ISIC archives unpack to a folder each: `--truth` (or `--images`) given the folder above
  them scored nothing ('Nothing to summarize', after the model loaded) or listed every id as
  missing; the error now names the subfolder to give."""
  from unet_jax import evaluation

  photos_dir = tmp_path / 'ISIC2018_Task1-2_Training_Input'
  truth = tmp_path / 'ISIC2018_Task1_Training_GroundTruth'
  photos_dir.mkdir()
  truth.mkdir()
  Image.fromarray(np.zeros((6, 7), np.uint8), 'L').save(truth / 'ISIC_0000001_segmentation.png')
  Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(photos_dir / 'ISIC_0000001.jpg')
  named = re.escape(f"No mask PNGs in the truth folder '{tmp_path}'; its subfolder "
                    f"'{truth.name}' holds 1: give '{truth}'.")
  with pytest.raises(FileNotFoundError, match=named):
    evaluation.dir_ids(str(photos_dir), str(tmp_path))
  with pytest.raises(FileNotFoundError, match=named):
    evaluate.evaluate_folders(str(truth), str(tmp_path))
  with pytest.raises(FileNotFoundError, match=re.escape(
      f"its subfolder '{photos_dir.name}' holds them: give '{photos_dir}'.")):
    evaluation.dir_ids(str(tmp_path), str(truth))
  assert evaluation.dir_ids(str(photos_dir), str(truth))[0] == ['ISIC_0000001']


def test_a_mistyped_config_value_on_the_command_line_names_the_field(tmp_path):
  done = subprocess.run(
      [sys.executable, '-m', 'unet_jax.main', '--config', 'quickstart', '--workdir',
       str(tmp_path / 'run'), '--config.optim.lr=fast'], cwd=REPO, capture_output=True,
      text=True, timeout=300, check=False)
  assert done.returncode != 0 and '--config.optim.lr=fast' in done.stderr
  assert not (tmp_path / 'run').exists()


def test_a_command_ends_on_our_error_message_alone_and_a_bug_keeps_its_traceback(
    capsys, monkeypatch):
  """`cli.short_errors`, around every command's main: the message of one of our checks is the
  whole output (it names the field and the fix); an error from elsewhere is not shortened."""
  from unet_jax import config_checks

  bad = default.get_config()
  bad.batch_size = -3
  assert cli.short_errors(lambda: config_checks.check(bad, 1))() == 1
  assert capsys.readouterr().err == 'Error: config.batch_size=-3 must be an integer >= 1.\n'
  with pytest.raises(ValueError, match='cannot reshape'):  # numpy's, not a check of ours.
    cli.short_errors(lambda: np.zeros(3).reshape(2))()
  monkeypatch.setenv('UNET_JAX_TRACEBACK', '1')
  with pytest.raises(ValueError, match='config.batch_size=-3'):
    cli.short_errors(lambda: config_checks.check(bad, 1))()


def test_a_run_on_a_wrong_data_folder_leaves_no_workdir(tmp_path):
  """The data source is asked before the workdir is made: a typo in config.data.dir leaves
  nothing behind to confuse the next run."""
  from unet_jax import train

  config = _config(str(tmp_path / 'no_such_data'))
  config.batch_size = config.eval.batch_size = 8  # Divides the 8 simulated devices.
  with pytest.raises(FileNotFoundError, match=r'config\.data\.dir'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_a_sweep_root_or_a_report_folder_that_cannot_be_a_folder_is_refused_before_any_run(
    tmp_path):
  """A sweep's --root and the paper's --root and --out: refused before any run starts (the
  paper's --out was found out only when the report was written, after every run)."""
  from experiments.paper import __main__ as paper
  from unet_jax import sweep

  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(OSError, match=r"--root '.*a_file' is a file, not a folder"):
    sweep.main(['launch', 'smoke', '--root', str(blocker)])
  for flag, argv in (('--root', ['--root', str(blocker / 'runs'), '--out', str(tmp_path / 'o')]),
                     ('--out', ['--root', str(tmp_path / 'runs'), '--out', str(blocker / 'o')])):
    with pytest.raises(OSError, match=rf"{flag} '.*a_file/\w+' cannot be made: .* is a file"):
      paper.main(['--scale', 'smoke', *argv])
  assert sorted(os.listdir(tmp_path)) == ['a_file']  # Nothing launched, nothing written.


def test_compare_figures_and_prepare_isic_refuse_an_output_that_cannot_be_written_first(
    tmp_path, capsys):
  """Before the runs are read (compare, figures) or an hour of preparing begins (prepare_isic)."""
  from unet_jax import compare, figures

  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(OSError, match=r"--out '.*a_file' is a file, not a folder"):
    compare.main([str(tmp_path / 'no_runs'), '--out', str(blocker)])
  with pytest.raises(OSError, match=r"--out '.*a_file/f.png': its folder '.*a_file' is a file"):
    figures.main(['curves', str(tmp_path / 'no_runs'), '--out', str(blocker / 'f.png')])
  with pytest.raises(SystemExit):
    figures.main(['curves', str(tmp_path / 'no_runs'), '--out', str(tmp_path)])
  assert "is a folder: give the figure's file" in capsys.readouterr().err
  with pytest.raises(SystemExit):  # Was a FileNotFoundError's traceback.
    figures.main(['profile', '--long', str(tmp_path / 'results_long.csv'), '--out',
                  str(tmp_path / 'f.png')])
  assert "results_long.csv': no such file (compare --out DIR writes" in capsys.readouterr().err
  done = subprocess.run(
      [sys.executable, '-m', 'unet_jax.prepare_isic', '--size', '32', '--manual_dir',
       str(tmp_path), '--data_dir', str(blocker / 'tfds')], cwd=REPO, capture_output=True,
      text=True, timeout=300, check=False)
  assert done.returncode == 1 and 'Traceback' not in done.stderr, done.stderr[-3000:]
  assert f"Error: --data_dir '{blocker / 'tfds'}' cannot be made" in done.stderr


def test_every_test_the_docs_name_is_a_test_of_the_suite():
  """bad_inputs.md (and any other page of results, or the README) points at tests by
  `file::name` as the proof of what it says; a test renamed or removed would leave it pointing
  at nothing."""
  results_dir = pathlib.Path(REPO, 'experiments', 'results')
  docs = [pathlib.Path(REPO, 'README.md'), *sorted(results_dir.glob('*.md'))]
  named = {(doc.name, module, test) for doc in docs
           for module, test in re.findall(r'\b(\w+_test)::(test_\w+)', doc.read_text())}
  assert sum(doc == 'bad_inputs.md' for doc, _, _ in named) > 50
  missing = [f'{doc}: {module}::{test}' for doc, module, test in sorted(named)
             if not (path := pathlib.Path(REPO, 'tests', f'{module}.py')).is_file()
             or not re.search(rf'^def {test}\(', path.read_text(), re.MULTILINE)]
  assert not missing, missing
