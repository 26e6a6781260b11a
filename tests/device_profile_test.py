"""unet_jax/device_profile.py reads a GPU trace that no CPU test can record, so a trace in
XSpace's own format (the one `jax.profiler.trace` writes, read back by `jax.profiler.ProfileData`)
is built here by hand with known kernels and times, laid out as JAX's GPU traces are: a device
plane with one line per stream, kernels named by cuDNN / cuBLAS / XLA and carrying the HLO
instruction that launched them, a derived 'XLA Ops' line repeating them, and a host plane with
thunk events that must not be counted; likewise an optimized HLO module, whose instructions'
kinds are known by construction. Real traces (XLA:CPU's thunks) are read in benchmark_test and
train_test."""

import jax
import pytest

from unet_jax import device_profile


def _event(metadata_id, start_us, duration_us, hlo_op=None, hlo_module=None):
  """An XEvent; stat 1 is 'hlo_op' and stat 2 'hlo_module' in the planes built here."""
  stats = f'stats {{ metadata_id: 1 str_value: "{hlo_op}" }}' if hlo_op else ''
  stats += f' stats {{ metadata_id: 2 str_value: "{hlo_module}" }}' if hlo_module else ''
  return (f'events {{ metadata_id: {metadata_id} offset_ps: {int(start_us * 1e6)} '
          f'duration_ps: {int(duration_us * 1e6)} {stats} }}')


KERNELS = {1: 'sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_nhwckrsc_nhwc_cudnn',
           2: 'sm90_xmma_wgrad_implicit_gemm_bf16bf16', 3: 'loop_convert_fusion_2',
           4: 'input_reduce_fusion_7', 5: 'nvjet_hsh_128x256_64x4_2x1_v_bz_coopA_NTN',
           6: 'memcpy32_post'}
# Two steps of: conv 6 us, filter gradient 4 us, a convert fusion 2 us on a second stream that
# overlaps the conv by 1 us, a reduction 3 us, a cuBLAS matmul 5 us, a copy 1 us with no HLO op.
COMPUTE = [(1, 0, 6, 'cudnn-conv.3'), (2, 10, 4, 'cudnn-conv-bw-filter.1'),
           (4, 15, 3, 'input_reduce_fusion.7'), (5, 20, 5, 'custom-call.4'), (6, 26, 1, None)]
SECOND_STREAM = [(3, 5, 2, 'loop_convert_fusion.2')]


def _trace(steps=2, events=COMPUTE, kernels=KERNELS):
  step_us = 30
  compute = [_event(m, s + k * step_us, d, h) for k in range(steps) for m, s, d, h in events]
  second = [_event(m, s + k * step_us, d, h) for k in range(steps)
            for m, s, d, h in SECOND_STREAM]
  metadata = ' '.join(f'event_metadata {{ key: {k} value {{ id: {k} name: "{n}" }} }}'
                      for k, n in kernels.items())
  derived = [_event(1, 0, 30 * steps, 'jit_train_step')]
  text = f'''
    planes {{ id: 1 name: "/host:CPU"
      lines {{ id: 1 name: "tf_XLAPjRtCpuClient" timestamp_ns: 0
               {_event(1, 0, 500, 'fusion.1')} }}
      event_metadata {{ key: 1 value {{ id: 1 name: "ThunkExecutor" }} }}
      stat_metadata {{ key: 1 value {{ id: 1 name: "hlo_op" }} }} }}
    planes {{ id: 2 name: "/device:GPU:0"
      lines {{ id: 1 name: "Stream #13(Compute)" timestamp_ns: 1000 {' '.join(compute)} }}
      lines {{ id: 2 name: "Stream #14(Compute)" timestamp_ns: 1000 {' '.join(second)} }}
      lines {{ id: 3 name: "XLA Ops" timestamp_ns: 1000 {' '.join(derived)} }}
      {metadata}
      stat_metadata {{ key: 1 value {{ id: 1 name: "hlo_op" }} }} }}'''
  return jax.profiler.ProfileData.from_text_proto(text)


