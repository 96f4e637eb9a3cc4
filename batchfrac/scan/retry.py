"""What to do when a Dask worker dies on a chunk: the retry policy and its error rows.

Pure functions, tested on their own: the Dask loop in :mod:`batchfrac.scan.cluster`
only carries out what :func:`after_worker_death` decides.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..enums import Reason, Status
from ..ingest.walk import file_stat
from ..records import FileStat, ImageResult

log = logging.getLogger(__name__)

WORKER_DIED = "the worker process decoding this file died (crash or out of memory)"
#: Times a file, alone in its task, may kill a worker before it gets an ``error`` row.
SINGLE_FILE_ATTEMPTS = 3


def after_worker_death(
    paths: list[str], hung: set[str], deaths: dict[str, int], timeout: float | None
) -> tuple[list[list[str]], list[str], list[ImageResult]]:
    """A chunk's worker died: (chunks to submit again, files blamed, their rows).

    A file the worker reported as hung gets a ``timeout`` row and the rest of the chunk
    goes again. Otherwise tasks queued on a dying worker fail with it, so a file is only
    blamed (``decode_error``) after it alone killed a worker SINGLE_FILE_ATTEMPTS times.
    """
    stuck = [path for path in paths if path in hung]
    if stuck:
        log.error("gave up on %s after %s s (worker restarted)", stuck, timeout)
        rest = [path for path in paths if path not in hung]
        return ([rest] if rest else []), stuck, [timed_out(path, timeout) for path in stuck]
    if len(paths) > 1:
        log.warning("a worker died on a chunk of %d files; retrying them one by one", len(paths))
        return [[path] for path in paths], [], []
    deaths[paths[0]] = deaths.get(paths[0], 0) + 1
    if deaths[paths[0]] < SINGLE_FILE_ATTEMPTS:
        return [paths], [], []
    log.error("a worker died while reading %s", paths[0])
    return [], paths, [worker_died(paths[0])]


#: Times a file's rows may be made but not fetched (their worker froze on its next task)
#: before the file gets an ``error`` row: it is not the file's fault, but never loop.
LOST_ROWS_ATTEMPTS = 5


def after_lost_rows(
    paths: list[str], losses: dict[str, int]
) -> tuple[list[list[str]], list[str], list[ImageResult]]:
    """A chunk finished but its rows could not be fetched from its worker (which then
    froze or died on another task): the files are innocent, so the chunk goes again as
    it was, without counting a worker death against them (that would blame a file that
    merely ran before a freezing one on the same worker). After
    :data:`LOST_ROWS_ATTEMPTS` losses a file gets a ``timeout`` row."""
    again: list[str] = []
    blamed: list[str] = []
    for path in paths:
        losses[path] = losses.get(path, 0) + 1
        (blamed if losses[path] >= LOST_ROWS_ATTEMPTS else again).append(path)
    detail = (
        f"its rows were made but could not be fetched from the worker {LOST_ROWS_ATTEMPTS} times"
    )
    for path in blamed:
        log.error("giving up on %s: %s", path, detail)
    return (
        ([again] if again else []),
        blamed,
        [_error_row(p, Reason.TIMEOUT, detail) for p in blamed],
    )


def after_task_failure(
    paths: list[str], error: str
) -> tuple[list[list[str]], list[str], list[ImageResult]]:
    """A chunk's task raised instead of returning rows (an exception ``ingest_file`` should
    have turned into a row, or a result that could not be sent back): split the chunk so
    that the failure is pinned on one file, which then gets an ``error`` row at once (a
    task failure, unlike a worker death, is not a matter of what else ran beside it)."""
    if len(paths) > 1:
        log.warning("a task failed on a chunk of %d files (%s); retrying them one by one",
                    len(paths), error)  # fmt: skip
        return [[path] for path in paths], [], []
    log.error("the ingest task failed on %s: %s", paths[0], error)
    detail = f"the ingest task failed: {error}"
    return [], paths, [_error_row(paths[0], Reason.DECODE_ERROR, detail)]


def overdue(
    paths: list[str], seconds: float
) -> tuple[list[list[str]], list[str], list[ImageResult]]:
    """A chunk's task did not answer within ``seconds`` (its worker neither finished, nor
    reported a hung file, nor died): split the chunk, then give up on a single file with a
    ``timeout`` row. The driver never waits forever on one task."""
    if len(paths) > 1:
        log.warning("no answer for a chunk of %d files after %.0f s; retrying them one by one",
                    len(paths), seconds)  # fmt: skip
        return [[path] for path in paths], [], []
    log.error("no answer for %s after %.0f s; giving up on it", paths[0], seconds)
    detail = f"no answer from the worker after {seconds:.0f} s; the task was cancelled"
    return [], paths, [_error_row(paths[0], Reason.TIMEOUT, detail)]


def _error_row(path: str, reason: Reason, detail: str) -> ImageResult:
    return ImageResult(_stat_or_empty(path), Status.ERROR, reason, None, detail=detail)


def worker_died(path: str) -> ImageResult:
    """The ``error`` row of a file whose decoding process died."""
    return ImageResult(
        _stat_or_empty(path), Status.ERROR, Reason.DECODE_ERROR, None, detail=WORKER_DIED
    )


def _stat_or_empty(path: str) -> FileStat:
    try:
        return file_stat(Path(path))
    except OSError:
        return FileStat(path=path, size=0, mtime_ns=0)


def timed_out(path: str, seconds: float | None) -> ImageResult:
    """The ``error`` row of a file its worker gave up on after ``seconds``."""
    detail = f"still decoding after {seconds} s; the worker process was restarted"
    return ImageResult(_stat_or_empty(path), Status.ERROR, Reason.TIMEOUT, None, detail=detail)
