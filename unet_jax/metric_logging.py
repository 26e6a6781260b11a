"""Where metrics go: TensorBoard event files (CLU's SummaryWriter) and `metrics.jsonl`.

`metrics.jsonl` holds one JSON object per logged step, `{"step": ..., "<name>": value, ...}`, so a
run can be compared with plain Python (or `pandas.read_json(path, lines=True)`) without
TensorBoard. The console line of each logged step is the training loop's own (one line per
step; CLU's LoggingWriter would print the same scalars a second time, so it is not used).

A resumed run restarts from its last checkpoint, which may be older than the last logged step.
`truncate_after(workdir, step)` first drops what the interrupted session logged after that step,
from metrics.jsonl and from the TensorBoard event files, so each step appears once in both (a
half-written last line or record, left by a crash, is dropped too).
"""

import glob
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from clu import metric_writers
from clu.metric_writers import interface

from unet_jax import results

JSONL = results.METRICS_JSONL
_EVENTS = 'events.out.tfevents.*'


class JsonlWriter(interface.MetricWriter):
  """A CLU MetricWriter that appends scalars to a JSON-lines file."""

  def __init__(self, path: str):
    self._file = open(path, 'a', encoding='utf-8')  # noqa: SIM115 (closed in close()).

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    row = {'step': int(step)}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._file.write(json.dumps(row) + '\n')

  def write_summaries(self, step: int, values: Mapping[str, Any], metadata=None):
    pass  # Generic tensor summaries have no JSON form; scalars arrive through write_scalars.

  def write_hparams(self, hparams: Mapping[str, Any]):
    pass  # The resolved config is written to config.json in full instead.

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard events and metrics.jsonl from process 0; other processes write nothing."""
  if jax.process_index() > 0:
    return metric_writers.MultiWriter([])
  return metric_writers.MultiWriter([metric_writers.SummaryWriter(workdir),
                                     JsonlWriter(os.path.join(workdir, JSONL))])


def hparam_values(config_dict: dict) -> dict:
  """The config flattened to TensorBoard hparams ('optim.lr': 0.001, ...): numbers, strings and
  booleans as they are, anything else (tuples) as text."""
  flat = {}
  for key, value in config_dict.items():
    if isinstance(value, dict):
      flat.update({f'{key}.{k}': v for k, v in hparam_values(value).items()})
    elif isinstance(value, (bool, int, float, str)):
      flat[key] = value
    else:
      flat[key] = str(value)
  return flat


def write_hparams(workdir: str, config_dict: dict, metrics: list[str]) -> None:
  """Declares the run's hyperparameters and metrics to TensorBoard's HParams dashboard.

  CLU's `write_hparams` writes the values only, so the dashboard has no metric columns; here
  the experiment config (`hparams_config`, with `metrics` declared) and the run's values
  (`hparams`) both go into the run's own events, where the dashboard finds them for every run of
  a sweep under one `--logdir`. Process 0 only.
  """
  if jax.process_index() > 0:
    return
  import tensorflow as tf
  from tensorboard.plugins.hparams import api as hp

  values = hparam_values(config_dict)
  writer = tf.summary.create_file_writer(workdir)
  with writer.as_default():
    hp.hparams_config(hparams=[hp.HParam(name) for name in sorted(values)],
                      metrics=[hp.Metric(tag) for tag in metrics])
    hp.hparams(values)
  writer.close()


def read_jsonl(path: str) -> list[dict]:
  """The rows of a metrics.jsonl file; a half-written last line (a crash mid-write) is skipped."""
  rows = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      if not line.strip():
        continue
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        if line.endswith('\n'):
          raise ValueError(f'{path}: a malformed line that is not the last: {line!r}') from None
  return rows


def truncate_after(workdir: str, step: int) -> None:
  """Drops every metric logged after `step` from metrics.jsonl and the TensorBoard events."""
  path = os.path.join(workdir, JSONL)
  if os.path.exists(path):
    rows = [r for r in read_jsonl(path) if r['step'] <= step]
    results.write_atomic(path, ''.join(json.dumps(r) + '\n' for r in rows))
  for events in sorted(glob.glob(os.path.join(workdir, _EVENTS))):
    _truncate_events(events, step)


def _truncate_events(path: str, step: int) -> None:
  """Rewrites one event file without the events after `step` (or a torn last record)."""
  import tensorflow as tf
  from tensorboard.compat.proto import event_pb2

  kept, dropped = [], False
  try:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      if event_pb2.Event.FromString(record).step <= step:
        kept.append(record)
      else:
        dropped = True
  except tf.errors.DataLossError:  # A record cut short by a crash.
    dropped = True
  if not dropped:
    return
  # A temporary whose name lacks 'tfevents': TensorBoard reads every file whose name holds it,
  # hidden ones too, and would read one a kill left mid-rewrite as a second copy of the events.
  temp_name = f'.events-rewrite.{os.getpid()}.tmp'
  with results.atomic_path(path, temp_name) as tmp, tf.io.TFRecordWriter(tmp) as writer:
    for record in kept:
      writer.write(record)
