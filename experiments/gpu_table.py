r"""The GPU check's machine probe and its closing table (experiments/gpu_check.sh).

  python experiments/gpu_table.py --machine FILE    # nvidia-smi and package versions, as JSON
  python experiments/gpu_table.py DIR [DIR...]      # the table of the JSON files in DIR(s)

The table reads each part's JSON from the first DIR that has it (this call's, then an earlier
call's), so two calls of the check give one table, and says which targets of the GPU issue are
met: >= 2,000 training images/s (the seed's model, 224 px, bf16, its best batch), >= 1.3x the
PyTorch twin on equal work (no augmentation on either side), first-step compile < 60 s, warm
restart < 10 s.
"""

import argparse
import json
import os
import platform
import subprocess
import sys

RESTART_PARTS = ('imports_s', 'backend_start_s', 'train_state_s', 'trace_and_lower_s',
                 'compile_or_load_s', 'run_s')  # experiments/gpu_probes.py first_step's.
# The restart probe's runs (gpu_probes.RESTART_RUNS), as the table names them.
RESTART_RUNS = {'cold': 'cold', 'warm': 'warm',
                'warm_backend_beside_imports': 'warm, backend started beside the imports'}


def machine(path: str) -> dict:
  info = {}
  try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version',
                          '--format=csv,noheader'], capture_output=True, text=True, timeout=60,
                         check=True)
    name, memory, driver = (v.strip() for v in out.stdout.strip().splitlines()[0].split(','))
    info.update(gpu=name, gpu_memory=memory, driver=driver)
  except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
    info['gpu'] = f'none ({type(error).__name__})'
  info['python'] = platform.python_version()
  for module in ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'torch', 'numpy'):
    try:
      info[module] = __import__(module, fromlist=['_']).__version__
    except Exception as error:
      info[module] = f'missing ({type(error).__name__})'
  # Renamed whole: a part's timeout leaves no torn file for the table to misread.
  temp = os.path.join(os.path.dirname(path), f'.{os.path.basename(path)}.tmp')
  with open(temp, 'w', encoding='utf-8') as f:
    json.dump(info, f, indent=1)
  os.replace(temp, path)
  return info


def _load(dirs, name):
  for folder in dirs:
    path = os.path.join(folder, f'{name}.json')
    if os.path.exists(path):
      with open(path, encoding='utf-8') as f:
        return json.load(f)
  return None


def _rows(result, **match):
  if not result or 'rows' not in result:
    return []
  return [r for r in result['rows'] if all(r.get(k) == v for k, v in match.items())]


def _fmt(value, digits=1):
  return 'n/a' if value is None else f'{value:.{digits}f}'


def _one_line(text, keep: int = 300) -> str:
  """A message as one table cell: its last `keep` characters, on one line, without '|'."""
  return ' '.join(str(text).split())[-keep:].replace('|', '/')


def _errors(name, result) -> list[str]:
  """A line for each configuration that failed (the benchmark keeps the end of its stderr)."""
  return [f"| {name} | failed: {row.get('upsample')}, batch {row.get('batch_size')} | "
          + _one_line(row.get('error', '')) + ' |'
          for row in _rows(result, framework='error')]


def _profile(row) -> str:
  """The traced steps' device time by kind of operation (unet_jax/device_profile.py)."""
  if not row.get('profile'):
    return f"not traced: {row.get('profile_error')}"
  profile = row['profile']
  shares = sorted(((v['share'] or 0, kind) for kind, v in profile['kinds'].items()), reverse=True)
  kinds = ', '.join(f'{kind} {100 * share:.0f}%' for share, kind in shares if share >= 0.005)
  return (f"{kinds} (of {profile['kernel_ms_per_step']:.1f} ms of kernels per step; "
          f"step {_fmt(row.get('step_ms'))} ms)")


def _settings(name, result) -> list[str]:
  """A line naming what a variant changed from the check's own settings (a flag of the
  benchmark's, or XLA_FLAGS), so that a variant's table says what it measured."""
  if not result or 'args' not in result:
    return []
  args, changed = result['args'], []
  for flag, default in (('pool', 'reduce_window'), ('norm_position', 'after_act'),
                        ('upsample', 'resize_conv')):
    if (flag == 'upsample' and name == 'upsample') or (flag == 'pool' and name == 'torch'):
      continue  # The part's own subject; a JAX-only setting.
    if args.get(flag, default) != default:
      changed.append(f"--{flag.replace('_', '-')} {args[flag]}")
  xla_flags = result.get('env', {}).get('xla_flags')
  if xla_flags:
    changed.append(f'XLA_FLAGS={xla_flags}')
  return [f"| {name} | settings other than the check's | {', '.join(changed)} |"] if changed else []


