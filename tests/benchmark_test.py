"""The benchmark's parts checked against independent references: the analytic FLOP count against
XLA's cost analysis, the PyTorch copy against the flax model (parameter counts and outputs with
copied weights), and the benchmark itself end to end at toy size."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from experiments import benchmark
from unet_jax import flops, losses, models

SIZE = 32


@pytest.mark.parametrize('upsample', models.UPSAMPLES)
def test_analytic_flops_match_xla_cost_analysis(upsample):
  model = models.UNet(depth=2, base_width=16, upsample=upsample, dropout_levels=())
  x = jnp.zeros((2, SIZE, SIZE, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))

  def loss(params, batch_stats, x):
    logits, _ = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                            train=True, mutable=['batch_stats'])
    return losses.loss_per_image('bce_dice', logits, jnp.zeros_like(logits)).mean()

  def xla_flops(fn, *args):
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)['flops'] / x.shape[0]

  forward = xla_flops(lambda v, x: model.apply(v, x, train=False), variables, x)
  train = xla_flops(jax.grad(loss), variables['params'], variables['batch_stats'], x)
  analytic = flops.unet_flops(SIZE, depth=2, base_width=16, upsample=upsample,
                              exact_taps=True)
  # XLA also counts the elementwise ops the analytic count leaves out: slightly above it.
  assert 1.0 <= forward / analytic.forward < 1.03
  assert 1.0 <= train / analytic.train < 1.05


@pytest.mark.parametrize('upsample, head', [('resize_conv', 'seed'), ('transpose', 'linear'),
                                           ('dense_d2s', 'seed')])
def test_conv_input_elements_match_the_model_s_conv_inputs(upsample, head):
  """The memory floor's count against the input of every conv the flax model really calls."""
  model = models.UNet(depth=2, base_width=8, upsample=upsample, head=head, dropout_levels=())
  seen = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == '__call__' and isinstance(
        context.module, nn.Conv | nn.ConvTranspose | models.DenseDepthToSpace):
      seen.append(int(np.prod(args[0].shape[1:])))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)),
                                      train=False))
  assert len(seen) == 2 * 3 + 3 * 2 + (2 if head == 'seed' else 1)
  assert flops.conv_input_elements(SIZE, depth=2, base_width=8, upsample=upsample,
                                   head=head) == sum(seen)
  assert flops.train_floor_bytes(SIZE, depth=2, base_width=8, upsample=upsample,
                                 head=head) == flops.TRAIN_PASSES * 2 * sum(seen)


def test_classic_unet_flops_match_the_issue():
  """The classic U-Net (transposed-conv upsampling) at 224: ~74 GFLOP forward, ~221 training."""
  f = flops.unet_flops(224, upsample='transpose')
  assert f.forward / 1e9 == pytest.approx(73.9, abs=0.1)
  assert f.train / 1e9 == pytest.approx(221.4, abs=0.1)
  assert flops.unet_flops(224, upsample='dense_d2s') == f
  # Exact taps only drop the border taps of 'SAME' padding: a little below nominal.
  assert 0.95 < flops.unet_flops(224, upsample='transpose', exact_taps=True).forward / f.forward < 1


def test_optimizer_settings_mirror_the_default_config():
  from configs import default

  optim = default.get_config().optim.to_dict()
  assert {k: tuple(v) if isinstance(v, list) else v for k, v in optim.items()} == benchmark.OPTIM
  assert default.get_config().loss == benchmark.LOSS
  assert default.get_config().augment.to_dict() == benchmark.AUGMENT


def test_train_mode_imports_neither_tensorflow_nor_ml_collections():
  code = ('import sys; import experiments.benchmark, experiments.torch_unet; '
          "bad = [m for m in ('tensorflow', 'ml_collections', 'clu') if m in sys.modules]; "
          'assert not bad, bad')
  if 'torch' not in sys.modules:
    code = code.replace(', experiments.torch_unet', '')
  subprocess.run([sys.executable, '-c', code], check=True)


def _jax_count(**kwargs):
  model = models.UNet(**kwargs)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                train=False))
  return (models.count_params(variables['params']),
          models.count_params(variables.get('batch_stats', {})))


