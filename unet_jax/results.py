"""What runs and evaluations write for other tools, and how to read it back: one schema per file.

The experiments layer (sweeps, comparisons, figures) reads runs only through these files, so
their fields are documented here and nowhere else. Every file is written atomically (a temporary
name, then a rename): a reader never sees half a file, also after a crash.

1. The run summary, `<workdir>/summary.json` (`"kind": "run"`), written by the training loop
   when it starts training ("running", at the step it starts from), at every validation and
   when the run ends:

     kind, schema_version    "run", RUN_SCHEMA_VERSION
     state                   "running" | "stopped" (ended early, resumable) | "finished" | "failed"
     error                   the exception, when state is "failed"
     step, num_train_steps   steps done, steps asked for
     wall_time_s             seconds in the training loop, summed over the run's sessions
     train_images_per_sec    training images per second over the timed steps (compiling steps
                             and validation excluded), all sessions together
     data_wait_fraction      the fraction of those seconds spent waiting for input
     timing                  the sums behind the two: timed_steps, timed_seconds, wait_seconds;
                             and pooled_validation_seconds, native_validation_seconds: the
                             seconds of the latest pass of each kind, its XLA compilations left
                             out (what `time_left` counts per pass)
     num_params, num_batch_stats
     selection               {"metric": config.eval.best_metric, "split": "val"}: what picked best
     latest                  the last validation: {"step", "metrics", "per_image_csv"}
     best                    {"step", "value", "metrics", "per_image_csv"} of the best checkpoint
     final                   like latest, at step num_train_steps; null until the run finishes
     config                  the resolved config; versions: package versions; devices: {"backend",
                             "kind", "count", "processes"}; host: {"cpu", "usable_cores"} (the
                             CPU's model name and the cores the run could use: on CPU its last
                             bits depend on both); updated: ISO 8601 time of the write
     init_from               {"workdir", "checkpoint", "step", "val_images_in_source_training"}
                             of the run whose parameters this one started from
                             (`config.init_from`; the last: how many of this run's validation
                             images that run trained on, null where unknown), or null
     environments            [{"from_step", "devices", "host", "versions"}]: each environment
                             the run trained in, from the step it resumed there (one entry
                             unless a resume changed devices, packages or, on CPU, the CPU;
                             such a run does not end to the last bit as an uninterrupted one)

   `metrics` holds the native per-image macro averages under their names ("threshold_jaccard",
   "jaccard", "dice", ...; unet_jax.native_scoring.METRICS) and the pooled S x S pass of the same
   step, when it ran, as "pooled_<name>". `per_image_csv` is relative to the workdir.

2. An evaluation summary, `<output>/summary.json` (`"kind": "evaluation"`), by `unet_jax.evaluate`:

     kind, schema_version    "evaluation", EVAL_SCHEMA_VERSION
     overall                 the macro threshold Jaccard (the key the official scorer uses)
     macro_average           {metric: mean over images}; pooled: metrics of the summed counts
     num_images, per_image_csv ("per_image.csv", beside it)
     source                  what was scored: {"workdir", "split" ("folder" for --images,
                             with "images" and "truth", the two folders),
                             "checkpoint", "step", "selected_on_this_split",
                             "images_in_training_split" (of a folder: by id; null where the
                             run's data is not there to tell), "threshold_tuned_on_this_split",
                             "resize_policy", "image_size", "tta", "threshold", ...} for a run,
                             {"predictions", "truth"} for a folder of masks
     versions, host          as in the run summary: the packages, the CPU and its cores
     devices                 as in the run summary, for a run's checkpoint (where it ran)

3. Per-image CSVs (`CSV_COLUMNS`): one row per image, its confusion counts at native resolution
   and its metrics, floats written exactly (repr), so averages recompute to the last bit.
   A run writes one per native validation, `<workdir>/validation/step_<step>.csv`.
"""

import contextlib
import csv
import datetime
import io
import json
import os
from collections.abc import Sequence
from importlib import metadata

from unet_jax import cli, metrics, native_scoring

RUN_SCHEMA_VERSION = 1
EVAL_SCHEMA_VERSION = 1
RUN_STATES = ('running', 'stopped', 'finished', 'failed')
CSV_COLUMNS = ('image_id', 'height', 'width', *native_scoring.COUNTS, *native_scoring.METRICS)
RUN_SUMMARY = 'summary.json'
VALIDATION_DIR = 'validation'
METRICS_JSONL = 'metrics.jsonl'  # Every logged scalar, a JSON line per step (metric_logging).
CHECKPOINTS_DIR = 'checkpoints'  # Orbax's, a folder per step (checkpointing).
_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'tensorflow-cpu', 'tensorflow',
             'numpy', 'unet-jax')


