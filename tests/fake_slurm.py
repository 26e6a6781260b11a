"""A fake SLURM on PATH for the tests: `sbatch`, `squeue`, `sacct`, `scancel` and `srun`, as shell
scripts."""

import os
import stat


def install(folder) -> tuple[dict, object, object]:
  """(env, record, queue): a fake `sbatch` on PATH that appends each submission to `record` and
  answers job ids 4242, 4243, ...; a fake `squeue` that prints the file `queue` (SLURM's
  'ID|STATE' lines) and fails while it does not exist; a fake `sacct`, the same for the file
  `folder/accounting.txt` (its 'ID|STATE|EXITCODE' lines), its arguments in `folder/sacct_args`;
  a fake `scancel` that appends its arguments to `folder/scancelled`; and a fake `srun`, which submitit looks for to tell that it is on a SLURM cluster."""
  bin_dir = folder / 'bin'
  bin_dir.mkdir()
  record, queue, counter = folder / 'submitted.txt', folder / 'queue.txt', folder / 'next_id'
  counter.write_text('4242')
  fakes = {
    'sbatch': f'echo "$@" >> {record}\ncat "$@" >> {record}\nid=$(cat {counter})\n'
              f'echo $((id + 1)) > {counter}\necho "Submitted batch job $id"\n',
    'squeue': f'echo "$@" > {folder}/squeue_args\ncat {queue} 2>/dev/null || exit 1\n',
    'sacct': f'echo "$@" > {folder}/sacct_args\n'
             f'cat {folder}/accounting.txt 2>/dev/null || exit 1\n',
    'scancel': f'echo "$@" >> {folder}/scancelled\n',
    'srun': 'exit 1\n',
  }
  for name, text in fakes.items():
    fake = bin_dir / name
    fake.write_text('#!/bin/sh\n' + text)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  return {**os.environ, 'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'}, record, queue
