"""The comparison's statistics against independent references, on runs with known per-image values.

References: scipy's own Wilcoxon test on hand-made differences, a Holm adjustment computed by hand,
numpy for means and standard deviations, and the coverage of the bootstrap intervals on data with
a known mean. The end-to-end comparison of a trained sweep is in tests/sweep_test.py.
"""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from unet_jax import compare, run_config


def _run(name, seed, fold, values, **config):
  return compare.RunScores(name, '/x/' + name, {'seed': seed, 'data.fold': fold, **config}, 10,
                           {'jaccard': dict(values)})


def test_groups_are_the_runs_that_differ_only_by_seed_or_fold():
  runs = [_run('a0', 0, 0, {'i1': 0.5}, loss='bce'), _run('a1', 1, 0, {'i1': 0.6}, loss='bce'),
          _run('b0', 0, 0, {'i1': 0.7}, loss='dice'), _run('b1', 0, 1, {'i2': 0.9}, loss='dice')]
  groups, fields = compare.group_runs(runs, None)
  assert fields == ['loss']
  assert {k: [r.name for r in v] for k, v in groups.items()} == {
      'loss=bce': ['a0', 'a1'], 'loss=dice': ['b0', 'b1']}
  groups, fields = compare.group_runs(runs, ['seed'])
  assert list(groups) == ['seed=0', 'seed=1'] and fields == ['seed']


def test_groups_a_sweep_named_are_labelled_by_their_names_not_every_field_they_differ_by():
  """The paper's recipes differ by fifteen fields: labelled by them, each group's label ran to
  300 characters, repeated in the field columns beside it (and in a figure's legend)."""
  recipe = {'seed': {'loss': 'bce', 'optim.lr': 1e-4}, 'ours': {'loss': 'dice', 'optim.lr': 3e-3}}
  runs = [_run(f'{name}-fold={fold}', 0, fold, {f'i{fold}': 0.1 * fold + len(name) / 10}, **config)
          for name, config in recipe.items() for fold in (0, 1)]
  groups, fields = compare.group_runs(runs, None)
  assert fields == ['loss', 'optim.lr']
  # 'seed' names a recipe here, not the seed field that a part 'seed=1' would give.
  assert {k: [r.name for r in v] for k, v in groups.items()} == {
      'seed': ['seed-fold=0', 'seed-fold=1'], 'ours': ['ours-fold=0', 'ours-fold=1']}
  rows, _ = compare.compare(runs, ['jaccard'], baseline='ours', bootstrap=50)
  assert [(r['group'], r['baseline']) for r in rows] == [('seed', False), ('ours', True)]
  # Names that do not tell the groups apart, or not one name per group: the fields.
  assert list(compare.group_runs(runs, ['loss'])[0]) == ['loss=bce', 'loss=dice']
  runs[1] = dataclasses.replace(runs[1], name='other-fold=1')
  assert list(compare.group_runs(runs, None)[0]) == ['loss=bce, lr=0.0001', 'loss=dice, lr=0.003']


def test_a_run_resumed_with_another_validation_cadence_stays_with_its_seeds():
  """A resume may change how often a run validates or logs (run_config.MAY_CHANGE_ON_RESUME),
  which changes neither what it trains nor its final scores: such a run must not become a group
  of its own, one seed short in each half."""
  runs = [_run('a0', 0, 0, {'i1': 0.5}, loss='bce', **{'eval.every_steps': 100}),
          _run('a1', 1, 0, {'i1': 0.6}, loss='bce', **{'eval.every_steps': 50,
                                                        'log_every_steps': 5}),
          _run('b0', 0, 0, {'i1': 0.7}, loss='dice', **{'eval.every_steps': 100})]
  groups, fields = compare.group_runs(runs, None)
  assert fields == ['loss'] and [len(v) for v in groups.values()] == [2, 1]
  assert list(compare.group_runs(runs, ['eval.every_steps'])[0]) == [  # When asked for.
      'every_steps=100', 'every_steps=50']
  assert all(run_config.may_change(f) for f in compare.CADENCE_FIELDS)