@contextlib.contextmanager
def atomic_path(path: str, temp_name: str | None = None):
  """Yields a hidden temporary path in `path`'s folder for the caller to write, renamed to
  `path` when the block ends and removed if it raises: never a half-written file.

  The temporary is `.<name>.<pid>.tmp`, or `temp_name` where a reader of the folder must not take
  even a hidden file of that name for one of its own (TensorBoard reads every file whose name
  holds 'tfevents'), since a process killed mid-write (kill -9) leaves it behind.
  """
  folder = os.path.dirname(path) or '.'
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, temp_name or f'.{os.path.basename(path)}.{os.getpid()}.tmp')
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_atomic(path: str, data: str | bytes, before_rename=None) -> None:
  """Writes `data` (text as UTF-8, or bytes) to `path` through `atomic_path`; `before_rename`
  runs once the data is on disk, before the rename."""
  with atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:
      f.write(data.encode('utf-8') if isinstance(data, str) else data)
    if before_rename:
      before_rename()


def write_json(path: str, value: dict, before_rename=None) -> None:
  write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + '\n', before_rename)


def read_json(path: str) -> dict:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


# ---------------------------------------------------------------------------------------------
# Per-image CSVs.


def write_per_image_csv(path: str, scores: Sequence[native_scoring.ImageScore]) -> None:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator='\n')
  writer.writeheader()
  for score in scores:
    writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in score.row().items()})
  write_atomic(path, out.getvalue())


def read_per_image_csv(path: str) -> list[native_scoring.ImageScore]:
  """A per-image CSV back into ImageScores (the counts; metrics are recomputed from them)."""
  with open(path, newline='', encoding='utf-8') as f:
    return [
      native_scoring.ImageScore(row['image_id'], *(int(row[k]) for k in
                                                   ('height', 'width', *native_scoring.COUNTS)))
      for row in csv.DictReader(f)
    ]


def validation_csv(step: int) -> str:
  """A run's per-image CSV of the native validation at `step`, relative to its workdir."""
  return os.path.join(VALIDATION_DIR, f'step_{step}.csv')


# ---------------------------------------------------------------------------------------------
# Evaluation summaries.


def write_evaluation(scores: Sequence[native_scoring.ImageScore], output_dir: str,
                     source: dict, devices: dict | None = None) -> dict:
  """Writes `per_image.csv` and the evaluation summary under `output_dir`; returns the summary.
  `devices`: those the model ran on, for a run's checkpoint."""
  summary = {'kind': 'evaluation', 'schema_version': EVAL_SCHEMA_VERSION,
             **native_scoring.summarize(scores), 'per_image_csv': 'per_image.csv',
             'source': source, 'versions': package_versions(), 'host': host(),
             **({'devices': devices} if devices else {})}
  write_per_image_csv(os.path.join(output_dir, 'per_image.csv'), scores)
  write_json(os.path.join(output_dir, 'summary.json'), summary)
  return summary


# ---------------------------------------------------------------------------------------------
# Run summaries.


def package_versions() -> dict[str, str]:
  import platform

  versions = {'python': platform.python_version()}
  for name in _PACKAGES:
    with contextlib.suppress(metadata.PackageNotFoundError):
      versions[name] = metadata.version(name)
  return versions


def devices() -> dict:
  """{"backend", "kind", "count", "processes"}: the devices this process computes on."""
  import jax

  return {'backend': jax.default_backend(), 'kind': jax.devices()[0].device_kind,
          'count': jax.device_count(), 'processes': jax.process_count()}


def host() -> dict:
  """{"cpu": the CPU's model name, "usable_cores": cores this process may run on}: on CPU, what
  a run's last bits depend on besides its config and seed (XLA:CPU compiles for the CPU in hand
  and splits its sums over the threads it has)."""
  import platform

  cpu = platform.processor()
  with contextlib.suppress(OSError, StopIteration), open('/proc/cpuinfo', encoding='utf-8') as f:
    cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return {'cpu': cpu, 'usable_cores': cores}


def has_checkpoint(workdir: str) -> bool:
  """Whether `<workdir>/checkpoints` holds a step (orbax names each step's folder by its
  number; a save not finished has a longer name): asked without orbax or JAX."""
  folder = os.path.join(workdir, CHECKPOINTS_DIR)
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def read_run_summary(workdir: str) -> dict | None:
  """A run's summary.json, or None when the run has written none yet."""
  path = os.path.join(workdir, RUN_SUMMARY)
  if not os.path.exists(path):
    return None
  summary = read_json(path)
  if summary.get('kind') != 'run':
    raise ValueError(f'{path} is not a run summary (kind={summary.get("kind")!r}).')
  return summary


def last_training_log(workdir: str, tail_bytes: int = 65536) -> dict | None:
  """The last training row of `<workdir>/metrics.jsonl` ({'step', 'train_loss',
  'train_images_per_sec', ...}), or None. A running run's summary.json is written at its
  validations; this row, at every `config.log_every_steps`, says where it is now. Read from the
  file's end only (a long run's file has thousands of rows); a half-written last line is skipped.
  """
  path = os.path.join(workdir, METRICS_JSONL)
  try:
    with open(path, 'rb') as f:
      f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
      lines = f.read().decode('utf-8', errors='replace').splitlines()
  except OSError:
    return None
  for line in reversed(lines):
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      continue  # Half-written, or cut by the seek.
    if isinstance(row, dict) and 'train_loss' in row and isinstance(row.get('step'), int):
      return row
  return None


