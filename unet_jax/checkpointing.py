"""Orbax checkpoints of the train state: the last K, the best one, and which one a command loads.

One `CheckpointManager` per run (`<workdir>/checkpoints/<step>/`). What it keeps:
  * the last `max_to_keep` checkpoints (resume reads the latest), and
  * the best one: a checkpoint saved because the validation selection metric improved carries
    that value as orbax metrics ({'selection': value}), and orbax's `BestN` policy keeps the one
    with the highest value whatever the pruning of the last K. Checkpoints saved only because of
    their period carry no metrics and are never taken for the best.
The training loop decides when to save (`save(..., force=True)`): no step-1 checkpoint, unlike
orbax's default initial-save policy.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so an
interrupted save never leaves a checkpoint that looks finished.
"""

import logging
import os

import jax
import orbax.checkpoint as ocp

from unet_jax import faults

SELECTION = 'selection'
# What `--checkpoint` accepts besides a step number.
CHOICES = ('best', 'final', 'latest')


def _selection(metrics) -> float:
  return float(metrics[SELECTION])


def create_manager(directory: str, *, max_to_keep: int) -> ocp.CheckpointManager:
  """The training run's manager: keeps the last `max_to_keep` checkpoints and the best one (see
  above). Only the process that trains the run may open one: it deletes what it does not keep."""
  policies = ocp.checkpoint_managers
  keep = policies.AnyPreservationPolicy([
      policies.LatestN(n=max_to_keep),
      policies.BestN(get_metric_fn=_selection, reverse=False, n=1,
                     keep_checkpoints_without_metrics=False),
  ])
  # cleanup_tmp_directories: a save killed before its rename leaves a temporary directory, which
  # orbax never takes for a checkpoint; the next run removes it.
  options = ocp.CheckpointManagerOptions(best_fn=_selection, best_mode='max',
                                         preservation_policy=keep, create=True,
                                         cleanup_tmp_directories=True)
  faults.install_checkpoint_hook()
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def open_for_reading(directory: str) -> ocp.CheckpointManager:
  """A manager that reads a run's checkpoints and changes nothing (`evaluate`, `predict`, a run
  started from another's): the run may be training now, and a training run's manager would
  delete the temporary folder of the checkpoint it is saving, or make a folder where there was
  none."""
  options = ocp.CheckpointManagerOptions(best_fn=_selection, best_mode='max', read_only=True,
                                         create=False, save_interval_steps=0)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


class _WithoutReadOnlyNotice(logging.Filter):
  """Orbax warns 'Given directory is read only=...' each time a manager opens read-only, as all
  of ours that read do: it says nothing wrong, and would come before every evaluation."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith('Given directory is read only')


logging.getLogger('absl').addFilter(_WithoutReadOnlyNotice())


def save(manager: ocp.CheckpointManager, step: int, state, *, selection: float | None = None):
  """Saves `state` at `step`; `selection` marks it as the new best with that metric value."""
  metrics = None if selection is None else {SELECTION: float(selection)}
  manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)


def best(manager: ocp.CheckpointManager) -> tuple[int, float] | None:
  """(step, selection value) of the best checkpoint, or None if none was saved as a best."""
  scored = [(_selection(m), step) for step in manager.all_steps()
            if (m := manager.metrics(step)) is not None]
  if not scored:
    return None
  value, step = max(scored)  # On a tie, the later step, as orbax's BestN keeps.
  return step, value


def restore(manager: ocp.CheckpointManager, step: int, target):
  """The checkpoint of `step` restored into the structure, dtypes and shardings of `target`.

  A checkpoint of another model fails with the config fields to compare, not only orbax's
  shape message.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  stored = {path_names(path): leaf.shape for path, leaf in
            jax.tree.flatten_with_path(manager.item_metadata(step))[0]}
  for path, leaf in jax.tree.flatten_with_path(abstract)[0]:
    name = path_names(path)
    if name in stored and tuple(stored[name]) != tuple(leaf.shape):
      raise ValueError(
          f'The checkpoint of step {step} in {manager.directory} does not fit the model of this '
          f'config: {"/".join(name)} is {tuple(stored[name])} in the checkpoint and '
          f'{tuple(leaf.shape)} in this model. The checkpoint was written with another '
          'config.model; compare the config.json of its run with this config.')
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def path_names(path) -> tuple[str, ...]:
  """A pytree path as plain names, the same for a TrainState's attributes and a stored dict."""
  return tuple(str(getattr(k, 'name', getattr(k, 'key', getattr(k, 'idx', k)))) for k in path)


def restore_latest(manager: ocp.CheckpointManager, target):
  """(state, step) of the latest checkpoint, or (target, None) when there is none yet."""
  step = manager.latest_step()
  if step is None:
    return target, None
  return restore(manager, step, target), step


def resolve_step(manager: ocp.CheckpointManager, which: str, num_train_steps: int,
                 option: str = '--checkpoint') -> int:
  """The step that `--checkpoint WHICH` names: 'best', 'final', 'latest' or a step number;
  errors name `option`, where WHICH was given."""
  steps = manager.all_steps()
  where = os.fspath(manager.directory)
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {where!r}; train the run first.')
  if which == 'latest':
    return max(steps)
  if which == 'final':
    if num_train_steps not in steps:
      raise ValueError(f'The run in {where!r} has not finished: its latest checkpoint is step '
                       f'{max(steps)} of config.num_train_steps={num_train_steps}. Use '
                       f'{option}=latest, or train it to the end.')
    return num_train_steps
  if which == 'best':
    found = best(manager)
    if found is None:
      raise ValueError(f'No best checkpoint in {where!r} (none was validated yet); use '
                       f'{option}=latest.')
    return found[0]
  try:
    step = int(which)
  except ValueError:
    raise ValueError(f'{option}={which!r} is not one of {CHOICES} or a step number.') from None
  if step not in steps:
    raise ValueError(f'No checkpoint of step {step} in {where!r}; it holds steps {steps}.')
  return step
