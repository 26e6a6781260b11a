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
Each event gets a kind: collective (the cross-device sums of data parallelism, NCCL's kernels
on GPUs), convolution, matmul, reduction, elementwise fusion, copy/transpose, other. Where the
compiled program's HLO text is given, its instructions get the kind of what they compute
(`hlo_kinds`: XLA:CPU's 'ynn_fusion' holding a convolution is a convolution); the rest, from
their instruction's and kernel's names (`kind_of`), which on a GPU say it plainly. The breakdown
keeps the top instructions by time with their raw names and the kernel that took most of each
one's time, for a reader to check the kinds against; the kernels that XLA:GPU runs inside a
command buffer (a CUDA graph of many fusions, whose events all name the buffer) are listed each
by its own name. On a CPU the thunks of every simulated device are summed, and a collective's
time is mostly its wait for the slowest device.
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
  """A kind from names alone (the instruction's, the kernel's): the fallback of `hlo_kinds`."""
  text = f'{hlo_op} {kernel}'.lower()
  return next((kind for kind, pattern in KINDS if pattern.search(text)), 'other')


_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_INSTRUCTION = re.compile(r'^\s+(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][\w\-]*)\((.*)$')
_CALLS = re.compile(r'calls=%?([\w.\-]+)')
_TARGET = re.compile(r'custom_call_target="([^"]*)"')
_COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute',
                'collective-broadcast')
_REDUCTIONS = ('reduce', 'reduce-window', 'select-and-scatter', 'scatter')
_DATA_MOVEMENT = {'copy', 'transpose', 'bitcast', 'reshape', 'broadcast', 'slice', 'pad',
                  'concatenate', 'dynamic-slice', 'dynamic-update-slice', 'reverse', 'parameter',
                  'constant', 'tuple', 'get-tuple-element', 'iota'}


def hlo_kinds(hlo_text: str) -> tuple[str, dict[str, str]]:
  """(module name, {instruction name: kind}) of a compiled program's HLO text
  (`jitted.lower(...).compile().as_text()`), a fusion by the operations inside it: a fusion
  that holds a convolution is a convolution (XLA:CPU's 'ynn_fusion', cuDNN's fusions), one that
  holds a dot a matmul, one that holds a reduction a reduction. Kinds from what instructions
  compute, where names alone (`kind_of`) can only guess."""
  module = ''
  computations: dict[str, list[tuple[str, str, str]]] = {}
  current = None
  for line in hlo_text.splitlines():
    if line.startswith('HloModule '):
      module = line.split()[1].rstrip(',')
    elif (match := _COMPUTATION.match(line)) and not line.startswith(' '):
      current = computations.setdefault(match.group(1), [])
    elif current is not None and (match := _INSTRUCTION.match(line)):
      current.append(match.groups())

  def kind(opcode: str, rest: str, depth: int = 0) -> str:
    if opcode in ('fusion', 'call') and depth < 4 and (called := _CALLS.search(rest)):
      inner = [kind(o, r, depth + 1) for _, o, r in computations.get(called.group(1), [])]
      for k in ('collective', 'convolution', 'matmul', 'reduction', 'elementwise fusion'):
        if k in inner:
          return k
      return 'copy/transpose'
    if opcode == 'custom-call':
      target = _TARGET.search(rest)
      return kind_of(target.group(1) if target else '', '')
    if opcode.startswith(_COLLECTIVES):
      return 'collective'
    if opcode == 'convolution':
      return 'convolution'
    if opcode == 'dot':
      return 'matmul'
    if opcode in _REDUCTIONS:
      return 'reduction'
    if opcode in _DATA_MOVEMENT:
      return 'copy/transpose'
    if opcode in ('while', 'conditional', 'send', 'recv', 'infeed', 'outfeed'):
      return 'other'
    return 'elementwise fusion'

  kinds = {name: kind(opcode, rest) for instructions in computations.values()
           for name, opcode, rest in instructions}
  return module, kinds


def _device_events(profile):
  """(source, [(hlo_op, hlo_module, kernel, start_ns, duration_ns)]) of the first device plane
  with events, else of the host plane's XLA thunks."""
  for plane in profile.planes:
    if not plane.name.startswith('/device:') or 'host' in plane.name.lower():
      continue
    lines = [line for line in plane.lines if not line.name.startswith(_DERIVED_LINES)]
    streams = [line for line in lines if line.name.startswith('Stream')] or lines
    events = [(str(stats.get('hlo_op', '')), str(stats.get('hlo_module', '')), e.name,
               e.start_ns, e.duration_ns)
              for line in streams for e in line.events for stats in (dict(e.stats),)]
    if events:
      return plane.name, events
  events = []
  for plane in profile.planes:
    if plane.name.startswith('/host:'):
      for line in plane.lines:
        for e in line.events:
          stats = dict(e.stats)
          hlo_op = stats.get('hlo_op')
          if hlo_op and not _CONTROL_FLOW.match(str(hlo_op)):
            events.append((str(hlo_op), str(stats.get('hlo_module', '')), e.name, e.start_ns,
                           e.duration_ns))
  return 'host (XLA thunks)', events