# The kinds of validation pass (`config.eval`): {kind: its cadence field}.
VALIDATION_CADENCE = {'pooled': 'pooled_every_steps', 'native': 'every_steps'}


def validation_seconds_field(kind: str) -> str:
  """The timing field holding the seconds of a run's latest validation pass of `kind`."""
  return f'{kind}_validation_seconds'


def validations_due(first_step: int, last_step: int, every: int) -> int:
  """How many of the steps first_step..last_step validate: each multiple of `every` (none when
  `every` <= 0) and the last step, as the training loop does."""
  first_step = max(first_step, 1)  # Step 0 is the initialization: nothing validates it.
  if first_step > last_step:
    return 0
  multiples = last_step // every - (first_step - 1) // every if every > 0 else 0
  return multiples + (0 if every > 0 and last_step % every == 0 else 1)


def time_left(step: int, last: int, seconds_per_step: float, eval_config: dict, timing: dict,
              first_unvalidated: int) -> tuple[float, int]:
  """A run's time left: (seconds, validation passes not counted in them). The seconds are its
  steps after `step` up to `last` at `seconds_per_step`, and each validation pass still due (from
  step `first_unvalidated` on; cadences from the run's `config.eval`) at the seconds of the run's
  latest pass of its kind (`timing`, compilations left out). The passes of a kind not timed yet
  are not counted."""
  seconds, untimed = max(0, last - step) * seconds_per_step, 0
  for kind, cadence in VALIDATION_CADENCE.items():
    every = eval_config.get(cadence)
    due = 0 if every is None else validations_due(first_unvalidated, last, every)
    pass_seconds = timing.get(validation_seconds_field(kind))
    if pass_seconds is None:
      untimed += due
    else:
      seconds += due * pass_seconds
  return seconds, untimed


def format_time_left(seconds: float, untimed: int) -> str:
  """`time_left`'s answer as progress lines print it: '0:12:40 + 3 validations not timed yet'."""
  return cli.clock(seconds) + (
      f' + {untimed} validation{"s" if untimed > 1 else ""} not timed yet' if untimed else '')


def write_run_summary(workdir: str, summary: dict, before_rename=None) -> None:
  """Writes `<workdir>/summary.json` atomically (`before_rename`: the fault tests' hook)."""
  if summary['state'] not in RUN_STATES:
    raise ValueError(f'state={summary["state"]!r} is not one of {RUN_STATES}.')
  summary = {**summary, 'kind': 'run', 'schema_version': RUN_SCHEMA_VERSION,
             'updated': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}
  write_json(os.path.join(workdir, RUN_SUMMARY), summary, before_rename)


def finished_metrics(workdir: str) -> dict[str, float] | None:
  """The final validation metrics of the run in `workdir` if it trained to its end: its summary
  says 'finished' and the checkpoint of its last step is on disk. None otherwise."""
  summary = read_run_summary(workdir) or {}
  final = summary.get('final')
  if summary.get('state') != 'finished' or not final:
    return None
  step = final.get('step')
  if step != summary.get('num_train_steps') or not os.path.isdir(
      os.path.join(workdir, CHECKPOINTS_DIR, str(step))):
    return None
  return dict(final['metrics'])


def run_ended_text(val_metrics: dict[str, float], workdir: str) -> str:
  """What a training run prints when it ends (or is run again once finished): its final metrics,
  each group in a fixed order, and where its outputs are."""
  # Imported here: this module stays free of ml_collections for the GPU benchmark's processes.
  from unet_jax import run_config

  def ordered(names, prefix=''):
    values = {k[len(prefix):]: v for k, v in val_metrics.items()
              if k.startswith(prefix) and (prefix or not k.startswith('pooled_'))}
    keys = [k for k in names if k in values] + sorted(set(values) - set(names))
    return ', '.join(f'{k} {round(values[k], 4)}' for k in keys)

  return '\n'.join([
      'Final validation, per image at native resolution (the challenge\'s metrics): '
      + ordered(native_scoring.METRICS),
      'Pooled S x S validation: ' + ordered((*metrics.RATIOS, 'loss'), 'pooled_'),
      f'Run summary:     {os.path.join(workdir, RUN_SUMMARY)}',
      f'Checkpoints:     {os.path.join(workdir, CHECKPOINTS_DIR)} (final and best)',
      f'TensorBoard:     tensorboard --logdir {workdir}',
      f'Metrics (JSONL): {os.path.join(workdir, METRICS_JSONL)}',
      f'Config:          {run_config.path(workdir)}',
  ])
