"""Helpers of the command-line tools: a writable output folder, a progress bar."""

import os
import sys
import tempfile
import time


def ensure_writable(folder: str, flag: str) -> None:
  """Creates `folder` and checks a file can be written there, before any work is done: an
  unwritable output fails in a second, with the flag named, not after an hour of predicting."""
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix='.write_test_'):
      pass
  except OSError as error:
    raise OSError(f'{flag} {folder!r} is not a writable folder: {error.strerror or error}.') \
        from None


class Progress:
  """A dependency-free progress bar on stderr: redrawn in place on a terminal, else every ~5%.

  Logs from a batch job stay readable (no carriage-return spam) while a terminal gets a live bar.
  """

  def __init__(self, total: int, label: str = '', stream=None, width: int = 30):
    self.total, self.label, self.width = total, label, width
    self.stream = stream if stream is not None else sys.stderr
    self.done = 0
    self.start = time.perf_counter()
    self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
    self._every = max(1, total // 20)

  def update(self, note: str = '') -> None:
    self.done += 1
    if self.tty:
      self.stream.write('\r' + self._line(note)[:160].ljust(100))
    elif self.done % self._every == 0 or self.done == self.total:
      self.stream.write(self._line(note) + '\n')
    self.stream.flush()

  def close(self) -> None:
    if self.tty:
      self.stream.write('\n')
      self.stream.flush()

  def _line(self, note: str) -> str:
    elapsed = time.perf_counter() - self.start
    rate = self.done / elapsed if elapsed > 0 else 0.0
    filled = self.width * self.done // max(self.total, 1)
    eta = (self.total - self.done) / rate if rate > 0 else 0.0
    bar = '#' * filled + '.' * (self.width - filled)
    return (f'{self.label}[{bar}] {self.done}/{self.total} {rate:.2f} img/s '
            f'ETA {eta:.0f}s {note}').rstrip()
