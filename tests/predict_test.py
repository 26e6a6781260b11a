"""unet_jax.predict end to end: a tiny trained run, real files in, challenge-format masks out.

The CLI runs in a subprocess, as a user runs it: one unreadable file among good ones must be
named on stderr and skipped, every other mask written (single-channel, 0/255, at its image's
native size, ISIC-named), and the exit code must be non-zero.
"""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from unet_jax import cli, inference, input_pipeline, photos, predict, run_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def run(tiny_folder_run):
  workdir, data_dir = tiny_folder_run
  return workdir, os.path.join(data_dir, 'ISIC2018_Task1-2_Training_Input')


def test_cli_skips_a_corrupt_file_names_it_and_fails(run, tmp_path):
  workdir, images_dir = run
  inputs = tmp_path / 'inputs'
  inputs.mkdir()
  names = sorted(os.listdir(images_dir))[:3]
  for name in names:
    shutil.copy(os.path.join(images_dir, name), inputs / name)
  (inputs / 'ISIC_0999999.jpg').write_bytes(b'\xff\xd8\xff not really a jpeg')
  (inputs / 'LICENSE.txt').write_text('ignored: not an image')
  out, overlays = tmp_path / 'out', tmp_path / 'overlays'
  done = subprocess.run(
    [sys.executable, '-m', 'unet_jax.predict', f'--workdir={workdir}', f'--input={inputs}',
     f'--output={out}', f'--overlay_dir={overlays}', '--tta=flips'],
    capture_output=True, text=True, cwd=REPO, check=False,
    env={**os.environ, 'PYTHONPATH': REPO})
  assert done.returncode != 0
  assert "Checkpoint 'best': step 1;" in done.stdout  # The default for new images, named.
  # The run's own training photos among them are counted (the folder source's split, read the
  # way evaluate_test's reference reads it).
  config = run_config.load(workdir)
  _, train_images, _ = input_pipeline.folder_split(config.data, 'train')
  trained = len({os.path.basename(p) for p in train_images} & set(names))
  assert 0 < trained < len(names)
  assert f'Note: {trained} of the 4 photos are in the training split of the run' in done.stdout
  assert 'ISIC_0999999.jpg' in done.stderr
  assert 'predict [' in done.stderr  # The progress bar.
  # No library's INFO chatter: orbax's dozen lines per restore, JAX's "Unable to initialize
  # backend 'tpu'" on a machine without one (cli.LibraryNoise).
  assert not re.findall(r'^I\d{4} .*', done.stderr, re.M)
  written = sorted(os.listdir(out))
  assert written == [n.replace('.jpg', '_segmentation.png') for n in names]
  for name in names:
    with Image.open(os.path.join(images_dir, name)) as image:
      size = image.size
    with Image.open(out / name.replace('.jpg', '_segmentation.png')) as mask:
      assert mask.mode == 'L' and mask.size == size  # Native size, as the scorer requires.
      assert set(np.unique(np.asarray(mask))) <= {0, 255}
    with Image.open(overlays / name.replace('.jpg', '_overlay.png')) as preview:
      assert preview.mode == 'RGB' and preview.size == size


def test_predict_files_in_process_matches_the_predictor(run, tmp_path):
  workdir, images_dir = run
  predictor = inference.load_predictor(workdir)
  paths = [os.path.join(images_dir, n) for n in sorted(os.listdir(images_dir))[:4]]
  failures = predict.predict_files(predictor, paths, str(tmp_path),
                                   show_progress=False)
  assert failures == []
  for path in paths:
    expected = predictor.predict(*photos.read_photo(path, predictor.size)) >= 0.5
    with Image.open(tmp_path / predict.mask_name(path)) as mask:
      np.testing.assert_array_equal(np.asarray(mask) == 255, expected)
  assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]  # No temp files left.


def test_two_inputs_that_would_write_one_mask_are_refused_before_any_work(tmp_path):
  """ISIC 2017's photo folders hold a superpixel map beside each photo: predicting the folder
  would write the map's mask over the photo's. Refused, naming both files, nothing written."""
  photos_dir = tmp_path / 'ISIC-2017_Training_Data'
  photos_dir.mkdir()
  for name in ('ISIC_0000000.jpg', 'ISIC_0000000_superpixels.png', 'ISIC_0000001.jpg'):
    (photos_dir / name).write_bytes(b'')
  paths = predict.list_inputs([str(photos_dir)])
  out = tmp_path / 'masks'
  with pytest.raises(ValueError, match=r"ISIC_0000000\.jpg' and '.*ISIC_0000000_superpixels\.png' "
                     r"would both be written as 'ISIC_0000000_segmentation\.png'; give --input "
                     'the photos alone'):
    predict.predict_files(None, paths, str(out))  # Refused before the predictor is used.
  assert not out.exists()
  assert predict.mask_names(paths[::2]) == ['ISIC_0000000_segmentation.png',
                                            'ISIC_0000001_segmentation.png']


