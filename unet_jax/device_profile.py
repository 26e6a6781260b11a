"""Where a jitted step spends its device time, by kind of operation, from JAX's own profiler.

Speed work has to know what to change before changing it: if convolutions take 80% of the
step, their layout and algorithms are the lever; if the fusions XLA writes for BatchNorm, ReLU,
the loss and the optimizer take 40%, moving or fusing normalization is. The benchmark
(`--profile-steps N`) and training (`config.profile_steps`) trace steps with `jax.profiler` and
read the trace back with `jax.profiler.ProfileData` (no TensorBoard profile plugin needed, which
the GPU machine lacks).

What is read:
  * on a GPU, the kernels on the device plane ('/device:GPU:0'), from its stream lines: each
    event is one kernel, named by the kernel and carrying the HLO instruction that launched it
    (stat 'hlo_op', e.g. 'cudnn-conv-bw-filter.3' or 'loop_add_fusion.12');
  * with no device plane (a CPU), XLA:CPU's thunks on the host plane, which carry 'hlo_op' too.
Each event gets a kind from its HLO instruction and kernel name (`kind_of`): collective (the
cross-device sums of data parallelism, NCCL's kernels on GPUs), convolution, matmul, reduction,
elementwise fusion, copy/transpose, other. On a CPU the thunks of every simulated device are
summed, and a collective's time is mostly its wait for the slowest device. Names are matched, not looked up
in the HLO, so the breakdown also keeps the top instructions by time with their raw names, for
a reader to check the kinds against.
"""

import collections
import glob
import os
import re
import shutil
import tempfile

import jax

# First match wins, on "hlo_op kernel-name" lowercased. 'conv' must not match 'convert'; cuDNN's
# convolution kernels are implicit GEMMs named fprop / dgrad / wgrad, so they come before 'gemm'.
KINDS = (
    ('collective', re.compile(r'all-reduce|all-gather|reduce-scatter|all-to-all|collective|psum'
                              r'|pmean|nccl')),
    ('convolution', re.compile(r'conv(?!ert)|fprop|dgrad|wgrad')),
    ('matmul', re.compile(r'gemm|cublas|nvjet|matmul|cutlass|(^|[^a-z])dot([^a-z]|$)')),
    ('reduction', re.compile(r'reduce')),
    ('copy/transpose', re.compile(r'copy|transpose|memcpy|memset|concatenate')),
    ('elementwise fusion', re.compile(r'fusion')),
)
# Lines of a device plane that repeat the kernels (derived by a profiler's post-processing).
_DERIVED_LINES = ('XLA Modules', 'XLA Ops', 'XLA TraceMe', 'Steps', 'Framework', 'Source')
# XLA:CPU thunks that only run others (their time is their children's, counted already).
_CONTROL_FLOW = re.compile(r'^(while|conditional|call)(\.\d+)?$')


def kind_of(hlo_op: str, kernel: str) -> str:
  text = f'{hlo_op} {kernel}'.lower()
  return next((kind for kind, pattern in KINDS if pattern.search(text)), 'other')


def _stats(event) -> dict:
  try:
    return dict(event.stats)
  except (TypeError, ValueError):
    return {}


def _device_events(profile):
  """(source, [(hlo_op, kernel, start_ns, duration_ns)]) of the first device plane with events,
  else of the host plane's XLA thunks."""
  for plane in profile.planes:
    if not plane.name.startswith('/device:') or 'host' in plane.name.lower():
      continue
    lines = [line for line in plane.lines if not line.name.startswith(_DERIVED_LINES)]
    streams = [line for line in lines if line.name.startswith('Stream')] or lines
    events = [(str(_stats(e).get('hlo_op', '')), e.name, e.start_ns, e.duration_ns)
              for line in streams for e in line.events]
    if events:
      return plane.name, events
  events = []
  for plane in profile.planes:
    if plane.name.startswith('/host:'):
      for line in plane.lines:
        for e in line.events:
          hlo_op = _stats(e).get('hlo_op')
          if hlo_op and not _CONTROL_FLOW.match(str(hlo_op)):
            events.append((str(hlo_op), e.name, e.start_ns, e.duration_ns))
  return 'host (XLA thunks)', events


def _union_ns(events) -> float:
  """Time during which at least one event runs (overlapping kernels counted once)."""
  busy, end = 0.0, float('-inf')
  for _, _, start, duration in sorted(events, key=lambda e: e[2]):
    stop = start + duration
    if stop > end:
      busy += stop - max(start, end)
      end = stop
  return busy


def breakdown(profile, steps: int, *, top: int = 25) -> dict:
  """Device time per step by kind of operation, and the `top` HLO instructions by time."""
  source, events = _device_events(profile)
  total_ns = sum(e[3] for e in events)
  by_kind, launches = collections.Counter(), collections.Counter()
  by_op = {}
  for hlo_op, kernel, _, duration in events:
    kind = kind_of(hlo_op, kernel)
    by_kind[kind] += duration
    launches[kind] += 1
    key = hlo_op or kernel
    entry = by_op.setdefault(key, {'op': key, 'kind': kind, 'kernel': kernel[:100], 'ns': 0,
                                   'launches': 0})
    entry['ns'] += duration
    entry['launches'] += 1
  ms = lambda ns: ns / 1e6 / steps  # noqa: E731
  ops = sorted(by_op.values(), key=lambda o: -o['ns'])[:top]
  return {
      'source': source, 'steps': steps, 'events_per_step': len(events) / steps,
      'kernel_ms_per_step': ms(total_ns), 'busy_ms_per_step': ms(_union_ns(events)),
      'kinds': {kind: {'ms_per_step': ms(ns), 'share': ns / total_ns if total_ns else None,
                       'launches_per_step': launches[kind] / steps}
                for kind, ns in by_kind.most_common()},
      'top_ops': [{'op': o['op'], 'kind': o['kind'], 'kernel': o['kernel'],
                   'ms_per_step': ms(o['ns']), 'share': o['ns'] / total_ns,
                   'launches_per_step': o['launches'] / steps} for o in ops],
  }


def newest_trace(folder: str) -> str:
  """The newest trace `jax.profiler` wrote under `folder` (<folder>/plugins/profile/<run>/)."""
  traces = glob.glob(os.path.join(folder, 'plugins', 'profile', '*', '*.xplane.pb'))
  if not traces:
    raise FileNotFoundError(f'jax.profiler wrote no plugins/profile/*/*.xplane.pb under {folder}')
  return max(traces, key=os.path.getmtime)


def read_trace(path: str, steps: int, *, top: int = 25) -> dict:
  """The breakdown of a trace file that holds `steps` steps."""
  return breakdown(jax.profiler.ProfileData.from_file(path), steps, top=top)


def profile_steps(step, steps: int, *, top: int = 25) -> dict:
  """Traces `steps` calls of `step()` (each blocking until done) and returns their breakdown."""
  folder = tempfile.mkdtemp(prefix='unet_jax_trace_')
  try:
    with jax.profiler.trace(folder):
      for _ in range(steps):
        step()
    return read_trace(newest_trace(folder), steps, top=top)
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def format_breakdown(result: dict) -> str:
  kinds = ', '.join(f"{kind} {100 * v['share']:.0f}%" for kind, v in result['kinds'].items()
                    if v['share'] is not None)
  return (f"{result['kernel_ms_per_step']:.2f} ms of kernels per step "
          f"({result['busy_ms_per_step']:.2f} ms busy; {result['source']}): {kinds}")