def test_holm_matches_a_hand_computation():
  # Sorted p: 0.01 (x3), 0.02 (x2), 0.04 (x1) -> 0.03, 0.04, 0.04; back in input order.
  assert compare.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
  assert compare.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # Capped at 1.
  # No test (NaN) is not one of the m tests: 0.04 and 0.01 are adjusted as a family of two.
  assert compare.holm([0.04, float('nan'), 0.01]) == pytest.approx([0.04, np.nan, 0.02],
                                                                    nan_ok=True)


def test_groups_that_scored_no_image_in_common_get_no_test_not_p_1():
  """Two folds' runs share no image: nothing can be paired. The comparison said p = 1.000
  (Holm-adjusting the others as if it were a test) and a difference of +nan."""
  runs = [_run('a', 0, 0, {'i1': 0.5, 'i2': 0.6}, loss='bce'),
          _run('b', 0, 1, {'i3': 0.7, 'i4': 0.1}, loss='dice'),
          _run('c', 0, 0, {'i1': 0.7, 'i2': 0.9}, loss='x')]
  rows, fields = compare.compare(runs, ['jaccard'], bootstrap=200)
  dice, other = rows[1], rows[2]
  assert dice['paired_images'] == 0 and np.isnan(dice['p']) and np.isnan(dice['p_holm'])
  assert other['p_holm'] == other['p'] == stats.wilcoxon([0.2, 0.3]).pvalue  # A family of one.
  assert '| n/a: no image scored by both | n/a | 0 / 0 of 0 |' in compare.markdown(
      rows, fields, 'final')


def test_paired_comparison_against_scipy_and_numpy():
  rng = np.random.default_rng(0)
  images = [f'i{k}' for k in range(40)]
  base = {i: float(v) for i, v in zip(images, rng.random(40), strict=True)}
  better = {i: base[i] + (0.05 if k % 3 else 0.0) for k, i in enumerate(images)}  # Ties too.
  out = compare.paired(better, base, np.random.default_rng(1), 500)
  diff = np.array([better[i] - base[i] for i in images])
  assert out['diff'] == pytest.approx(diff.mean())
  assert out['p'] == pytest.approx(stats.wilcoxon(diff, zero_method='pratt').pvalue)
  assert (out['better'], out['worse'], out['paired_images']) == (26, 0, 40)
  assert out['diff_ci'][0] <= diff.mean() <= out['diff_ci'][1]
  # Only the images both scored are paired.
  assert compare.paired({'i0': 1.0, 'x': 0.0}, {'i0': 0.5}, np.random.default_rng(0), 10)[
      'paired_images'] == 1


def test_bootstrap_intervals_cover_a_known_mean():
  rng = np.random.default_rng(0)
  covered = 0
  for _ in range(100):
    sample = rng.normal(0.7, 0.1, 50)
    low, high = compare.bootstrap_images(sample, rng, 400)
    covered += low <= 0.7 <= high
  assert 88 <= covered <= 99  # A 95% interval: about 95 of 100.


def test_two_level_interval_widens_with_seed_variance():
  rng = np.random.default_rng(0)
  same = [rng.normal(0.5, 0.05, 30) for _ in range(4)]
  spread = [v + shift for v, shift in zip(same, (-0.1, 0.1, -0.05, 0.05), strict=True)]
  width = [np.subtract(*compare.bootstrap_runs_images(runs, np.random.default_rng(0), 500)[::-1])
           for runs in (same, spread)]
  assert width[1] > 2 * width[0]


def test_table_numbers_against_numpy():
  runs = [_run('a0', 0, 0, {'i1': 0.2, 'i2': 0.4}, loss='bce'),
          _run('a1', 1, 0, {'i1': 0.4, 'i2': 0.6}, loss='bce'),
          _run('b0', 0, 0, {'i1': 0.8, 'i2': 0.9}, loss='dice'),
          _run('b1', 1, 0, {'i1': 0.6, 'i2': 0.9}, loss='dice')]
  rows, fields = compare.compare(runs, ['jaccard'], baseline='a1', bootstrap=200)
  base, other = rows
  assert base['baseline'] and base['group'] == 'loss=bce' and fields == ['loss']
  assert base['mean'] == pytest.approx(np.mean([0.3, 0.5]))
  assert base['std'] == pytest.approx(np.std([0.3, 0.5], ddof=1))
  # Per image, averaged over seeds: bce (0.3, 0.5), dice (0.7, 0.9): +0.4 on both images.
  assert other['diff'] == pytest.approx(0.4) and other['better'] == 2
  text = compare.markdown(rows, fields, 'final')
  assert 'loss=bce (baseline)' in text and '+0.4000' in text
  with pytest.raises(ValueError, match='names no group'):
    compare.compare(runs, ['jaccard'], baseline='nope')