def _union_ns(events) -> float:
  """Time during which at least one event runs (overlapping kernels counted once)."""
  busy, end = 0.0, float('-inf')
  for *_, start, duration in sorted(events, key=lambda e: e[-2]):
    stop = start + duration
    if stop > end:
      busy += stop - max(start, end)
      end = stop
  return busy


def breakdown(profile, steps: int, *, top: int = 25, hlo_text: str | None = None) -> dict:
  """Device time per step by kind of operation, and the `top` HLO instructions by time.

  With `hlo_text`, the compiled program's HLO (`compiled.as_text()`), the instructions of that
  program get their kind from what they compute (`hlo_kinds`); the others, from their names.
  """
  source, events = _device_events(profile)
  module, known = hlo_kinds(hlo_text) if hlo_text else ('', {})
  total_ns = sum(e[-1] for e in events)
  by_kind, launches = collections.Counter(), collections.Counter()
  by_op = {}
  from_hlo_ns = 0
  for hlo_op, hlo_module, kernel, _, duration in events:
    kind = None
    if known and hlo_module.split('(')[0] == module:
      kind = known.get(hlo_op)
      from_hlo_ns += duration if kind else 0
    kind = kind or kind_of(hlo_op, kernel)
    by_kind[kind] += duration
    launches[kind] += 1
    # A command buffer (XLA:GPU's CUDA graph of many fusions) is no one instruction: its
    # kernels are listed by name, as are events with no instruction.
    key = kernel if not hlo_op or hlo_op.startswith('command_buffer') else hlo_op
    entry = by_op.setdefault(key, {'op': key, 'ns': 0, 'launches': 0,
                                   'kernels': collections.Counter(),
                                   'kinds': collections.Counter()})
    entry['ns'] += duration
    entry['launches'] += 1
    entry['kernels'][kernel] += duration
    entry['kinds'][kind] += duration
  ms = lambda ns: ns / 1e6 / steps  # noqa: E731
  ops = sorted(by_op.values(), key=lambda o: -o['ns'])[:top]
  for o in ops:  # An instruction's kind and kernel are those of most of its time (a cuDNN
    # convolution launches a memset before its GEMM).
    o['kind'] = o['kinds'].most_common(1)[0][0]
    o['kernel'] = o['kernels'].most_common(1)[0][0][:100]
  return {
      'source': source, 'steps': steps, 'events_per_step': len(events) / steps,
      'kernel_ms_per_step': ms(total_ns), 'busy_ms_per_step': ms(_union_ns(events)),
      'kinds_from_hlo': from_hlo_ns / total_ns if total_ns else 0.0,
      'kinds': {kind: {'ms_per_step': ms(ns), 'share': ns / total_ns if total_ns else None,
                       'launches_per_step': launches[kind] / steps}
                for kind, ns in by_kind.most_common()},
      'top_ops': [{'op': o['op'], 'kind': o['kind'], 'kernel': o['kernel'],
                   'ms_per_step': ms(o['ns']), 'share': o['ns'] / total_ns if total_ns else None,
                   'launches_per_step': o['launches'] / steps} for o in ops],
  }


def newest_trace(folder: str) -> str:
  """The newest trace `jax.profiler` wrote under `folder` (<folder>/plugins/profile/<run>/)."""
  traces = glob.glob(os.path.join(folder, 'plugins', 'profile', '*', '*.xplane.pb'))
  if not traces:
    raise FileNotFoundError(f'jax.profiler wrote no plugins/profile/*/*.xplane.pb under {folder}')
  return max(traces, key=os.path.getmtime)


def read_trace(path: str, steps: int, *, top: int = 25, hlo_text: str | None = None) -> dict:
  """The breakdown of a trace file that holds `steps` steps (see `breakdown`)."""
  return breakdown(jax.profiler.ProfileData.from_file(path), steps, top=top, hlo_text=hlo_text)


def profile_steps(step, steps: int, *, top: int = 25, hlo_text: str | None = None) -> dict:
  """Traces `steps` calls of `step()` (each blocking until done) and returns their breakdown."""
  folder = tempfile.mkdtemp(prefix='unet_jax_trace_')
  try:
    with jax.profiler.trace(folder):
      for _ in range(steps):
        step()
    return read_trace(newest_trace(folder), steps, top=top, hlo_text=hlo_text)
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def format_breakdown(result: dict) -> str:
  shares = sorted(((v['share'] or 0, kind) for kind, v in result['kinds'].items()), reverse=True)
  kinds = ', '.join(f'{kind} {100 * share:.0f}%' for share, kind in shares if share >= 0.005)
  return (f"{result['kernel_ms_per_step']:.2f} ms of kernels per step "
          f"({result['busy_ms_per_step']:.2f} ms busy; {result['source']}): {kinds}")
