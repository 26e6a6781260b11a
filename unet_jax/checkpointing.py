"""Orbax checkpoints of the train state: periodic saves, the last K kept, resume from the latest.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so an
interrupted save never leaves a checkpoint that looks finished.
"""

import logging

import jax
import orbax.checkpoint as ocp


def create_manager(directory: str, *, every_steps: int, max_to_keep: int) -> ocp.CheckpointManager:
  """A manager that saves every `every_steps` steps (and whenever forced) and keeps the last K."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=every_steps,
                                         create=True)
  return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, step: int, state, *, force: bool = False) -> bool:
  """Saves `state` at `step` if the interval says so (or `force`); returns whether it saved."""
  return manager.save(step, args=ocp.args.StandardSave(state), force=force)


def restore_latest(manager: ocp.CheckpointManager, target):
  """The latest checkpoint restored into the structure, dtypes and shardings of `target`.

  Returns (state, step), or (target, None) when the directory holds no checkpoint yet.
  """
  step = manager.latest_step()
  if step is None:
    return target, None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract)), step


class QuietOrbax(logging.Filter):
  """Drops orbax's INFO chatter (a dozen lines per save or restore) from a log; keeps warnings.

  Add it to a command's handler: `absl.logging.get_absl_handler().addFilter(QuietOrbax())`.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or '/orbax/' not in record.pathname
