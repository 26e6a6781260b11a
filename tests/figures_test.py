"""The figures command on hand-made run directories: which runs and which validation it draws.

Runs here are written file by file in the documented formats (unet_jax/results.py): a
summary.json, per-image CSVs of known confusion counts, a metrics.jsonl. The reference for the
values drawn is numpy on those counts. The figures of trained runs are drawn in
tests/paper_test.py.
"""

import json

import numpy as np
import pytest

from unet_jax import figures, native_scoring, results

# Confusion counts (tp, fp, fn) per image of a 10 x 10 mask; tn is the rest.
FINAL = {'a': (60, 10, 10), 'b': (20, 30, 30)}
BEST = {'a': (70, 5, 5), 'b': (40, 10, 10)}


def _csv(path, counts, shift=0):
  scores = [native_scoring.ImageScore(i, 10, 10, tp + shift, fp, fn, 100 - tp - shift - fp - fn)
            for i, (tp, fp, fn) in counts.items()]
  results.write_per_image_csv(str(path), scores)


def _run(root, name, seed, loss, state='finished', logged=((10, 0.3), (20, 0.5))):
  """A run directory: its config, its final and best validations, its logged metrics."""
  workdir = root / name
  (workdir / 'validation').mkdir(parents=True)
  _csv(workdir / 'validation' / 'best.csv', BEST, shift=seed)
  best = {'step': 10, 'per_image_csv': 'validation/best.csv', 'metrics': {}}
  final = None
  if state == 'finished':
    _csv(workdir / 'validation' / 'final.csv', FINAL, shift=seed)
    final = {'step': 20, 'per_image_csv': 'validation/final.csv', 'metrics': {}}
  results.write_run_summary(str(workdir), {
      'state': state, 'step': 20 if final else 10, 'best': best, 'latest': final or best,
      'final': final, 'config': {'seed': seed, 'loss': loss, 'data': {'fold': 0}}})
  with open(workdir / 'metrics.jsonl', 'w', encoding='utf-8') as f:
    for step, value in logged:
      f.write(json.dumps({'step': step, 'val_threshold_jaccard': value, 'train_loss': 1.0}) + '\n')
  return workdir


def _jaccard(counts, seeds):
  """Each image's Jaccard, tp / (tp + fp + fn), averaged over the seeds' shifted counts."""
  return {i: float(np.mean([(tp + s) / (tp + s + fp + fn) for s in seeds]))
          for i, (tp, fp, fn) in counts.items()}


@pytest.fixture
def sweep_root(tmp_path):
  for seed in (0, 1):
    _run(tmp_path, f'loss=bce-seed={seed}', seed, 'bce')
    _run(tmp_path, f'loss=dice-seed={seed}', seed, 'dice',
         state='finished' if seed == 0 else 'running', logged=((10, 0.4),))
  (tmp_path / 'sweep.json').write_text('{}')  # What `ROOT/*` adds to the runs.
  return tmp_path


@pytest.mark.parametrize('checkpoint', ['final', 'best'])
def test_distribution_draws_the_asked_checkpoints_validation(sweep_root, checkpoint):
  values = figures.per_image([str(sweep_root)], None, 'jaccard', checkpoint=checkpoint)
  if checkpoint == 'final':  # The running run has no final validation yet: left out.
    expected = {'loss=bce': _jaccard(FINAL, (0, 1)), 'loss=dice': _jaccard(FINAL, (0,))}
  else:
    expected = {'loss=bce': _jaccard(BEST, (0, 1)), 'loss=dice': _jaccard(BEST, (0, 1))}
  assert values.keys() == expected.keys()
  for group, images in expected.items():
    assert values[group] == pytest.approx(images)


def test_the_command_passes_the_checkpoint_and_reads_a_globbed_root(sweep_root, monkeypatch):
  drawn = {}
  monkeypatch.setattr(figures, 'profile',
                      lambda values, out, **kw: drawn.update(values=values, **kw) or out)
  paths = sorted(str(p) for p in sweep_root.iterdir())
  assert figures.main(['profile', *paths, '--checkpoint', 'best', '--out', 'x.png']) == 0
  assert drawn['values']['loss=bce'] == pytest.approx(_jaccard(BEST, (0, 1)))
  assert 'optimistic' in drawn['title']


def test_curves_include_runs_still_training(sweep_root, monkeypatch):
  drawn = {}
  monkeypatch.setattr(figures, 'curves', lambda groups, out, **kw: drawn.update(groups) or out)
  assert figures.main(['curves', str(sweep_root), '--out', 'x.png']) == 0
  assert {k: sorted(v) for k, v in drawn.items()} == {
      'loss=bce': [str(sweep_root / 'loss=bce-seed=0'), str(sweep_root / 'loss=bce-seed=1')],
      'loss=dice': [str(sweep_root / 'loss=dice-seed=0'), str(sweep_root / 'loss=dice-seed=1')]}


def test_a_metric_no_run_has_is_refused_with_what_there_is(sweep_root, tmp_path, capsys):
  with pytest.raises(ValueError, match=r"'val_jacard'.*val_threshold_jaccard"):
    figures.curves({'g': [str(sweep_root / 'loss=bce-seed=0')]}, str(tmp_path / 'c.png'),
                   metric='val_jacard')
  assert not (tmp_path / 'c.png').exists()
  with pytest.raises(SystemExit) as stop:
    figures.main(['distribution', str(sweep_root), '--metric', 'jacard', '--out', 'x.png'])
  assert stop.value.code == 2 and 'threshold_jaccard' in capsys.readouterr().err
  figures.curves({'g': [str(sweep_root / 'loss=bce-seed=0')]}, str(tmp_path / 'c.png'))
  assert (tmp_path / 'c.png').stat().st_size > 1000


def test_a_failed_save_leaves_no_file_behind(tmp_path):
  import matplotlib.pyplot as plt

  figure = plt.figure()
  figure.text(0.5, 0.5, r'$\notacommand$')  # Mathtext fails only when the figure is drawn.
  with pytest.raises(ValueError, match='notacommand'):
    figures._save(figure, str(tmp_path / 'f.png'))
  assert list(tmp_path.iterdir()) == []
  assert not plt.fignum_exists(figure.number)


def test_a_run_validated_once_is_a_point_and_long_labels_do_not_cover_the_curves(tmp_path,
                                                                                monkeypatch):
  """A curve of one validation was a line of one point: drawn as nothing. Group labels naming
  several fields (`dir=..., num_train_steps=60`) made a legend that 'best' placed over the axis
  label; it goes under the axes, clear of the curves."""
  once = _run(tmp_path, 'once', 0, 'bce', logged=((10, 0.4),))
  twice = _run(tmp_path, 'twice', 0, 'dice')
  drawn = []
  monkeypatch.setattr(figures, '_save', lambda fig, out: drawn.append(fig) or out)
  figures.curves({'short': [str(once)], 'long': [str(twice)]}, 'x.png')
  lines = drawn[0].axes[0].get_lines()
  assert [line.get_marker() for line in lines] == ['o', 'None']  # A point, then a line.
  assert drawn[0].axes[0].get_legend().get_bbox_to_anchor() == drawn[0].axes[0].bbox  # Inside.
  label = 'dir=/data/isic_sample, num_train_steps=60'
  figures.curves({label: [str(once)], 'other': [str(twice)]}, 'x.png')
  figures.profile({label: {'a': 0.7}, 'other': {'a': 0.5}}, 'x.png')
  for fig in drawn[1:]:
    legend, axes = fig.axes[0].get_legend(), fig.axes[0]
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert box.y1 < axes.get_window_extent().y0  # Wholly under the axes.
