"""The scan's work list: files not yet reported, streamed from the walk in chunks.

A chunk is one Dask task (or one step of the in-process loop with ``--workers 0``).
Files already reported for the same (path, size, mtime) and settings are skipped here,
so a resumed scan never reads them again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..ingest.walk import file_stat, walk
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


def pending_chunks(
    archive: Path, ledger: Ledger, chunk_size: int, observer: ScanObserver
) -> Iterator[list[str]]:
    """Lists of at most ``chunk_size`` paths not yet reported, streamed from the walk."""
    chunk: list[str] = []
    files = 0
    for path in walk(archive):
        files += 1
        try:
            stat = file_stat(path)
        except OSError:
            stat = None  # ingest reports it (e.g. it vanished); nothing to resume from
        if stat is not None and ledger.reuse((report_path(stat.path), stat.size, stat.mtime_ns)):
            observer.file_reused()
            continue
        chunk.append(str(path))
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
    observer.walk_finished(files)


def local_ingest(chunks: Iterable[list[str]], config: Any, ingest: IngestChunk) -> ChunkResults:
    """Ingest chunks in this process, one after the other (``--workers 0``)."""
    for paths in chunks:
        yield paths, ingest(paths, config)