def test_a_gpu_trace_is_read_from_the_device_streams_per_step():
  result = device_profile.breakdown(_trace(steps=2), steps=2)
  assert result['source'] == '/device:GPU:0'
  assert result['events_per_step'] == 6  # The host's thunk and the derived line are not counted.
  assert result['kernel_ms_per_step'] == pytest.approx(21e-3)  # 6+4+3+5+1+2 us
  assert result['busy_ms_per_step'] == pytest.approx(20e-3)  # The 1 us overlap counted once.
  kinds = {kind: v['ms_per_step'] * 1e3 for kind, v in result['kinds'].items()}
  assert kinds == pytest.approx({'convolution': 10, 'matmul': 5, 'reduction': 3,
                                 'elementwise fusion': 2, 'copy/transpose': 1})
  assert sum(v['share'] for v in result['kinds'].values()) == pytest.approx(1)
  assert result['kinds']['convolution']['launches_per_step'] == 2
  top = result['top_ops'][0]
  assert (top['op'], top['kind'], top['launches_per_step']) == ('cudnn-conv.3', 'convolution', 1)
  assert top['kernel'].startswith('sm90_xmma_fprop')
  # An event with no HLO instruction is listed by its kernel name.
  assert 'memcpy32_post' in [o['op'] for o in result['top_ops']]
  assert 'convolution 48%' in device_profile.format_breakdown(result)


def test_command_buffers_are_listed_by_kernel_and_an_op_by_its_longest_kernel():
  """As the H200's trace of the seed's step had them (2026-11-30): fusions run inside XLA's
  command buffers, whose events all carry the buffer's name, and a cuDNN convolution that
  launches a memset before its GEMM. The top instructions once named a buffer by its first
  kernel, and a convolution by its memset."""
  kernels = {**KERNELS, 7: 'Memset 3', 8: 'loop_reduce_window_fusion', 9: 'input_scatter_fusion'}
  events = [(7, 0, 1, 'cudnn-conv-bias-activation.96'), (1, 1, 6, 'cudnn-conv-bias-activation.96'),
            (8, 8, 4, 'command_buffer_488'), (9, 12, 3, 'command_buffer_488'),
            (8, 16, 2, 'command_buffer_490')]
  result = device_profile.breakdown(_trace(1, events, kernels), steps=1)
  top = {o['op']: (o['kind'], o['kernel'], o['launches_per_step'], o['ms_per_step'] * 1e3)
         for o in result['top_ops']}
  conv = top['cudnn-conv-bias-activation.96']
  assert conv[:3] == ('convolution', KERNELS[1], 2) and conv[3] == pytest.approx(7)
  assert top['loop_reduce_window_fusion'][0] == 'reduction'
  assert top['loop_reduce_window_fusion'][2:] == pytest.approx((2, 6))  # Both buffers' launches.
  assert top['input_scatter_fusion'][0] == 'elementwise fusion'
  assert not [op for op in top if op.startswith('command_buffer')]


@pytest.mark.parametrize('hlo_op, kernel, kind', [
    ('cudnn-conv-bw-input.3', '', 'convolution'),
    ('', 'sm90_xmma_dgrad_implicit_gemm_bf16', 'convolution'),  # Before 'gemm'.
    ('convolution.12', 'convolution.12', 'convolution'),  # XLA:CPU's names.
    ('loop_convert_fusion.4', 'loop_convert_fusion_4', 'elementwise fusion'),  # Not 'conv'.
    ('custom-call.2', 'nvjet_hsh_256x128_64x4_2x1_v_bz_TNT', 'matmul'),
    ('dot.5', 'dot.5', 'matmul'),
    ('gemm_fusion_dot.3', 'gemm_fusion_dot_3', 'matmul'),
    ('input_reduce_fusion.1', 'input_reduce_fusion_1', 'reduction'),
    ('wrapped_reduce-window.1', '', 'reduction'),
    ('transpose_copy_fusion.2', '', 'copy/transpose'),
    ('select-and-scatter.1', 'select_and_scatter_1', 'other'),
    ('dot_general.2', 'dot_general.2', 'matmul'),  # JAX's name, kept by XLA:CPU.
    ('all-reduce.4', 'ncclDevKernel_AllReduce_Sum_f32_RING_LL', 'collective'),  # Not 'reduce'.
    ('psum.480', 'psum.480', 'collective'),
])
def test_kinds_from_instruction_and_kernel_names(hlo_op, kernel, kind):
  assert device_profile.kind_of(hlo_op, kernel) == kind


