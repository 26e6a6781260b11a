"""One writer per folder: an exclusive lock held while a run trains, or while a launcher launches.

Two trainings in one workdir (a SLURM job resubmitted while the first still runs, a sweep
launched twice, the same command in a second terminal) would save checkpoints over each other and
interleave their logs, and the run would no longer be what its config and seed say. So training
holds an exclusive lock on its workdir (and `sweep launch` one on its root), and a second writer
stops at once with an error that names the one holding it. Preparing the ISIC dataset holds one
on the TFDS data folder, where a second process waits instead (`waiting`) and then reads what the
first prepared.

The lock is the operating system's (`flock`) on a file in `<folder>/.locks/`: the kernel
releases it when the process ends, however it ends (`kill -9`, a node that dies), so a crash never
leaves a stale lock that someone must delete by hand. The file stays; what it holds (the pid, host
and start time of the last holder) only explains the error. On a filesystem without `flock` the
lock is skipped with a warning.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import time

LOCK_DIR = '.locks'
# `unet_jax.main`'s exit status when its workdir is in use (BSD's EX_CANTCREAT): a sweep's
# launcher records that run as trained elsewhere, not as failed.
EXIT_IN_USE = 73
# What a filesystem without flock answers (NFS without its lock daemon, some FUSE mounts).
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class InUse(OSError):
  """The folder's lock is held by another process."""


@contextlib.contextmanager
def exclusive(folder: str, name: str, *, in_use: str, fix: str, log_warning=None):
  """Holds `<folder>/.locks/<name>` while inside, or raises `InUse`: "`in_use` (pid P on host H,
  since T); `fix`"."""
  os.makedirs(os.path.join(folder, LOCK_DIR), exist_ok=True)
  path = os.path.join(folder, LOCK_DIR, name)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      _lock(fd)
    except BlockingIOError:
      raise InUse(f'{in_use} ({_holder(path)}); {fix}') from None
    except OSError as error:
      if error.errno not in _UNSUPPORTED:
        raise
      if log_warning:
        log_warning('Cannot lock %s (%s): this filesystem has no flock, so a second process '
                    'writing to %s would not be stopped.', path, error.strerror, folder)
    else:
      _write_holder(fd)
    yield path
  finally:
    os.close(fd)  # Releases the lock.


@contextlib.contextmanager
def waiting(folder: str, name: str, *, log_wait, every_s: float = 300.0, poll_s: float = 0.5):
  """Holds `<folder>/.locks/<name>` while inside, waiting for it as long as another process
  holds it: for work that a second process should wait for, then find done, rather than do
  again (preparing a dataset). `log_wait(message)` says who it waits for, and again every
  `every_s` seconds.

  The lock file may be removed by its holder (`remove_lock_file`, when the folder it made must
  not stay), so a lock is taken only on the file the path still names.
  """
  path = os.path.join(folder, LOCK_DIR, name)
  waited_since, last_said = None, 0.0
  while True:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      now = time.monotonic()
      waited_since = waited_since or now
      # Said once its holder has written who it is (it does so right after locking), or after
      # a second without; then every `every_s`.
      holder = _named_holder(path) or (f'{path} is locked' if now - waited_since >= 1 else None)
      if holder and (not last_said or now - last_said >= every_s):
        minutes = f', for {(now - waited_since) / 60:.0f} min' if last_said else ''
        log_wait(f'Waiting for another process ({holder}) to release {path}{minutes}.')
        last_said = now
      time.sleep(poll_s)
      continue
    except OSError as error:
      os.close(fd)
      if error.errno not in _UNSUPPORTED:
        raise
      log_wait(f'Cannot lock {path} ({error.strerror}): this filesystem has no flock, so a '
               'second process doing the same work would not wait for this one.')
      fd = None
      break
    try:  # Its holder may have removed the file after this process opened it: take the new one.
      same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same = False
    if same:
      break
    os.close(fd)
  if fd is None:
    yield path
    return
  try:
    _write_holder(fd)
    yield path
  finally:
    os.close(fd)  # Releases the lock.


def remove_lock_file(path: str) -> None:
  """Removes a lock file its caller holds (`waiting`), with its `.locks` folder if empty: a
  process that waits on it then takes the next file instead."""
  with contextlib.suppress(FileNotFoundError):
    os.unlink(path)
  with contextlib.suppress(OSError):
    os.rmdir(os.path.dirname(path))


def _write_holder(fd: int) -> None:
  """Who holds the lock now (pid, host, since), for the message of a process it stops or holds
  up."""
  os.ftruncate(fd, 0)
  os.write(fd, json.dumps({
      'pid': os.getpid(), 'host': socket.gethostname(),
      'since': datetime.datetime.now().astimezone().isoformat(timespec='seconds')}).encode())


def _lock(fd: int, tries: int = 5) -> None:
  """An exclusive lock, tried a few times over half a second: `held`'s probe holds a shared one
  for an instant, and a run starting in that instant must not take it for a second writer."""
  for attempt in range(tries):
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return
    except BlockingIOError:
      if attempt == tries - 1:
        raise
      time.sleep(0.1)


def held(folder: str, name: str) -> bool | None:
  """Whether a process holds `<folder>/.locks/<name>` now; None where it cannot be told (no
  flock on this filesystem). The probe takes a shared lock for an instant."""
  path = os.path.join(folder, LOCK_DIR, name)
  try:
    fd = os.open(path, os.O_RDONLY)
  except FileNotFoundError:
    return False
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except BlockingIOError:
    return True
  except OSError as error:
    if error.errno in _UNSUPPORTED:
      return None
    raise
  finally:
    os.close(fd)  # Also releases the probe's lock.
  return False


def _holder(path: str) -> str:
  return _named_holder(path) or f'{path} is locked'  # Its holder has not written who it is yet.


def _named_holder(path: str) -> str | None:
  try:
    with open(path, encoding='utf-8') as f:
      holder = json.loads(f.read())
    return f'pid {holder["pid"]} on host {holder["host"]}, since {holder["since"]}'
  except (OSError, ValueError, KeyError, TypeError):
    return None


def training_lock_name(process_index: int = 0) -> str:
  return f'train_process_{process_index}'


def training_alive(workdir: str) -> bool | None:
  """Whether a training process holds `workdir` now (its process 0's lock); None where it
  cannot be told."""
  return held(workdir, training_lock_name())


def training(workdir: str, process_index: int, log_warning=None):
  """The lock a training process holds on its workdir (one per process of a multi-host run)."""
  return exclusive(
      workdir, training_lock_name(process_index), log_warning=log_warning,
      in_use=f'The workdir {workdir!r} is in use by another training process',
      fix='two runs in one workdir would overwrite each other\'s checkpoints. Wait for it to end '
          'or stop it (a run that ended, however it ended, holds no lock), or use another '
          '--workdir.')