def table(dirs) -> str:
  lines = ['| part | measure | value |', '|---|---|---|']
  info = _load(dirs, 'machine') or {}
  lines.append(f"| machine | card, driver | {info.get('gpu', 'n/a')} "
               f"({info.get('gpu_memory', 'n/a')}), driver {info.get('driver', 'n/a')} |")
  lines.append(f"| machine | versions | python {info.get('python')}, jax {info.get('jax')}, "
               f"jaxlib {info.get('jaxlib')}, flax {info.get('flax')}, optax {info.get('optax')}, "
               f"torch {info.get('torch')} |")
  for name in ('jax-aug', 'jax-noaug', 'b256', 'torch', 'upsample'):
    lines += _settings(name, _load(dirs, name))
  best = {}
  for name, label in (('jax-aug', 'with augmentation'), ('jax-noaug', 'without augmentation'),
                      ('b256', 'with augmentation')):
    result = _load(dirs, name)
    if result and 'skipped' in result:
      lines.append(f'| {name} | batch 256 | skipped: {result["skipped"]} |')
      continue
    if result and result.get('complete') is False:
      lines.append(f'| {name} | cut short by its time limit | only the rows below were measured |')
    lines += _errors(name, result)
    for row in _rows(result, framework='jax'):
      lines.append(
          f"| {name} | {label}, batch {row['batch_size']}: images/s, compile s, MFU, peak GiB | "
          f"{_fmt(row['images_per_s'])}, {_fmt(row['compile_s'])}, "
          f"{_fmt(100 * row['mfu'] if row.get('mfu') is not None else None)}%, "
          f"{_fmt(row.get('peak_gib'), 2)} |")
      if row.get('pipelined_images_per_s'):
        lines.append(f"| {name} | {label}, batch {row['batch_size']}, steps queued back to back "
                     f"(one wait at the end, as training runs them): images/s | "
                     f"{_fmt(row['pipelined_images_per_s'])} |")
      if row.get('compute_floor_images_per_s') and row['batch_size'] == 128:
        lines.append(
            f"| {name} | floors, batch 128: images/s at the matmul's {_fmt(row['matmul_peak_tflops'])}"
            f" TFLOP/s (compute) / at the copy's {_fmt(row['copy_gbps'], 0)} GB/s (memory) | "
            f"{_fmt(row['compute_floor_images_per_s'], 0)} / "
            f"{_fmt(row['memory_floor_images_per_s'], 0)} |")
      if row.get('profile') or row.get('profile_error'):
        lines.append(f"| {name} | device time by kind, batch {row['batch_size']} | "
                     f"{_profile(row)} |")
      key = 'aug' if name != 'jax-noaug' else 'noaug'
      if row['images_per_s']:  # Not a --compile-only row (compile time and memory plan only).
        best[key] = max(best.get(key, 0), row['images_per_s'])
      best.setdefault('compile', []).append(row['compile_s'])
  lines += _errors('torch', _load(dirs, 'torch')) + _errors('upsample', _load(dirs, 'upsample'))
  torch_rows = _rows(_load(dirs, 'torch'), framework='torch')
  noaug_128 = _rows(_load(dirs, 'jax-noaug'), framework='jax', batch_size=128)
  aug_128 = _rows(_load(dirs, 'jax-aug'), framework='jax', batch_size=128)
  ratio, ratio_note = None, ''
  for row in torch_rows:
    if row.get('torch_device'):  # Recorded since 2026-11-30's first GPU session.
      lines.append(f"| torch | ran on | {row['torch_device']}, torch {row.get('torch_version')}, "
                   f"CUDA {row.get('torch_cuda')}, cuDNN {row.get('cudnn')} |")
    how = (f"eager: torch.compile failed, {_one_line(row['torch_compile_error'])}"
           if row.get('torch_compile_error') else f"compile '{row.get('torch_compile')}'")
    lines.append(f"| torch | batch {row['batch_size']}: images/s ({how}) | "
                 f"{_fmt(row['images_per_s'])} |")
    eager = ' (PyTorch eager)' if row.get('torch_compile_error') else ''
    if noaug_128 and row['batch_size'] == 128:
      ratio, ratio_note = noaug_128[0]['images_per_s'] / row['images_per_s'], eager
      lines.append(f'| torch | JAX / PyTorch, equal work (no augmentation), batch 128{eager} | '
                   f'{ratio:.2f}x |')
    if aug_128 and row['batch_size'] == 128:
      lines.append(f"| torch | JAX augmenting / PyTorch not, batch 128 | "
                   f"{aug_128[0]['images_per_s'] / row['images_per_s']:.2f}x |")
    if row.get('pipelined_images_per_s'):
      lines.append(f"| torch | batch {row['batch_size']}, steps queued back to back: images/s | "
                   f"{_fmt(row['pipelined_images_per_s'])} |")
      if noaug_128 and row['batch_size'] == 128 and noaug_128[0].get('pipelined_images_per_s'):
        queued = noaug_128[0]['pipelined_images_per_s'] / row['pipelined_images_per_s']
        lines.append(f'| torch | JAX / PyTorch, equal work, steps queued back to back, batch 128'
                     f'{eager} | {queued:.2f}x |')
  for row in _rows(_load(dirs, 'upsample'), framework='jax'):
    lines.append(f"| upsample | {row['upsample']}, batch {row['batch_size']}: images/s | "
                 f"{_fmt(row['images_per_s'])} |")
  restart = _load(dirs, 'restart')
  if restart:
    for run in (r for r in RESTART_RUNS if r in restart):  # The third since 2026-11-30's.
      lines.append(f'| restart | {RESTART_RUNS[run]}: process start to first step done, s | '
                   f"{_fmt(restart[run]['process_start_to_first_step_s'])} |")
      if 'imports_s' in restart[run]:  # Measured since 2026-11-30's first GPU session.
        state = ('train state restored from the cold run\'s checkpoint'
                 if restart[run].get('state_restored') else 'train state')
        restore = (f" (orbax's restore {restart[run]['restore_s']:.2f} of it)"
                   if 'restore_s' in restart[run] else '')
        lines.append(f'| restart | {RESTART_RUNS[run]}, by part: imports / backend start / '
                     f'{state} / trace and lower / compile or load / run, s | '
                     + ' / '.join(_fmt(restart[run][k], 2) for k in RESTART_PARTS)
                     + f'{restore} |')
  deterministic = _load(dirs, 'determinism')
  if deterministic:
    ops = ('deterministic ops' if deterministic.get('deterministic_ops', True)
           else "XLA's default ops")  # The probe without --deterministic: do steps differ?
    lines.append(f"| determinism | two identical steps, {ops}: bit-identical | "
                 f"{deterministic['bit_identical']} ({deterministic['differing_leaves']} of "
                 f"{deterministic['leaves']} leaves differ) |")
    if deterministic.get('images_per_s'):
      size = deterministic['batch_size']
      without = _rows(_load(dirs, 'jax-aug'), framework='jax', batch_size=size)
      cost = (f"; {without[0]['images_per_s']:.1f} without (jax-aug): "
              f"{deterministic['images_per_s'] / without[0]['images_per_s']:.2f}x"
              if without and without[0].get('images_per_s') else '')
      lines.append(f"| determinism | {ops}, batch {size}: images/s | "
                   f"{_fmt(deterministic['images_per_s'])}{cost} |")
  targets = [
      ('>= 2,000 images/s (best batch, with augmentation)',
       best.get('aug'), lambda v: v >= 2000),
      ('>= 1.3x PyTorch on equal work' + ratio_note, ratio, lambda v: v >= 1.3),
      ('first-step compile < 60 s', max(best['compile']) if best.get('compile') else None,
       lambda v: v < 60),
      ('warm restart < 10 s', restart['warm']['process_start_to_first_step_s'] if restart
       else None, lambda v: v < 10),
  ]
  lines += ['', '| target | measured | met |', '|---|---|---|']
  for name, value, ok in targets:
    lines.append(f"| {name} | {_fmt(value, 2)} | "
                 f"{'not measured' if value is None else ('yes' if ok(value) else 'no')} |")
  return '\n'.join(lines)


def main(argv) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('dirs', nargs='*', metavar='DIR',
                      help="folders of the check's JSON files: this call's, then earlier calls'")
  parser.add_argument('--machine', metavar='FILE',
                      help="write nvidia-smi's card and the package versions to FILE as JSON")
  args = parser.parse_args(argv)
  if args.machine:
    print(json.dumps(machine(args.machine)))
    return 0
  if not args.dirs:
    parser.error('give the folder(s) of the check\'s JSON files, or --machine FILE')
  missing = [d for d in args.dirs if not os.path.isdir(d)]
  if missing:
    parser.error(f'no such folder: {", ".join(missing)}')
  print(table(args.dirs))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
