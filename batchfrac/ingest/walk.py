"""The **walk** stage: stream every entry under an archive root, each with its verdict.

Order is deterministic and independent of the file system: a pre-order walk in which each
directory yields its own entries first, then descends into its subdirectories; both in
code-point order of their names. Only one directory's listing is held at a time (plus the
names of the subdirectories still to visit, and the identities of hard-linked files), so
a walk over millions of files keeps memory flat.

Every entry the walk meets is accounted for (:func:`walk_entries`): a regular file to
ingest, or a :class:`~batchfrac.enums.Reason` why not:

- ``unreadable_directory``: a directory that cannot be listed (its files are unknown);
- ``dangling_link``: a symbolic link to nothing (or a link loop);
- ``outside_archive``: a symbolic link that leads out of the root (never followed);
- ``not_regular_file``: a FIFO, socket or device (classified from the listing, never opened);
- ``duplicate``: another name of a file or directory already met: a symbolic link whose
  target lies inside the archive (the target is reported under its own path), a second
  hard link to a file, or a directory reached by a second route (link loops end here).

Files are never filtered by name or extension: hidden files such as ``.DS_Store`` are
yielded and later reported as ``not_dicom``.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..enums import Reason
from ..records import FileStat

logger = logging.getLogger(__name__)

_Identity = tuple[int, int]  # (st_dev, st_ino)


@dataclass(frozen=True, slots=True)
class WalkEntry:
    """One entry of the archive: a file to ingest (``reason`` ``None``) or why it is not.

    ``file`` is its resume identity: size and mtime of the file, or of the entry itself
    (``lstat``) for links and directories; ``-1`` and ``0`` when even that failed.
    """

    file: FileStat
    reason: Reason | None = None
    detail: str = ""

    @property
    def path(self) -> Path:
        return Path(self.file.path)


def walk(root: Path) -> Iterator[Path]:
    """The regular files under ``root`` to ingest, recursively and lazily (each file once:
    see :func:`walk_entries` for the entries left out and why)."""
    for entry in walk_entries(root):
        if entry.reason is None:
            yield entry.path


def walk_entries(root: Path) -> Iterator[WalkEntry]:
    """Every entry under ``root``, in walk order, each with its verdict (module docstring).

    Paths are yielded under ``root`` as given. A ``root`` that is itself a regular file is
    yielded alone.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist (raised on the first ``next()``).
    NotADirectoryError
        ``root`` exists but is neither a directory nor a regular file.
    PermissionError
        ``root`` is a directory that cannot be listed.
    """
    root = Path(root)
    root_stat = os.stat(root)
    if stat.S_ISREG(root_stat.st_mode):
        yield WalkEntry(_file_stat(root, root_stat))
        return
    if not stat.S_ISDIR(root_stat.st_mode):
        raise NotADirectoryError(f"archive root is neither a directory nor a file: {root}")
    walker = _Walker(Path(os.path.realpath(root)), (root_stat.st_dev, root_stat.st_ino))
    pending: list[Path] = [root]  # directories still to list, next one last
    while pending:
        directory = pending.pop()
        # An unlistable root is the caller's error (raised), any other directory a row.
        entries, subdirs = walker.list_directory(directory, strict=directory is root)
        yield from entries
        pending.extend(reversed(subdirs))


def file_stat(path: Path) -> FileStat:
    """Identity of ``path`` for resume: size and modification time of its target.

    Raises ``OSError`` when the file cannot be stat'ed (vanished, permissions).
    """
    return _file_stat(path, os.stat(path))


def _file_stat(path: Path, st: os.stat_result) -> FileStat:
    return FileStat(path=str(path), size=st.st_size, mtime_ns=st.st_mtime_ns)


def _own_stat(path: Path) -> FileStat:
    """The identity of an entry itself (``lstat``), for entries that are not files."""
    try:
        return _file_stat(path, os.lstat(path))
    except OSError:
        return FileStat(path=str(path), size=-1, mtime_ns=0)


class _Walker:
    """The state of one walk: directories entered and hard-linked files met."""

    def __init__(self, real_root: Path, root: _Identity) -> None:
        self.real_root = real_root
        self.directories: dict[_Identity, str] = {root: str(real_root)}
        self.linked_files: dict[_Identity, str] = {}

    def list_directory(
        self, directory: Path, *, strict: bool = False
    ) -> tuple[list[WalkEntry], list[Path]]:
        """The entries of one directory (sorted by name) and its subdirectories to enter.

        Subdirectories are marked entered here, on discovery, so that a directory found
        both directly and through a link is walked once, under the name met first. A
        listing that fails is an ``unreadable_directory`` row, or raised when ``strict``.
        """
        try:
            with os.scandir(directory) as it:
                listing = sorted(it, key=lambda entry: entry.name)
        except OSError as exc:
            if strict:
                raise
            logger.warning("cannot list directory %s: %s", directory, exc)
            reason = Reason.UNREADABLE_DIRECTORY
            return [WalkEntry(_own_stat(directory), reason, f"cannot list it: {exc}")], []
        entries: list[WalkEntry] = []
        subdirs: list[Path] = []
        for item in listing:
            path = directory / item.name
            entry, enter = self._classify(item, path)
            if enter:
                subdirs.append(path)
            elif entry is not None:
                if entry.reason is not None:
                    logger.info("%s: %s (%s)", path, entry.reason.value, entry.detail)
                entries.append(entry)
        return entries, subdirs

    def _classify(self, item: os.DirEntry[str], path: Path) -> tuple[WalkEntry | None, bool]:
        """``(entry, False)`` for a row, ``(None, True)`` for a directory to enter."""
        try:
            if item.is_symlink():
                return self._link(path)
            st = item.stat(follow_symlinks=False)
        except OSError as exc:
            return WalkEntry(_own_stat(path), Reason.READ_ERROR, f"cannot stat it: {exc}"), False
        return self._target(path, st, linked=False)

    def _link(self, path: Path) -> tuple[WalkEntry | None, bool]:
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(self.real_root):
            detail = f"links to {target}, outside the archive; not followed"
            return WalkEntry(_own_stat(path), Reason.OUTSIDE_ARCHIVE, detail), False
        try:
            st = os.stat(path)
        except OSError as exc:
            detail = f"link to {target}, which cannot be reached: {exc.strerror or exc}"
            return WalkEntry(_own_stat(path), Reason.DANGLING_LINK, detail), False
        if stat.S_ISREG(st.st_mode):
            detail = f"link to {target}, reported under its own path"
            return WalkEntry(_own_stat(path), Reason.DUPLICATE, detail), False
        return self._target(path, st, linked=True)

    def _target(
        self, path: Path, st: os.stat_result, linked: bool
    ) -> tuple[WalkEntry | None, bool]:
        identity = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            first = self.directories.get(identity)
            if first is not None:
                detail = f"the directory {first} again (a link loop or an alias)"
                return WalkEntry(_own_stat(path), Reason.DUPLICATE, detail), False
            self.directories[identity] = str(path)
            return None, True
        if stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:  # only hard-linked files can be met twice without a link
                first = self.linked_files.setdefault(identity, str(path))
                if first != str(path):
                    detail = f"the same file as {first} (a hard link)"
                    return WalkEntry(_file_stat(path, st), Reason.DUPLICATE, detail), False
            return WalkEntry(_file_stat(path, st)), False
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "special file")
        detail = f"a {kind}{' (through a link)' if linked else ''}; never opened"
        return WalkEntry(_own_stat(path), Reason.NOT_REGULAR_FILE, detail), False


_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}