def test_a_sweep_root_finds_the_same_runs_as_its_expanded_glob(tmp_path):
  # `compare ROOT/*` gets the sweep's own files too (sweep.json); they are skipped, not an error.
  for name in ('b', 'a', 'not_started'):
    (tmp_path / name).mkdir()
  for name in ('a', 'b'):
    (tmp_path / name / 'summary.json').write_text('{}')
  (tmp_path / 'sweep.json').write_text('{}')
  expected = [str(tmp_path / 'a'), str(tmp_path / 'b')]
  assert compare.find_runs([str(tmp_path)]) == expected
  assert compare.find_runs(sorted(str(p) for p in tmp_path.iterdir())) == expected
  with pytest.raises(FileNotFoundError, match='neither a run workdir'):
    compare.find_runs([str(tmp_path / 'a'), str(tmp_path / 'typo')])
  with pytest.raises(FileNotFoundError, match='No run'):
    compare.find_runs([str(tmp_path / 'sweep.json')])


def test_a_misspelt_group_field_is_named_with_the_nearest_one():
  runs = [_run('a0', 0, 0, {'i1': 0.5}, loss='bce'), _run('b0', 0, 0, {'i1': 0.7}, loss='dice')]
  with pytest.raises(ValueError, match=r"--group-by 'lossy' is no config field of the runs "
                     r"\(did you mean 'loss'\?\)"):
    compare.group_runs(runs, ['lossy'])


def test_no_bootstrap_resample_is_a_usage_error_not_a_traceback(capsys):
  with pytest.raises(SystemExit) as exit_info:
    compare.main(['some_runs', '--bootstrap', '0'])
  assert exit_info.value.code == 2
  assert '--bootstrap 0: the number of resamples, 1 or more' in capsys.readouterr().err


def test_runs_resumed_under_other_devices_are_named_under_the_table():
  runs = [_run('a0', 0, 0, {'i1': 0.5}, loss='bce'), _run('a1', 1, 0, {'i1': 0.6}, loss='bce'),
          _run('b0', 0, 0, {'i1': 0.7}, loss='dice')]
  assert compare.notes(compare.group_runs(runs, None)[0]) == ''
  runs[1].environments = 2
  said = compare.notes(compare.group_runs(runs, None)[0])
  assert said.startswith('Resumed under other devices or packages') and said.endswith(': a1.')


