"""Safe outputs: where wsl_jax may write, what it may replace, and how a folder is put in place.

Every command that writes a folder (`python -m wsl_jax.zoo generate --out`, every experiment's `--out`,
the zoo cache) goes through these rules, so that no everyday mistake deletes a user's files:

* `resolve_output` resolves a path once (absolute, normalized, symlinks followed) and refuses an empty
  path, the working directory, a parent of it, the home directory and a filesystem root.
* A folder is replaced only when wsl_jax wrote it and it holds nothing else (`foreign_entries`); the
  callers decide what "wsl_jax wrote it" means (a zoo's `zoo.json`, a staging folder's `plan.json`, an
  experiment's `config.json`).
* `rename_noreplace` puts a finished folder in place with one atomic rename that fails when the target
  appeared in the meantime (Linux `renameat2(RENAME_NOREPLACE)`), so a folder created while a job runs is
  never replaced.
* `OutputLock` keeps a second concurrent run away from the same output; `check_free_space` refuses a
  job whose files cannot fit before anything is written; `OutOfSpaceError` turns a full disk into a
  message that says what can be resumed.
* Files and folders get the permissions of the user's umask (temporary files are created 0600 / 0700).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fnmatch
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class UnsafeOutputError(ValueError):
  """An output path that wsl_jax refuses to write to or replace (the message names it and says why)."""


class OutOfSpaceError(OSError):
  """The disk is (or would be) full; the message says how much is needed and what can be resumed."""

  def __init__(self, message: str):
    super().__init__(errno.ENOSPC, message)

  def __str__(self) -> str:
    return self.strerror


def resolve_output(path: str | os.PathLike | None, what: str = "--out") -> str:
  """The absolute, normalized form of output path `path` (symlinks resolved), or `UnsafeOutputError`.

  Refused: None or an empty / blank path (it would mean the working directory), the working directory
  itself, any of its parents, the home directory, and a filesystem root: replacing or filling any of
  these would destroy files that were there before.

  >>> import os; resolve_output("runs/x") == os.path.join(os.path.realpath(os.getcwd()), "runs", "x")
  True
  >>> resolve_output("typo/..")
  Traceback (most recent call last):
  ...
  wsl_jax.outputs.UnsafeOutputError: --out 'typo/..' is the working directory ...
  """
  raw = "" if path is None else os.fspath(path)
  if not raw.strip():
    raise UnsafeOutputError(f"{what} is empty: give the folder to write, e.g. {what} runs/name")
  resolved = os.path.realpath(os.path.abspath(os.path.expanduser(raw)))
  cwd = os.path.realpath(os.getcwd())
  home = os.path.realpath(os.path.expanduser("~"))
  if resolved == cwd:
    raise UnsafeOutputError(f"{what} {raw!r} is the working directory ({cwd}); wsl_jax writes into a "
                            "folder of its own: give a new folder, e.g. runs/name")
  if os.path.dirname(resolved) == resolved:
    raise UnsafeOutputError(f"{what} {raw!r} is a filesystem root ({resolved}); give a new folder")
  if resolved == home:
    raise UnsafeOutputError(f"{what} {raw!r} is the home directory ({home}); give a new folder")
  if cwd.startswith(resolved.rstrip(os.sep) + os.sep):
    raise UnsafeOutputError(f"{what} {raw!r} ({resolved}) is a parent of the working directory; give a "
                            "new folder")
  return resolved


def foreign_entries(folder: str, allowed: Iterable[str]) -> list[str]:
  """Names in `folder` that match none of the `allowed` names or glob patterns (what wsl_jax did not
  write there), sorted."""
  patterns = tuple(allowed)
  return sorted(name for name in os.listdir(folder)
                if not any(fnmatch.fnmatchcase(name, p) for p in patterns))


def remove_own_folder(folder: str, allowed: Iterable[str]) -> None:
  """Delete `folder`, which holds only entries matching `allowed` (files, or folders wsl_jax wrote).

  Raises:
    UnsafeOutputError: it holds anything else (nothing is deleted then).
  """
  patterns = tuple(allowed)
  foreign = foreign_entries(folder, patterns)
  if foreign:
    raise UnsafeOutputError(f"{folder} holds files wsl_jax did not write ({', '.join(foreign[:5])}"
                            f"{', ...' if len(foreign) > 5 else ''}); not deleting it")
  for name in os.listdir(folder):
    path = os.path.join(folder, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.unlink(path)
  os.rmdir(folder)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _libc_renameat2():
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = libc.renameat2
  except (OSError, AttributeError):
    return None
  fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
  fn.restype = ctypes.c_int
  return fn


_renameat2 = _libc_renameat2()


def rename_noreplace(src: str, dst: str) -> None:
  """Rename `src` to `dst` atomically, failing with `FileExistsError` when `dst` exists (even an empty
  folder, which a plain rename would silently replace).

  Uses `renameat2(RENAME_NOREPLACE)` (Linux); elsewhere, or on a filesystem without it, a check
  followed by the rename (a window of microseconds instead of none).
  """
  if _renameat2 is not None:
    rc = _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
    if rc == 0:
      return
    err = ctypes.get_errno()
    if err == errno.EEXIST:
      raise FileExistsError(errno.EEXIST, f"{dst} exists", dst)
    if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
      raise OSError(err, os.strerror(err), src)
  if os.path.lexists(dst):
    raise FileExistsError(errno.EEXIST, f"{dst} exists", dst)
  os.rename(src, dst)


def current_umask() -> int:
  """The process umask (read without changing it where /proc allows)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except OSError:
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def apply_umask(path: str, directory: bool = False) -> None:
  """Give `path` the permissions a plain `open` / `mkdir` would have (0666 / 0777 less the umask):
  `tempfile` creates 0600 files and 0700 folders."""
  os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


