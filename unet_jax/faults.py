"""A test-only hook that kills or signals a training process at a chosen point.

The fault tests (tests/faults_test.py) and the soak (`experiments/fault_soak.py`) start real
training subprocesses with `UNET_JAX_FAULTS` set, e.g. `kill@checkpoint:16,term@step:6`: each
entry is ACTION@PHASE:STEP, where ACTION is 'kill' (SIGKILL, as `kill -9` or an out-of-memory
kill), 'term' (SIGTERM, as a scheduler's preemption) or 'int' (SIGINT, as Ctrl-C), and PHASE is
where in step STEP it fires:

  step        after the step's computation was dispatched, before it completed (mid-step)
  checkpoint  inside orbax's save of that step, after the files are written and before the
              temporary directory is renamed into place (mid-checkpoint)
  validation  halfway through the native validation of that step (mid-validation)
  summary     while summary.json is written, before its temporary file is renamed

Without the variable, `fire` is a dictionary lookup that finds nothing; the orbax patch is only
installed when a 'checkpoint' fault is asked for.
"""

import os
import signal

ENV = 'UNET_JAX_FAULTS'
PHASES = ('step', 'checkpoint', 'validation', 'summary')
_ACTIONS = {'kill': signal.SIGKILL, 'term': signal.SIGTERM, 'int': signal.SIGINT}


def parse(text: str) -> dict[tuple[str, int], str]:
  faults = {}
  for entry in filter(None, (e.strip() for e in text.split(','))):
    try:
      action, where = entry.split('@')
      phase, step = where.split(':')
      step = int(step)
    except ValueError:
      raise ValueError(f'{ENV}: {entry!r} is not ACTION@PHASE:STEP.') from None
    if action not in _ACTIONS or phase not in PHASES:
      raise ValueError(f'{ENV}: {entry!r}: ACTION is one of {tuple(_ACTIONS)}, PHASE one of '
                       f'{PHASES}.')
    faults[(phase, step)] = action
  return faults


_FAULTS = parse(os.environ.get(ENV, ''))


def fire(phase: str, step: int) -> None:
  """Kills or signals this process if a fault was asked for at (phase, step)."""
  action = _FAULTS.get((phase, int(step)))
  if action:
    os.kill(os.getpid(), _ACTIONS[action])


def install_checkpoint_hook() -> None:
  """Makes orbax's atomic rename fire the 'checkpoint' faults (only when some are asked for)."""
  if not any(phase == 'checkpoint' for phase, _ in _FAULTS):
    return
  from orbax.checkpoint._src.path import atomicity

  cls = atomicity.AtomicRenameTemporaryPath
  if getattr(cls.finalize, '_unet_jax_fault', False):
    return
  original = cls.finalize

  async def finalize(self, *args, **kwargs):
    name = os.path.basename(os.fspath(self._final_path))
    if name.isdigit():
      fire('checkpoint', int(name))
    return await original(self, *args, **kwargs)

  finalize._unet_jax_fault = True
  cls.finalize = finalize
