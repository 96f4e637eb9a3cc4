"""Crash-safe file writes for model bundles.

A file is written to a temporary name in the same directory, flushed and fsynced, then
renamed over its final name with :func:`os.replace` (atomic on POSIX and Windows), and
the directory is fsynced so the rename itself survives a power loss. Readers see the
old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent writers are not supported there
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def umask_mode(mode: int) -> int:
    """``mode`` minus the process umask (tempfile creates 0600 files and 0700 dirs;
    a bundle written by ML staff must stay readable by the scanning service's user)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def write_file_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` via a fsynced temporary file and :func:`os.replace`."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, umask_mode(0o666))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def json_ready(value: Any) -> Any:
    """``value`` with numpy values and datetimes turned into plain JSON types."""
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if hasattr(value, "isoformat"):  # datetime
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def commit_json(target: Path, document: Any) -> None:
    """Atomically replace ``target`` with ``document`` as indented JSON."""
    text = json.dumps(document, indent=2, sort_keys=False, default=_plain) + "\n"
    write_file_atomic(target, text.encode("utf-8"))


@contextlib.contextmanager
def lock_bundle(directory: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``directory`` (serialises concurrent writers)."""
    if fcntl is None or not directory.is_dir():
        yield
        return
    with open(directory / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
