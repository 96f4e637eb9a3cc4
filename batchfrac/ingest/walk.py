"""The **walk** stage: stream the regular files under an archive root.

Order is deterministic and independent of the file system: a pre-order walk in
which each directory yields its own files first, then descends into its
subdirectories; both in code-point order of their names. Only one directory's
listing is held at a time (plus the names of the subdirectories still to visit),
so a walk over millions of files keeps memory flat.

Symbolic links are followed only when their resolved target stays inside the
root. Every directory is entered at most once (tracked by ``(st_dev, st_ino)``),
which ends symlink loops and keeps a directory reachable by two routes from
being walked twice; the first route in walk order wins. Files are never filtered
by name or extension: hidden files such as ``.DS_Store`` are yielded and later
reported as ``not_dicom``. Whatever is left out (links pointing outside the root,
dangling links, already-walked directories, sockets and FIFOs, unreadable
directories) is logged as a warning, never skipped silently.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from ..records import FileStat

logger = logging.getLogger(__name__)

_DirKey = tuple[int, int]
_Kind = Literal["file", "dir", "skip"]


def walk(root: Path) -> Iterator[Path]:
    """Yield every regular file under ``root``, recursively and lazily.

    Paths are yielded under ``root`` as given (a file reached through an
    in-root symlink is yielded under the link's path, not its target). A
    ``root`` that is itself a regular file is yielded alone.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist (raised on the first ``next()``).
    NotADirectoryError
        ``root`` exists but is neither a directory nor a regular file.
    """
    root = Path(root)
    root_stat = os.stat(root)
    if stat.S_ISREG(root_stat.st_mode):
        yield root
        return
    if not stat.S_ISDIR(root_stat.st_mode):
        raise NotADirectoryError(f"archive root is neither a directory nor a file: {root}")
    real_root = Path(os.path.realpath(root))
    visited: set[_DirKey] = {(root_stat.st_dev, root_stat.st_ino)}
    pending: list[Path] = [root]  # directories still to list, next one last
    while pending:
        directory = pending.pop()
        files, subdirs = _list_directory(directory, real_root, visited)
        yield from files
        pending.extend(reversed(subdirs))


def file_stat(path: Path) -> FileStat:
    """Identity of ``path`` for resume: size and modification time of its target.

    Raises ``OSError`` when the file cannot be stat'ed (vanished, permissions).
    """
    st = os.stat(path)
    return FileStat(path=str(path), size=st.st_size, mtime_ns=st.st_mtime_ns)


def _list_directory(
    directory: Path, real_root: Path, visited: set[_DirKey]
) -> tuple[list[Path], list[Path]]:
    """The files and the not-yet-visited subdirectories of one directory, sorted by name.

    Subdirectories are marked visited here, on discovery, so that a directory
    found both directly and through a link is walked once under the name met first.
    """
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda entry: entry.name)
    except OSError as exc:
        logger.warning("cannot list directory %s, skipping its contents: %s", directory, exc)
        return [], []
    files: list[Path] = []
    subdirs: list[Path] = []
    for entry in entries:
        path = directory / entry.name
        try:
            kind, key = _classify(entry, real_root)
        except OSError as exc:
            logger.warning("cannot stat %s, skipping it: %s", path, exc)
            continue
        if kind == "file":
            files.append(path)
        elif kind == "dir":
            if key in visited:
                logger.warning("%s: directory already walked (link loop or alias), skipping", path)
                continue
            visited.add(key)
            subdirs.append(path)
    return files, subdirs


def _classify(entry: os.DirEntry[str], real_root: Path) -> tuple[_Kind, _DirKey]:
    """``("file" | "dir" | "skip", (st_dev, st_ino))`` of what ``entry`` names; skips are logged.

    Plain entries are classified from the directory listing itself (no ``stat``
    per file); only directories and symlinks cost a ``stat`` call.
    """
    no_key = (0, 0)
    if entry.is_symlink():
        target = Path(os.path.realpath(entry.path))
        if not target.is_relative_to(real_root):
            logger.warning(
                "%s links outside the archive (%s), not following it", entry.path, target
            )
            return "skip", no_key
        try:
            st = os.stat(entry.path)
        except OSError as exc:
            logger.warning("%s is a dangling or looping link, skipping it: %s", entry.path, exc)
            return "skip", no_key
    elif entry.is_file(follow_symlinks=False):
        return "file", no_key
    else:
        st = entry.stat(follow_symlinks=False)
    if stat.S_ISREG(st.st_mode):
        return "file", no_key
    if stat.S_ISDIR(st.st_mode):
        return "dir", (st.st_dev, st.st_ino)
    logger.warning("%s is not a regular file or directory, skipping it", entry.path)
    return "skip", no_key
