"""Helpers of the command-line tools: short errors, quiet library logs, a writable output folder,
a progress bar."""

import functools
import gc
import logging
import os
import sys
import tempfile
import time
import traceback

# Where our own `raise` statements live: the package, and beside it in a checkout, the
# experiments and the config files.
_OWN_CODE = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name)
                  + os.sep for name in ('unet_jax', 'experiments', 'configs'))
# The kinds of error our checks of input and config raise; each message names the file or field
# and the fix (experiments/results/bad_inputs.md lists them).
_INPUT_ERRORS = (ValueError, OSError, FloatingPointError)


def _raised_for_the_user(error: BaseException) -> bool:
  """Whether `error` comes from a `raise` statement of our own code (a message written for the
  user), not from a library or a failing call inside our code (a bug, which keeps its trace)."""
  frames = traceback.extract_tb(error.__traceback__)
  if not frames:
    return False
  last = frames[-1]
  return (last.filename.startswith(_OWN_CODE)
          and (last.line or '').lstrip().startswith('raise '))


def short_errors(main):
  """Wraps a command's main: an error our own checks raised for bad input or config ends the
  command with its message alone (`Error: ...` on stderr, exit status 1), not under twenty lines
  of traceback that hide it; Ctrl-C ends it with `Interrupted.` and status 130 (128 + SIGINT, as
  a shell reports it). Any other exception keeps its traceback, as every error does with
  UNET_JAX_TRACEBACK=1 in the environment. (Training stops at its next step on the first Ctrl-C,
  checkpointed: `unet_jax.preemption`; this is the second.)"""

  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except KeyboardInterrupt:
      if os.environ.get('UNET_JAX_TRACEBACK'):
        raise
      print('\nInterrupted.', file=sys.stderr, flush=True)
      return 130
    except _INPUT_ERRORS as error:
      if os.environ.get('UNET_JAX_TRACEBACK') or not _raised_for_the_user(error):
        raise
      print(f'Error: {error}', file=sys.stderr, flush=True)
      return 1

  return wrapped


# absl's help flags (app.HelpFlag and its kin, each also with one dash).
_HELP_FLAGS = {f'{dashes}{name}' for dashes in ('-', '--')
               for name in ('help', 'helpshort', 'helpfull', 'helpxml')} | {'-?'}


def run_absl(main, **run_kwargs) -> None:
  """absl's `app.run` of `short_errors(main)`, except that help asked for exits with status 0:
  absl ends `--help` with status 1, as it ends a wrong call, so `cmd --help && ...` failed; and
  the process ends without its last garbage collection (`skip_the_final_collection`)."""
  from absl import app

  try:
    app.run(short_errors(main), **run_kwargs)
  except SystemExit as stop:
    skip_the_final_collection()
    if stop.code == 1 and _HELP_FLAGS & set(sys.argv[1:]):
      raise SystemExit(0) from None
    raise


def run(main) -> None:
  """`sys.exit(short_errors(main)())`, for the commands that parse their own arguments
  (argparse), ending as `run_absl`'s do (`skip_the_final_collection`)."""
  try:
    status = short_errors(main)()
  finally:
    skip_the_final_collection()
  sys.exit(status)


def skip_the_final_collection() -> None:
  """Called by a command's process as it ends, so that its exit skips the garbage collection of
  all it imported: once TensorFlow is among it, that took 1.3 to 1.6 s at every exit on the
  2-core machine (measured: from the last line printed to the exit of a short training and of
  `evaluate`, 0.2 s with this).

  `gc.freeze` moves every object the collector tracks into a generation it never collects, and
  the interpreter's shutdown runs one last collection, which then has nothing to visit. What a
  command must finish at exit finishes as before: its files are written and closed, orbax's
  saves waited for and its writers closed before its main returns; atexit handlers and
  `weakref.finalize` callbacks still run (after this, before that collection); objects freed by
  reference counting are freed as before. Only garbage in reference cycles is left uncollected,
  and the process ends with it. Never call it in a process that goes on (a test, a notebook):
  what it froze would never be collected.
  """
  gc.freeze()


class LibraryNoise(logging.Filter):
  """Drops what libraries log that says nothing to a user of our commands, keeping their warnings:

  - orbax's INFO chatter (a dozen lines per save or restore), and its warning for each periodic
    save (no selection metric: not a best candidate, which is how we save them);
  - JAX's INFO line for each backend it tried and lacks ("Unable to initialize backend 'tpu':
    INTERNAL: Failed to open libtpu.so" on every machine without a TPU): JAX logs only the
    backends it may skip quietly at INFO, and a missing backend that was asked for still fails;
  - a library's error log of a Ctrl-C that reached it (orbax logs "Save Finalize thread failed"
    with twenty lines of traceback when a second Ctrl-C interrupts its wait for a save, which
    its thread finishes): the command says `Interrupted.` (`short_errors`).
  """

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
      return False
    if '/orbax/' in record.pathname:
      return (record.levelno >= logging.WARNING
              and 'did not provide metrics' not in record.getMessage())
    return not (record.levelno < logging.WARNING and record.name.startswith('jax')
                and record.getMessage().startswith('Unable to initialize backend'))