def test_with_no_device_plane_the_host_s_xla_thunks_are_read_without_their_loops():
  """XLA:CPU: thunks on the host plane carry 'hlo_op'; a while loop's thunk spans the thunks it
  runs, so only those count. Events without an HLO op (Python, thread pools) are not XLA's."""
  thunks = [_event(1, 0, 10, 'while.3'), _event(1, 1, 4, 'convolution.2'),
            _event(1, 6, 3, 'broadcast_add_fusion'), _event(2, 20, 2, 'all-reduce.1'),
            _event(2, 30, 50)]
  text = f'''
    planes {{ id: 1 name: "/host:CPU"
      lines {{ id: 1 name: "tf_XLAPjRtCpuClient" timestamp_ns: 0 {' '.join(thunks)} }}
      event_metadata {{ key: 1 value {{ id: 1 name: "thunk" }} }}
      event_metadata {{ key: 2 value {{ id: 2 name: "python" }} }}
      stat_metadata {{ key: 1 value {{ id: 1 name: "hlo_op" }} }} }}'''
  result = device_profile.breakdown(jax.profiler.ProfileData.from_text_proto(text), steps=1)
  assert result['source'] == 'host (XLA thunks)'
  kinds = {kind: v['ms_per_step'] * 1e3 for kind, v in result['kinds'].items()}
  assert kinds == pytest.approx({'convolution': 4, 'elementwise fusion': 3, 'collective': 2})


HLO = '''HloModule jit_train_step, is_scheduled=true, entry_computation_layout={(f32[8]{0})->f32[8]{0}}

%region_0 (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add.1 = f32[] add(%a, %b)
}

%fused_gemm (p0: bf16[64,64], p1: bf16[64,64]) -> bf16[64,64] {
  %p0 = bf16[64,64]{1,0} parameter(0)
  %p1 = bf16[64,64]{1,0} parameter(1)
  ROOT %dot.3 = bf16[64,64]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_stats (p0: f32[8,8]) -> (f32[8], f32[8,8]) {
  %p0 = f32[8,8]{1,0} parameter(0)
  %zero = f32[] constant(0)
  %relu = f32[8,8]{1,0} maximum(%p0, %p0)
  %sum = f32[8]{0} reduce(%relu, %zero), dimensions={1}, to_apply=%region_0
  ROOT %t = (f32[8]{0}, f32[8,8]{1,0}) tuple(%sum, %relu)
}

%fused_scale (p0: f32[8,8]) -> f32[8,8] {
  %p0 = f32[8,8]{1,0} parameter(0)
  %two = f32[] constant(2)
  %b = f32[8,8]{1,0} broadcast(%two), dimensions={}
  ROOT %m = f32[8,8]{1,0} multiply(%p0, %b)
}

%fused_layout (p0: f32[8,8]) -> f32[8,8] {
  %p0 = f32[8,8]{1,0} parameter(0)
  %tr = f32[8,8]{0,1} transpose(%p0), dimensions={1,0}
  ROOT %cp = f32[8,8]{1,0} copy(%tr)
}

%ynn_computation (p0: f32[1,8,8,3], p1: f32[3,3,3,4]) -> f32[1,8,8,4] {
  %p0 = f32[1,8,8,3]{3,2,1,0} parameter(0)
  %p1 = f32[3,3,3,4]{3,2,1,0} parameter(1)
  %c = f32[1,8,8,4]{3,2,1,0} convolution(%p0, %p1), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f
  ROOT %r = f32[1,8,8,4]{3,2,1,0} maximum(%c, %c)
}

ENTRY %main.9 (x: f32[8,8]) -> f32[8,8] {
  %x = f32[8,8]{1,0} parameter(0)
  %cudnn-conv.1 = (bf16[1,8,8,4]{3,2,1,0}, u8[0]{0}) custom-call(%x, %x), custom_call_target="__cudnn$convForward"
  %gemm_fusion_dot.2 = bf16[64,64]{1,0} fusion(%x, %x), kind=kCustom, calls=%fused_gemm
  %input_reduce_fusion = (f32[8]{0}, f32[8,8]{1,0}) fusion(%x), kind=kInput, calls=%fused_stats
  %loop_multiply_fusion = f32[8,8]{1,0} fusion(%x), kind=kLoop, calls=%fused_scale
  %wrapped_transpose = f32[8,8]{1,0} fusion(%x), kind=kLoop, calls=%fused_layout
  %ynn_fusion.83 = f32[1,8,8,4]{3,2,1,0} fusion(%x, %x), kind=kCustom, calls=%ynn_computation, backend_config={"fusion_config":{"kind":"__ynn_fusion"}}
  %all-reduce-start.1 = f32[8,8]{1,0} all-reduce-start(%x), replica_groups={}, to_apply=%region_0
  ROOT %negate.4 = f32[8,8]{1,0} negate(%x)
}
'''