def test_runs_started_from_another_cross_validation_group_by_fold_and_a_leak_is_named(
    tmp_path, monkeypatch):
  """A cross-validation fine-tuned from another's folds (`config.init_from`): each fold's run
  starts from that fold's source, so the sources' paths differ by fold, as the runs do; they
  are one group, not one per fold. A run whose source trained on its validation images (as its
  summary.json records) is named optimistic under the table. Runs written file by file in the
  documented formats (unet_jax/results.py)."""
  from unet_jax import native_scoring, results

  def run(name, fold, source, saw):
    workdir = tmp_path / 'ft' / name
    (workdir / 'validation').mkdir(parents=True)
    results.write_per_image_csv(str(workdir / 'validation' / 'step_10.csv'), [
        native_scoring.ImageScore(f'f{fold}', 10, 10, 50 + fold, 5, 5, 40 - fold)])
    final = {'step': 10, 'per_image_csv': 'validation/step_10.csv', 'metrics': {}}
    results.write_run_summary(str(workdir), {
        'state': 'finished', 'step': 10, 'final': final, 'latest': final, 'best': None,
        'config': {'seed': 0, 'data': {'fold': fold}, 'loss': 'dice',
                   'init_from': {'workdir': source, 'checkpoint': 'final'}},
        'init_from': {'workdir': source, 'checkpoint': 'final', 'step': 10,
                      'val_images_in_source_training': saw}})

  pre = str(tmp_path / 'pre')
  run('ours-fold=0', 0, f'{pre}/ours-fold=0', 0)
  run('ours-fold=1', 1, f'{pre}/ours-fold=0', 9)  # Fold 1's photos trained fold 0's source.
  run('ours-fold=2', 2, f'{pre}/ours-fold=2', 0)
  for fold in (0, 1):
    run(f'scratch-fold={fold}', fold, '', None)
  runs = [compare.load_run(w, 'final', ['jaccard']) for w in compare.find_runs(
      [str(tmp_path / 'ft')])]
  groups, fields = compare.group_runs(runs, None)
  assert {k: sorted(r.name for r in v) for k, v in groups.items()} == {
      'ours': ['ours-fold=0', 'ours-fold=1', 'ours-fold=2'],
      'scratch': ['scratch-fold=0', 'scratch-fold=1']}
  assert fields == ['init_from.workdir']
  assert compare.notes(groups) == (
      'Optimistic: these runs started from a run that trained on some of the validation images '
      'they are scored on (how many): ours-fold=1 (9).')
  # The table names the sources relative to the current folder (a committed table names no
  # one's machine); paths outside it stay as they are.
  monkeypatch.chdir(tmp_path)
  assert compare.main(['ft', '--out', 'out', '--bootstrap', '10']) == 0
  table = (tmp_path / 'out' / 'comparison.md').read_text()
  assert '| ours (baseline) | pre/ours-fold=* | 3 |' in table, table
  monkeypatch.chdir(tmp_path / 'ft')
  assert compare.main(['.', '--out', 'out', '--bootstrap', '10']) == 0
  assert f'| ours (baseline) | {pre}/ours-fold=* | 3 |' in (
      tmp_path / 'ft' / 'out' / 'comparison.md').read_text()


def test_a_run_from_before_a_field_existed_and_a_path_spelt_otherwise_split_no_group(tmp_path):
  """A run recorded before `init_from` existed ran as its default does (a random init), and
  '/d/../data' is '/data': its seeds are one group with today's runs of the same recipe. Each
  was a column of its own and split the group (the CPU report's runs against this session's)."""
  from unet_jax import native_scoring, results

  def run(name, config):
    workdir = tmp_path / 'runs' / name
    (workdir / 'validation').mkdir(parents=True)
    results.write_per_image_csv(str(workdir / 'validation' / 'step_10.csv'), [
        native_scoring.ImageScore('i0', 10, 10, 50, 5, 5, 40)])
    final = {'step': 10, 'per_image_csv': 'validation/step_10.csv', 'metrics': {}}
    results.write_run_summary(str(workdir), {'state': 'finished', 'step': 10, 'final': final,
                                             'latest': final, 'best': None, 'config': config})

  data = tmp_path / 'data'
  run('old-seed=0', {'seed': 0, 'loss': 'dice', 'data': {'dir': f'{tmp_path}/x/../data'}})
  run('new-seed=1', {'seed': 1, 'loss': 'dice', 'data': {'dir': str(data)},
                     'init_from': {'workdir': '', 'checkpoint': 'final'}})
  run('bce-seed=0', {'seed': 0, 'loss': 'bce', 'data': {'dir': str(data)}})
  runs = [compare.load_run(w, 'final', ['jaccard'])
          for w in compare.find_runs([str(tmp_path / 'runs')])]
  groups, fields = compare.group_runs(runs, None)
  assert fields == ['loss']
  assert {k: sorted(r.name for r in v) for k, v in groups.items()} == {
      'loss=bce': ['bce-seed=0'], 'loss=dice': ['new-seed=1', 'old-seed=0']}
  started_from = next(r for r in runs if r.name == 'old-seed=0').config
  assert started_from['init_from.workdir'] == '' and started_from['data.dir'] == str(data)