def test_masks_are_written_neither_among_the_photos_nor_among_the_overlays(tmp_path):
  """`--output` the photos' folder wrote the masks among them (the next predict of the folder
  read them as photos); `--overlay_dir` equal to `--output` put overlays where the scorer reads
  every PNG as a mask. Both refused before the model is loaded (`main` checks first)."""
  photos_dir = tmp_path / 'photos'
  photos_dir.mkdir()
  with pytest.raises(ValueError, match=r"--output '.*photos/' is a folder of --input"):
    predict.check_output_folders([str(photos_dir)], f'{photos_dir}/', None)
  with pytest.raises(ValueError, match=r"--overlay_dir '.*masks' is --output"):
    predict.check_output_folders([str(photos_dir / 'a.jpg')], str(tmp_path / 'masks'),
                                 str(tmp_path / '.' / 'masks'))
  predict.check_output_folders([str(photos_dir)], str(tmp_path / 'masks'), str(tmp_path / 'o'))


def test_list_inputs_and_names(tmp_path):
  (tmp_path / 'b.png').write_bytes(b'')
  (tmp_path / 'ISIC_0000007.JPG').write_bytes(b'')
  (tmp_path / 'notes.txt').write_text('')
  (tmp_path / '.hidden.jpg').write_bytes(b'')
  paths = predict.list_inputs([str(tmp_path), str(tmp_path / 'b.png')])
  assert [os.path.basename(p) for p in paths] == ['ISIC_0000007.JPG', 'b.png', 'b.png']
  assert predict.mask_name(paths[0]) == 'ISIC_0000007_segmentation.png'
  assert predict.mask_name('/x/lesion.jpeg') == 'lesion_segmentation.png'
  with pytest.raises(FileNotFoundError, match='nowhere'):
    predict.list_inputs(['/nowhere'])


def test_progress_bar_without_a_terminal():
  class Sink:
    def __init__(self):
      self.text = ''

    def write(self, s):
      self.text += s

    def flush(self):
      pass

  sink = Sink()
  bar = cli.Progress(40, 'x ', stream=sink)
  for _ in range(40):
    bar.update()
  bar.close()
  lines = sink.text.splitlines()
  assert len(lines) == 20 and lines[-1].startswith('x [' + '#' * 30 + '] 40/40')


def test_an_input_folder_without_images_names_its_subfolders_that_have_some(tmp_path):
  """Pointing --input one level too high (at a folder of the archives' folders) is the common
  slip: the error says folders are not recursed and which subfolders hold images."""
  photos_dir = tmp_path / 'native'
  (photos_dir / 'Input').mkdir(parents=True)
  (photos_dir / 'Empty').mkdir()
  Image.new('RGB', (4, 4)).save(photos_dir / 'Input' / 'ISIC_0000001.jpg')
  (photos_dir / 'notes.txt').write_text('')
  assert predict.list_inputs([str(photos_dir)]) == []
  message = predict.no_images_message([str(photos_dir)])
  assert 'read without its subfolders' in message
  assert str(photos_dir / 'Input') in message and 'Empty' not in message


def test_a_threshold_outside_0_1_is_refused_before_any_folder_is_made(run, tmp_path):
  """1.5 wrote an empty mask for every image, and 0 a full one, without a word."""
  workdir, images_dir = run
  config = inference.run_config.load(workdir)
  with pytest.raises(ValueError, match=r'The threshold 0\.0 must be a probability strictly'):
    inference.settings(config, workdir, threshold=0.0)
  out = tmp_path / 'out'
  done = subprocess.run(
    [sys.executable, '-m', 'unet_jax.predict', f'--workdir={workdir}', f'--input={images_dir}',
     f'--output={out}', '--threshold=1.5'], capture_output=True, text=True, cwd=REPO,
    check=False)
  assert done.returncode == 1 and 'Traceback' not in done.stderr, done.stderr[-2000:]
  assert ('Error: The threshold 1.5 must be a probability strictly between 0 and 1'
          in done.stderr)
  assert not out.exists()


def test_help_and_a_wrong_call_import_neither_tensorflow_nor_the_model(tmp_path):
  """`predict --help` took 7 s, all of it TensorFlow's and the model's start-up; Python's own
  log of every module imported (-X importtime) shows they are left for the images."""
  env = {**os.environ, 'PYTHONPATH': REPO}
  outputs = []
  for args in (['--help'], [f'--workdir={tmp_path}', f'--input={tmp_path}',
                            f'--output={tmp_path / "out"}']):
    done = subprocess.run([sys.executable, '-X', 'importtime', '-m', 'unet_jax.predict', *args],
                          capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert done.returncode == (0 if args == ['--help'] else 1), done.stderr[-2000:]
    imported = {line.rsplit('|', 1)[1].strip() for line in done.stderr.splitlines()
                if line.startswith('import time:')}
    assert 'unet_jax.cli' in imported
    assert not {'tensorflow', 'flax', 'unet_jax.inference', 'unet_jax.photos'} & imported, args
    outputs.append(done)
  assert '--overlay_dir' in outputs[0].stdout
  assert f'Error: No images (.jpg, .jpeg, .png, .bmp, .gif) in --input {tmp_path}' in (
    outputs[1].stderr)