def quiet_library_logs() -> None:
  """Adds `LibraryNoise` to absl's handler, through which every command logs."""
  from absl import logging as absl_logging

  absl_logging.get_absl_handler().addFilter(LibraryNoise())


def define_inference_flags(prefix: str = '') -> None:
  """--tta, --threshold, --[no]largest_component, --[no]fill_holes: each overrides the run's
  `config.inference` (`unet_jax.inference.settings`) when given. `prefix` starts each help."""
  from absl import flags

  # A string checked by `inference.settings`, not an enum of `inference.TTA_VIEWS`: defining
  # the flags must not import the model and TensorFlow (`evaluate --help` in a second).
  flags.DEFINE_string('tta', None, f"{prefix}test-time augmentation: 'none', 'flips' (4 views, "
                      "4x the compute) or 'dihedral' (the 8 flips and rotations of training); "
                      "default: the run's config.inference.tta.")
  flags.DEFINE_float('threshold', None, f'{prefix}lesion where the native-resolution probability '
                     '>= this; default: the threshold `evaluate --tune_threshold` recorded in the '
                     "workdir if any, else the run's config.inference.threshold.")
  flags.DEFINE_bool('largest_component', None, f'{prefix}keep only the largest lesion region; '
                    "default: the run's config.inference.largest_component.")
  flags.DEFINE_bool('fill_holes', None, f'{prefix}fill holes in lesion regions; default: the '
                    "run's config.inference.fill_holes.")


def unexpanded_home(path: str) -> str | None:
  """What `path` meant if it starts with a '~' the shell left as it is (it expands one only at
  the start of a word: `--workdir=~/runs` reaches us as '~/runs'), else None. A folder actually
  named '~' here is taken as it is."""
  head = path.split(os.sep)[0]
  if not head.startswith('~') or os.path.lexists(head):
    return None
  expanded = os.path.expanduser(path)
  return expanded if expanded != path else None


def home_hint(path: str) -> str:
  """'' or, for a path with an unexpanded '~', a clause naming the path it meant."""
  meant = unexpanded_home(path)
  return f" (the shell leaves a '~' after '=' as it is: did you mean {meant!r}?)" if meant else ''


def refuse_unexpanded_home(path: str, named: str, error: type[Exception] = ValueError) -> None:
  """Raises `error` naming the path meant if `path` starts with an unexpanded '~' (for a path
  that would be made or written: TFDS and `os.makedirs` would make a folder named '~' here);
  `named` says where it was given, e.g. "--root '~/x'"."""
  if meant := unexpanded_home(path):
    raise error(f"{named} starts with a '~' the shell left as it is (it expands one only at the "
                f"start of a word, not after '='); give {meant!r}.")


def check_can_be_folder(folder: str, what: str) -> None:
  """Raises OSError, naming `what` (a flag, 'The workdir') and the fix, unless `folder` is a
  folder or can be made one that is written in: its nearest existing part must be a writable
  folder. Creates nothing, so it can come before the checks that must leave nothing behind.

  A path starting with an unexpanded '~' is refused: it would make a folder named '~' in the
  current one, which a user deleting it by that name (`rm -rf ~`) would mistake for home."""
  refuse_unexpanded_home(folder, f'{what} {folder!r}', OSError)
  path = os.path.abspath(folder)
  while not os.path.lexists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    if path == os.path.abspath(folder):
      raise OSError(f'{what} {folder!r} is a file, not a folder; give a folder, or move the file.')
    raise OSError(f'{what} {folder!r} cannot be made: {path!r} in its path is a file; give '
                  'another folder.')
  if not os.access(path, os.W_OK | os.X_OK):
    raise OSError(f'{what} {folder!r} is not writable: no permission to write in {path!r}; '
                  'give a folder of yours.')


def check_can_be_file(path: str, what: str) -> None:
  """Raises OSError, naming `what` (a flag) and the fix, unless `path` can be written as a file:
  not a folder, and its folder is one or can be made one (`check_can_be_folder`). For an output
  written at the end of a long command (a benchmark's JSON, a figure): checked at its start."""
  if os.path.isdir(path):
    raise OSError(f"{what} {path!r} is a folder: give the file's path in it.")
  check_can_be_folder(os.path.dirname(path) or os.curdir, f'{what} {path!r}: its folder')


def ensure_writable(folder: str, flag: str) -> None:
  """Creates `folder` and checks a file can be written there, before any work is done: an
  unwritable output fails in a second, with the flag named, not after an hour of predicting."""
  check_can_be_folder(folder, flag)
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix='.write_test_'):
      pass
  except OSError as error:
    raise OSError(f'{flag} {folder!r} is not a writable folder: {error.strerror or error}.') \
        from None


def clock(seconds: float) -> str:
  """H:MM:SS, for progress lines and tables."""
  seconds = int(max(0, seconds))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


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
            f'ETA {clock(eta)} {note}').rstrip()