@pytest.mark.parametrize('kwargs', [
    {},  # The seed model.
    dict(upsample='transpose', head='linear'),
    dict(upsample='dense_d2s', norm_position='before_act'),
    dict(norm='group', depth=2, base_width=8, dropout_levels=(2,)),
])
def test_torch_parameter_count_equals_jax(kwargs):
  torch_unet = pytest.importorskip('experiments.torch_unet')
  count = torch_unet.count_params(torch_unet.UNet(**kwargs))
  assert count == _jax_count(**kwargs)
  if not kwargs:
    assert count == (31_044_617, 11_780)


@pytest.mark.parametrize(('upsample', 'norm_position'), [
    ('resize_conv', 'after_act'), ('transpose', 'before_act'), ('dense_d2s', 'after_act')])
def test_torch_forward_equals_jax_with_copied_weights(upsample, norm_position):
  torch = pytest.importorskip('torch')
  from experiments import torch_unet

  kwargs = dict(depth=2, base_width=4, upsample=upsample, norm_position=norm_position,
                dropout_levels=(), head='seed')
  model = models.UNet(**kwargs)
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)),
                                             train=False))
  # Random values everywhere (biases, scales, running statistics too) so a mis-mapped tensor
  # cannot hide behind an initializer's zeros or ones.
  variables = jax.tree.map(lambda s: (rng.uniform(0.5, 1.5, s.shape) * rng.choice([-1, 1], s.shape)
                                      ).astype(np.float32), shapes)
  variables['batch_stats'] = jax.tree.map(np.abs, variables['batch_stats'])
  x = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)

  reference = torch_unet.load_flax_variables(torch_unet.UNet(**kwargs), variables)
  x_torch = torch.from_numpy(x).permute(0, 3, 1, 2)
  for train in (False, True):
    expected = np.asarray(jax.jit(lambda v, x, train=train: model.apply(
        v, x, train=train, mutable=['batch_stats'])[0])(variables, x))
    reference.train(train)
    with torch.no_grad():
      got = reference(x_torch).permute(0, 2, 3, 1).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got / scale, expected / scale, atol=1e-4, err_msg=f'{train=}')


def test_benchmark_runs_and_prints_the_table(tmp_path, capsys):
  use_torch = True
  try:
    import torch
  except ImportError:
    use_torch = False
  out = tmp_path / 'results.json'
  argv = ['--image-size', '16', '--base-width', '4', '--depth', '1', '--batch-sizes', '2',
          '--precisions', 'float32', '--upsample', 'dense_d2s', '--steps', '1', '--warmup', '0',
          '--matmul-size', '64', '--torch-compile', 'none', '--compilation-cache', '',
          '--profile-steps', '2', '--pool', 'reshape', '--torch' if use_torch else '--no-torch']
  results = benchmark.main([*argv, '--out', str(out)])
  printed = capsys.readouterr().out
  rows = results['rows']
  assert [r['framework'] for r in rows] == (['jax', 'torch'] if use_torch else ['jax'])
  jax_row = rows[0]
  assert jax_row['images_per_s'] > 0 and jax_row['mfu'] > 0
  assert all(r['pipelined_images_per_s'] > 0 for r in rows)  # Steps queued, one wait.
  assert jax_row['pool'] == 'reshape'
  assert jax_row['gflop_per_image'] == pytest.approx(
      flops.unet_flops(16, depth=1, base_width=4, upsample='dense_d2s').train / 1e9)
  assert 'JAX/torch' in printed and 'jax | dense_d2s | f32 | yes | 2 |' in printed
  if use_torch:
    assert jax_row['jax_over_torch'] == pytest.approx(
        jax_row['images_per_s'] / rows[1]['images_per_s'])
    assert (jax_row['augment'], rows[1]['augment']) == (True, False)  # PyTorch never augments.
    # Where PyTorch ran, in its own row (the env line is JAX's).
    assert (rows[1]['torch_device'], rows[1]['torch_version']) == ('cpu', torch.__version__)
  saved = json.loads(out.read_text())
  assert saved['complete'] is True
  assert saved['args']['out'] == 'results.json'  # No path of the measuring machine.
  # The traced steps, read back from JAX's profiler (XLA:CPU's thunks here): every conv layer
  # (2 per level, 2 in the seed head; depth 1) runs its forward convolution in each step.
  profile = jax_row['profile']
  assert profile['steps'] == 2 and profile['kernel_ms_per_step'] > 0
  convolutions = profile['kinds']['convolution']
  assert convolutions['share'] > 0 and convolutions['launches_per_step'] >= 6
  assert profile['kinds_from_hlo'] > 0.99  # The step's compiled HLO named every thunk's kind.
  assert sum(v['share'] for v in profile['kinds'].values()) == pytest.approx(1)
  assert 'Device time, batch 2: ' in printed
  # Resumed from its own file, the same command measures nothing again, PyTorch's row included.
  again = benchmark.main([*argv, '--resume-from', str(out), '--out', str(tmp_path / 'again.json')])
  assert [r['resumed_from'] for r in again['rows']] == [str(out)] * len(rows)
  assert 'kept' in capsys.readouterr().out