class OutputLock:
  """An exclusive lock on an output (an `fcntl.flock` on `path`, released when the process dies).

  >>> import tempfile, os
  >>> lock_path = os.path.join(tempfile.mkdtemp(), ".lock")
  >>> with OutputLock(lock_path, "zoo x"):
  ...   OutputLock(lock_path, "zoo x").acquire()
  Traceback (most recent call last):
  ...
  wsl_jax.outputs.UnsafeOutputError: another run (pid ...) is writing zoo x ...
  """

  def __init__(self, path: str, what: str):
    self.path, self.what, self._fd = path, what, None

  def acquire(self, blocking: bool = False) -> OutputLock:
    """Take the lock; `blocking` waits for it, else a held lock raises `UnsafeOutputError`."""
    import fcntl
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as e:
      holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
      os.close(fd)
      raise UnsafeOutputError(f"another run (pid {holder}) is writing {self.what} (lock {self.path}); wait "
                              "for it to finish or choose another output") from e
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    self._fd = fd
    return self

  def release(self, remove: bool = False) -> None:
    """Release the lock; `remove` deletes the lock file first (while still holding it)."""
    if self._fd is None:
      return
    if remove:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(self.path)
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> OutputLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def format_bytes(n: float) -> str:
  for unit in ("B", "KB", "MB", "GB", "TB"):
    if abs(n) < 1000 or unit == "TB":
      return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
    n /= 1000
  return f"{n:.1f} TB"


def check_free_space(folder: str, needed: int, what: str) -> None:
  """Raise `OutOfSpaceError` when the filesystem of `folder` (or of its nearest existing parent) has
  fewer than `needed` bytes free."""
  probe = folder
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  free = shutil.disk_usage(probe).free
  if needed > free:
    raise OutOfSpaceError(f"{what} needs {format_bytes(needed)} at {folder}, but only {format_bytes(free)} "
                          "are free there; free space or choose another output")


@contextlib.contextmanager
def disk_full_is_resumable(where: str, resume_hint: str) -> Iterator[None]:
  """Turn `ENOSPC` / `EDQUOT` raised inside the block into an `OutOfSpaceError` naming `where` and how
  to resume."""
  try:
    yield
  except OutOfSpaceError:
    raise
  except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
      raise
    raise OutOfSpaceError(f"the disk is full while writing {where}: {resume_hint}") from e


def preallocate(fd: int, size: int, path: str) -> None:
  """Reserve `size` bytes for the open file `fd`, so a memory map of it never hits an unallocated page
  (writing to one on a full disk kills the process with SIGBUS, "Bus error")."""
  if not hasattr(os, "posix_fallocate"):
    return
  try:
    os.posix_fallocate(fd, 0, size)
  except OSError as e:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
      raise OutOfSpaceError(f"cannot reserve {format_bytes(size)} for {path}: the disk is full") from e
    if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
      raise


# OSErrors that a user's input or machine causes (a path, a permission, a full or read-only disk), as
# opposed to a bug: shown as one line by `user_errors_as_one_line`.
_USER_OS_ERRORS = (FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
_USER_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def is_user_error(e: BaseException) -> bool:
  """Whether `e` reports a user error (bad path or argument, damaged input, full disk) rather than a bug."""
  if isinstance(e, _USER_OS_ERRORS) or (isinstance(e, OSError) and e.errno in _USER_ERRNOS):
    return True
  return isinstance(e, ValueError)


def user_errors_as_one_line(run: Callable[[], object], code: int = 2) -> int:
  """Run `run()` for a command-line entry point: 0, or for a user error (`is_user_error`: bad path or
  argument, damaged zoo, missing data, full disk, an output in use) one line `error: ...` on stderr and
  exit status `code`, without a traceback. Anything else propagates. `WSL_JAX_TRACEBACK=1` re-raises
  user errors too (for debugging)."""
  try:
    run()
  except (ValueError, OSError) as e:
    if not is_user_error(e) or os.environ.get("WSL_JAX_TRACEBACK"):
      raise
    message = " ".join(str(e).split())  # one line, whatever the exception carried
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code
  return 0


# ---- the one atomic file writer -------------------------------------------------------------------

def atomic_write(path: str | os.PathLike, write: Any, binary: bool = False) -> str:
  """Write via `write(file)` into a temporary file beside `path`, then rename it over `path` (a reader
  never sees a half-written file). Creates the folder; the file gets the umask's permissions; a full
  disk raises `wsl_jax.outputs.OutOfSpaceError`. Returns the path."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  try:
    with disk_full_is_resumable(path, "free space and run the same command again"):
      with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
      apply_umask(tmp)
      os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
  """Write `text` to `path` atomically (see `atomic_write`)."""
  return atomic_write(path, lambda f: f.write(text))