def test_kinds_from_the_compiled_hlo_follow_what_each_instruction_computes():
  module, kinds = device_profile.hlo_kinds(HLO)
  assert module == 'jit_train_step'
  assert {name: kinds[name] for name in (
      'cudnn-conv.1', 'gemm_fusion_dot.2', 'input_reduce_fusion', 'loop_multiply_fusion',
      'wrapped_transpose', 'ynn_fusion.83', 'all-reduce-start.1', 'negate.4')} == {
      'cudnn-conv.1': 'convolution', 'gemm_fusion_dot.2': 'matmul',
      'input_reduce_fusion': 'reduction', 'loop_multiply_fusion': 'elementwise fusion',
      'wrapped_transpose': 'copy/transpose',
      'ynn_fusion.83': 'convolution',  # Its name alone says 'fusion'.
      'all-reduce-start.1': 'collective', 'negate.4': 'elementwise fusion'}


def test_a_trace_of_the_compiled_program_takes_its_kinds_from_its_hlo():
  """Events of the HLO's module get its kinds; those of another module keep their names'."""
  events = [_event(1, 0, 4, 'ynn_fusion.83', 'jit_train_step'),
            _event(2, 5, 1, 'fusion.7', 'jit_other')]
  text = f'''
    planes {{ id: 1 name: "/host:CPU"
      lines {{ id: 1 name: "tf_XLAPjRtCpuClient" timestamp_ns: 0 {' '.join(events)} }}
      event_metadata {{ key: 1 value {{ id: 1 name: "ynn_fusion.83" }} }}
      event_metadata {{ key: 2 value {{ id: 2 name: "fusion.7" }} }}
      stat_metadata {{ key: 1 value {{ id: 1 name: "hlo_op" }} }}
      stat_metadata {{ key: 2 value {{ id: 2 name: "hlo_module" }} }} }}'''
  profile = jax.profiler.ProfileData.from_text_proto(text)
  by_names = device_profile.breakdown(profile, steps=1)
  assert set(by_names['kinds']) == {'elementwise fusion'} and by_names['kinds_from_hlo'] == 0
  by_hlo = device_profile.breakdown(profile, steps=1, hlo_text=HLO)
  assert {k: v['ms_per_step'] * 1e3 for k, v in by_hlo['kinds'].items()} == pytest.approx(
      {'convolution': 4, 'elementwise fusion': 1})
  assert by_hlo['kinds_from_hlo'] == pytest.approx(0.8)