def test_compile_only_reports_the_plan_without_running(capsys):
  results = benchmark.main([
      '--image-size', '16', '--base-width', '4', '--depth', '1', '--batch-sizes', '2,4',
      '--precisions', 'float32', '--upsample', 'transpose', '--compile-only',
      '--compilation-cache', ''])
  rows = results['rows']
  assert [(r['framework'], r['batch_size']) for r in rows] == [('jax', 2), ('jax', 4)]
  assert all(r['step_ms'] is None and r['compile_s'] > 0 for r in rows)
  # XLA's buffer plan grows with the batch; its FLOP count stays per image.
  assert rows[1]['plan_gib'] > rows[0]['plan_gib'] > 0
  assert rows[1]['xla_gflop_per_image'] == pytest.approx(rows[0]['xla_gflop_per_image'], rel=0.05)
  assert 'torch |' not in capsys.readouterr().out


@pytest.mark.parametrize('policy', ['stretch', 'crop'])
def test_input_mode_reads_real_photos_under_each_policy(tmp_path, policy):
  import fake_isic  # tests/fake_isic.py; pytest puts tests/ on sys.path.

  root = fake_isic.make_fake_isic(str(tmp_path), counts={'Training': 8})['root']
  row = benchmark.main([
      '--mode', 'input', '--image-size', '32', '--batch-sizes', '2', '--steps', '3',
      '--warmup', '0', '--data-dir', root, '--resize-policy', policy, '--compilation-cache', ''])
  assert (row['source'], row['resize_policy'], row['batch_size']) == ('folder', policy, 2)
  assert row['images_per_s'] > 0 and row['images_per_s_per_core'] <= row['images_per_s']


def test_a_failing_torch_compile_falls_back_to_eager_and_says_so(tmp_path, monkeypatch):
  """The GPU check's PyTorch part runs once, blind: if torch.compile fails there, the row is
  eager PyTorch with the failure in it, and the table says the ratio is against eager."""
  torch = pytest.importorskip('torch')
  from experiments import gpu_table

  def broken_compile(model, **kwargs):
    raise RuntimeError('Triton: no C compiler |found|\non this machine')

  monkeypatch.setattr(torch, 'compile', broken_compile)
  out = tmp_path / 'torch.json'
  benchmark.main([
      '--image-size', '16', '--base-width', '2', '--depth', '1', '--batch-sizes', '2',
      '--upsample', 'resize_conv', '--precisions', 'float32', '--steps', '1', '--warmup', '0',
      '--matmul-size', '32', '--frameworks', 'torch', '--no-isolate', '--compilation-cache', '', '--out', str(out)])
  (row,) = json.loads(out.read_text())['rows']
  assert row['framework'] == 'torch' and row['torch_compile'] is None and row['images_per_s'] > 0
  assert row['torch_compile_error'].startswith('RuntimeError: Triton: no C compiler')
  table = gpu_table.table([str(tmp_path)])
  assert ('| torch | batch 2: images/s (eager: torch.compile failed, RuntimeError: Triton: no C '
          'compiler /found/ on this machine) |') in table
