"""The 'isic' source end to end on a fake archive: prepare, train, validate, evaluate --workdir.

The truth behind every number is recomputed independently: the fake archive's examples come
from `synthetic.make_example`, so each image's native size and lesion pixel count are known
without reading anything the pipeline wrote.
"""

import os
import subprocess
import sys

import fake_isic  # tests/fake_isic.py; pytest puts tests/ on sys.path.
import pytest

from configs import isic2018 as isic2018_config
from unet_jax import evaluate, folds, isic2018, isic_source, results, synthetic, train

SIZE = 24
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  info = fake_isic.make_fake_isic(str(tmp_path_factory.mktemp('manual')),
                                  counts={'Training': 10, 'Validation': 2, 'Test': 3})
  builder = fake_isic.prepare_fake_tfds(str(tmp_path_factory.mktemp('tfds')), SIZE, info)
  return info, str(builder.data_dir_root)


def _config(data_dir):
  config = isic2018_config.get_config()  # 'isic' source, 'crop' policy, k-fold validation.
  config.data.image_size = SIZE
  config.data.tfds_data_dir = data_dir
  config.model.depth = 2
  config.model.base_width = 4
  config.model.dropout_levels = ()
  config.batch_size = 8
  config.num_train_steps = 2
  config.optim.warmup_steps = 1
  config.eval.batch_size = 8
  config.eval.every_steps = 2  # The final validation only.
  config.eval.pooled_every_steps = 1
  # The recipe's inference (8-view TTA, one region without holes) in the loop too, so that
  # `evaluate`, which applies it by default, must give the loop's per-image numbers.
  config.eval.use_inference = True
  return config


def _truth(info, ident):
  height, width = info['sizes'][ident]
  _, mask = synthetic.make_example(fake_isic.SEED, int(ident[5:]), height, width)
  return (height, width), int(mask.sum())


def test_isic_source_trains_validates_and_evaluates(prepared, tmp_path):
  info, data_dir = prepared
  config = _config(data_dir)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  summary = results.read_run_summary(workdir)
  assert summary['state'] == 'finished'
  # The k-fold validation split of the official training split, each image at native size.
  _, val_ids = folds.kfold_split(info['ids']['train'], 5, 0, 0)
  in_loop = results.read_per_image_csv(os.path.join(workdir, summary['final']['per_image_csv']))
  assert [s.image_id for s in in_loop] == val_ids
  for score in in_loop:
    (height, width), lesion = _truth(info, score.image_id)
    assert (score.height, score.width) == (height, width)
    assert score.tp + score.fn == lesion  # Scored against the stored native mask.
  # evaluate --workdir, as a user runs it: the same per-image numbers.
  done = subprocess.run([sys.executable, '-m', 'unet_jax.evaluate', f'--workdir={workdir}'],
                        cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "Checkpoint 'final': step 2;" in done.stdout and 'threshold_jaccard' in done.stdout
  assert results.read_per_image_csv(os.path.join(workdir, 'eval_val', 'per_image.csv')) == in_loop
  # The official test split, from the same run.
  test = evaluate.evaluate_run(workdir, split='test', output_dir=str(tmp_path / 'test'))
  assert test['num_images'] == 3 and test['source']['split'] == 'test'
  scores = results.read_per_image_csv(str(tmp_path / 'test' / 'per_image.csv'))
  assert [s.image_id for s in scores] == info['ids']['test']
  assert all(s.tp + s.fn == _truth(info, s.image_id)[1] for s in scores)


def test_data_prepared_by_an_older_builder_is_refused_with_the_fix(tmp_path):
  config = _config(str(tmp_path))
  stale = tmp_path / isic2018.NAME / str(SIZE) / '1.0.0'
  stale.mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match=r"version\(s\) \['1.0.0'\].*prepare_isic "
                     rf'--size={SIZE}'):
    isic_source.builder(config.data)
  assert not list(stale.iterdir())  # Refused before anything was written there.


def test_runs_at_once_never_prepare_the_dataset_together(prepared, tmp_path, monkeypatch, capsys):
  """Each run of the ISIC source prepares the dataset at its start if it is not: of runs
  launched at once (a sweep's --parallel 2, the full-scale paper's jobs on SLURM) the others
  would wait an hour for the first, holding their devices. Refused before any run starts, with
  the command that prepares it once; one at a time, the first prepares it for the others."""
  from unet_jax import local_launcher, slurm_launcher, sweep

  started, submitted = [], []
  monkeypatch.setattr(local_launcher.LocalLauncher, 'launch',
                      lambda self, runs, manifest: started.extend(runs) or {})
  monkeypatch.setattr(slurm_launcher, 'submit_slurm',
                      lambda root, runs, manifest, args: submitted.extend(runs) or [])

  def launch(name, data_dir, *more):
    return sweep.main(['launch', 'smoke', '--root', str(tmp_path / name), '--set',
                       'data.source=isic', '--set', f'data.image_size={SIZE}', '--set',
                       f'data.tfds_data_dir={data_dir}', *more])

  empty = tmp_path / 'tfds'
  with pytest.raises(ValueError, match=(
      r'The ISIC 2018 dataset these runs read is not prepared \(4 run\(s\): loss=bce-seed=0, .*'
      r'Prepare it once first: python -m unet_jax.prepare_isic --size=24 '
      f'--data_dir={empty} --manual_dir=')):
    launch('at_once', empty, '--parallel', '2')
  assert started == []
  assert launch('one_at_a_time', empty, '--parallel', '1') == 0 and len(started) == 4
  assert launch('slurm', empty, '--executor', 'slurm') == 75 and len(submitted) == 4
  assert 'sweep: warning, as seen from this machine: The ISIC 2018 dataset these runs read is ' \
         'not prepared' in capsys.readouterr().err
  _, data_dir = prepared
  assert launch('prepared', data_dir, '--parallel', '2') == 0 and len(started) == 8
