"""Crash-safe files: atomic replacement and advisory locks, for reports and bundles alike.

A file is written to a temporary name in its own directory, flushed and fsynced, then
renamed over its final name with :func:`os.replace` (atomic on POSIX), and the directory
is fsynced so that the rename itself survives a power loss. Readers see the old file or
the new one, never a torn one. Temporary names end in :data:`TEMP_SUFFIX`, so a later
run can recognise (and delete) exactly the leftovers of a killed run of batchfrac and
never another program's files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: Every temporary file batchfrac creates ends with this (see :func:`is_our_temp_file`).
TEMP_SUFFIX = ".batchfrac-tmp"

#: Mode of report files and logs (they hold patient identifiers or pseudonyms): owner
#: read-write, group read, nobody else. A stricter umask makes them stricter still.
REPORT_FILE_MODE = 0o640
#: Mode of the directories a scan creates for its reports (``--out``, ``parts/``, ...).
REPORT_DIR_MODE = 0o750


def umask_mode(mode: int) -> int:
    """``mode`` minus the process umask (``mkstemp`` creates 0600 files; a report or a
    bundle must stay readable by the users the umask allows)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def make_report_dir(directory: Path) -> Path:
    """Create ``directory`` (and missing parents) if needed; the directory itself gets
    :data:`REPORT_DIR_MODE` minus the umask when it is created here, an existing one is
    left as it is (parents get the default mode, as with ``mkdir -p``)."""
    directory = Path(directory)
    if not directory.is_dir():
        directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=REPORT_DIR_MODE)
    return directory


def open_report_log(path: Path) -> int:
    """Create ``path`` if missing with :data:`REPORT_FILE_MODE` (minus the umask) and
    return a file descriptor open for appending to it."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, REPORT_FILE_MODE)


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename, a new file) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_our_temp_file(path: Path) -> bool:
    """Whether ``path`` is a temporary file left by :func:`atomic_write` (by its name)."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def atomic_write(target: Path, write: Callable[[Path], object], *, mode: int = 0o666) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``target``, then move it into place.

    The file gets ``mode`` minus the umask. On any error (or Ctrl-C) the temporary file
    is removed and ``target`` is left as it was.
    """
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, umask_mode(mode))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)
    return target


def write_bytes(target: Path, data: bytes, *, mode: int = 0o666) -> Path:
    """Write ``data`` to ``target`` atomically."""
    return atomic_write(target, lambda tmp: tmp.write_bytes(data), mode=mode)


def write_text(target: Path, text: str, *, mode: int = 0o666) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    return atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"), mode=mode)


def write_json(target: Path, document: Any, *, sort_keys: bool = False, mode: int = 0o666) -> Path:
    """Write ``document`` as indented JSON (with a final newline) to ``target`` atomically."""
    text = json.dumps(document, indent=2, sort_keys=sort_keys) + "\n"
    return write_text(target, text, mode=mode)


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory ``flock`` on ``lock_file`` (created if missing).

    ``wait=False`` raises :class:`BlockingIOError` at once when another process holds it.
    The lock is released when the block ends or the process dies.
    """
    with open(os.open(lock_file, os.O_RDWR | os.O_CREAT, REPORT_FILE_MODE), "r+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
