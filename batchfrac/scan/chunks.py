"""The scan's work list: files not yet reported, streamed from the walk in chunks.

A chunk is one Dask task (or one step of the in-process loop with ``--workers 0``).
Files already reported for the same (path, size, mtime) and settings are skipped here,
so a resumed scan never reads them again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import BatchfracError
from ..ingest.walk import walk_entries
from ..records import ImageResult
from ..report.rows import ImageRow, report_path
from .resume import Ledger

#: The task function: one chunk of paths -> its ingest results (``>= 1`` per path).
IngestChunk = Callable[[Sequence[str], Any], list[ImageResult]]
#: What an ingest loop yields: each chunk's paths with their results, as chunks finish.
ChunkResults = Generator[tuple[list[str], list[ImageResult]], None, None]


class ScanObserver(Protocol):
    """Progress callbacks (the CLI shows them; tests may record them)."""

    def file_reused(self) -> None: ...

    def chunk_written(self, rows: Sequence[ImageRow]) -> None: ...

    def walk_finished(self, files: int) -> None: ...


class NullObserver:
    """A :class:`ScanObserver` that ignores everything."""

    def file_reused(self) -> None:
        pass

    def chunk_written(self, rows: Sequence[ImageRow]) -> None:
        pass

    def walk_finished(self, files: int) -> None:
        pass


class EmptyArchive(BatchfracError):
    """The archive holds no entry at all (an empty folder, or a share that is not mounted)."""


#: Receives the rows of walk entries that are not ingested (links, FIFOs, ...).
RowSink = Callable[[list[str], list[ImageResult]], None]


def pending_chunks(
    archive: Path,
    ledger: Ledger,
    chunk_size: int,
    observer: ScanObserver,
    rejected: RowSink,
) -> Iterator[list[str]]:
    """Lists of at most ``chunk_size`` paths not yet reported, streamed from the walk.

    Entries the walk does not hand to ingest (unreadable directories, dangling links,
    links out of the archive, FIFOs, duplicates) become rows here, passed to ``rejected``
    in groups of ``chunk_size`` (and resumed like any other row). Raises
    :class:`EmptyArchive` after a walk that met no entry at all.
    """
    chunk: list[str] = []
    rows: list[ImageResult] = []
    entries = 0
    for entry in walk_entries(archive):
        entries += 1
        stat = entry.file
        if ledger.reuse((report_path(stat.path), stat.size, stat.mtime_ns)):
            observer.file_reused()
            continue
        if entry.reason is not None:
            rows.append(
                ImageResult(stat, entry.reason.status, entry.reason, None, detail=entry.detail)
            )
            if len(rows) == chunk_size:
                rejected([r.file.path for r in rows], rows)
                rows = []
            continue
        chunk.append(stat.path)
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if rows:
        rejected([r.file.path for r in rows], rows)
    if chunk:
        yield chunk
    if entries == 0:
        raise EmptyArchive(
            f"the archive {archive} holds no files at all: is it the right folder, and mounted?"
        )
    observer.walk_finished(entries)


def local_ingest(chunks: Iterable[list[str]], config: Any, ingest: IngestChunk) -> ChunkResults:
    """Ingest chunks in this process, one after the other (``--workers 0``)."""
    for paths in chunks:
        yield paths, ingest(paths, config)
