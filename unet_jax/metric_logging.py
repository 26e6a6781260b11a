"""Where metrics go: TensorBoard and the console through CLU, plus `metrics.jsonl`.

`metrics.jsonl` holds one JSON object per logged step, `{"step": ..., "<name>": value, ...}`, so a
run can be compared with plain Python (or `pandas.read_json(path, lines=True)`) without
TensorBoard.
"""

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from clu import metric_writers
from clu.metric_writers import interface


class JsonlWriter(interface.MetricWriter):
  """A CLU MetricWriter that appends scalars (and hparams) to a JSON-lines file."""

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
  """TensorBoard events + console logs (CLU) and metrics.jsonl; only process 0 writes files."""
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if jax.process_index() > 0:
    return writer
  return metric_writers.MultiWriter([writer, JsonlWriter(os.path.join(workdir, 'metrics.jsonl'))])


def read_jsonl(path: str) -> list[dict]:
  """The rows of a metrics.jsonl file."""
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]
