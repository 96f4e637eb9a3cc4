"""The scan pipeline: stream files, decode on Dask workers, infer on the driver, write parts.

::

    walk -> ledger (skip done files) -> chunks --Dask--> ingest_chunk (workers: header,
    decode, preprocess) -> as_completed + refill -> BatchQueue (fixed batches: trunk, router,
    bone heads) -> rows -> part file per finished chunk

This is the only module that imports Dask (inside :func:`dask_ingest`). The task function
is :func:`batchfrac.ingest.entry.ingest_chunk`, whose import chain is free of TensorFlow, so
worker processes never load it. At most ``window`` chunks are in flight, and pixels leave
the driver as soon as their batch has run, so memory stays flat whatever the archive size;
the walk is consumed lazily. Inference overlaps decoding: the window is refilled before
the driver starts on a finished chunk, so workers keep decoding while the trunk runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from ..enums import Reason, Status
from ..ingest.walk import file_stat, walk
from ..records import FileStat, ImageResult
from ..report.bodypart import DEFAULT_LOW_CONFIDENCE
from ..report.rows import ImageRow, image_row, report_path
from .inference import BatchPredictor, BatchQueue, Prediction, Routing
from .resume import Ledger
from .watchdog import DEFAULT_TIMEOUT_S, Watchdog

log = logging.getLogger(__name__)

IngestChunk = Callable[[Sequence[str], Any], list[ImageResult]]
ChunkResults = Generator[tuple[list[str], list[ImageResult]], None, None]

WORKER_DIED = "the worker process decoding this file died (crash or out of memory)"
#: Times a file, alone in its task, may kill a worker before it gets an ``error`` row.
SINGLE_FILE_ATTEMPTS = 3
#: Dask event topic on which a worker names the file it gave up on before exiting.
TIMEOUT_TOPIC = "batchfrac-timeout"
#: Seconds a worker waits after reporting a hung file, for the report to reach the scheduler.
_REPORT_GRACE_S = 1.0


def default_workers() -> int:
    """One decoding process per CPU core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ScanConfig:
    """Everything ``batchfrac scan`` was asked to do."""

    archive: Path
    out: Path
    bundle: Path
    workers: int = field(default_factory=default_workers)
    batch_size: int = 32
    chunk_size: int = 16
    scheduler: str | None = None
    routing: Routing = Routing.HARD
    modalities: tuple[str, ...] = ("CR", "DX")
    max_pixels: int | None = None
    csv: bool = False
    low_confidence: float = DEFAULT_LOW_CONFIDENCE
    window: int | None = None
    timeout: float | None = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        checks = {
            "--workers must be >= 0": self.workers >= 0,
            "--batch-size must be >= 1": self.batch_size >= 1,
            "--chunk-size must be >= 1": self.chunk_size >= 1,
            "--max-pixels must be >= 1": self.max_pixels is None or self.max_pixels >= 1,
            "--modalities must name at least one modality": bool(self.modalities),
            "the window must be >= 1": self.window is None or self.window >= 1,
            "low_confidence must be in [0, 1]": 0.0 <= self.low_confidence <= 1.0,
            "--timeout must not be negative": self.timeout is None or self.timeout > 0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))
        object.__setattr__(self, "routing", Routing(self.routing))
        object.__setattr__(self, "modalities", tuple(self.modalities))

    @property
    def in_flight(self) -> int:
        """Chunks submitted but not yet consumed: enough to keep every worker busy."""
        return self.window or max(2, 2 * max(self.workers, 1))

    def arguments(self) -> dict[str, Any]:
        """JSON-ready arguments for ``run.json``."""
        out = dataclasses.asdict(self)
        out.update(
            archive=str(self.archive),
            out=str(self.out),
            bundle=str(self.bundle),
            routing=self.routing.value,
            modalities=list(self.modalities),
        )
        return out


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


def dask_ingest(
    chunks: Iterable[list[str]],
    config: Any,
    ingest: IngestChunk,
    *,
    workers: int,
    window: int,
    scheduler: str | None = None,
    timeout: float | None = None,
) -> ChunkResults:
    """Ingest chunks on a Dask cluster with at most ``window`` chunks in flight.

    ``scheduler`` is the address of an existing cluster; otherwise a ``LocalCluster`` of
    ``workers`` single-threaded processes is started (and closed when the generator ends,
    also on Ctrl-C). A chunk whose worker dies is retried one file per task so the
    crash is pinned on one file, which then gets an ``error`` row (``decode_error``).
    With ``timeout``, a file still being ingested after that many seconds makes its
    worker report it and exit (:func:`watched_ingest`; the nanny starts a fresh process):
    that file gets an ``error`` row (``timeout``) and the rest of its chunk is retried.
    """
    import dask
    from dask.distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker

    chunks = iter(chunks)
    with contextlib.ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(Client(scheduler))
        else:
            stack.enter_context(dask.config.set(LOCAL_CLUSTER_CONFIG))
            with _sigint_ignored(), _worker_malloc_environ():  # both inherited by the workers
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            stack.enter_context(cluster)
            client = stack.enter_context(Client(cluster))
        log.info("decoding on Dask: %s", client)
        since = time.time()
        futures = as_completed()
        paths_of: dict[str, list[str]] = {}
        deaths: dict[str, int] = {}

        def submit(paths: list[str]) -> None:
            if timeout is None:
                future = client.submit(ingest, paths, config, pure=False)
            else:
                future = client.submit(watched_ingest, ingest, paths, config, timeout, pure=False)
            paths_of[future.key] = paths
            futures.add(future)

        for paths in islice(chunks, window):
            submit(paths)
        for future in futures:
            paths = paths_of.pop(future.key)
            try:
                results = future.result()
            except KilledWorker:
                hung = _reported_hung(client, since) if timeout is not None else set()
                retry, paths, results = _after_worker_death(paths, hung, deaths, timeout)
                for again in retry:
                    submit(again)
                if not paths:
                    continue
            future.release()
            for refill in islice(chunks, max(0, window - len(paths_of))):
                submit(refill)
            yield paths, results


#: Dask settings of the LocalCluster a scan starts. Retries of crashed tasks are ours (per
#: file, see :func:`_after_worker_death`), not the scheduler's. Saturation 1.0: a worker
#: holds only the task it runs, none queued behind it, so a worker killed by one file takes
#: no innocent task down with it (at the default 1.1 a single-threaded worker holds two,
#: and the second one's file could be blamed). Recommended for a ``--scheduler`` cluster.
LOCAL_CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.scheduler.worker-saturation": 1.0,
}

#: glibc malloc settings of our LocalCluster's workers (see :func:`_worker_malloc_environ`).
WORKER_MALLOC_ENVIRON = {
    "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
}


@contextlib.contextmanager
def _worker_malloc_environ() -> Iterator[None]:
    """Start worker processes that reuse freed image buffers (:data:`WORKER_MALLOC_ENVIRON`).

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and setting any malloc
    threshold freezes glibc's mmap threshold at 128 KiB: every full-resolution frame
    (tens of MB, several per file) is then a fresh ``mmap`` the kernel must zero page
    by page, and ``munmap``-ed when freed. On 788 radiographs that was 18 s of system
    time on 2 cores. Buffers up to 64 MiB now come from the heap, which keeps up to
    256 MiB free for the next file; a worker's footprint stays bounded by one file.

    A nanny takes these from ``distributed.nanny.pre-spawn-environ`` unless this process's
    environment already names them (an earlier cluster in this process leaves Dask's
    values there), so both are set while the cluster starts, then restored.
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.update(WORKER_MALLOC_ENVIRON)
    saved = {key: os.environ.get(key) for key in WORKER_MALLOC_ENVIRON}
    os.environ.update(WORKER_MALLOC_ENVIRON)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _after_worker_death(
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


def watched_ingest(
    ingest: IngestChunk, paths: Sequence[str], config: Any, timeout: float
) -> list[ImageResult]:
    """Worker side: ``ingest`` one file at a time, each within ``timeout`` seconds.

    A file still running at its deadline (a codec stuck in C code cannot be interrupted)
    is named on the :data:`TIMEOUT_TOPIC` event topic, then the worker process exits; the
    driver reads the event when the task fails (see :func:`dask_ingest`).
    """
    from distributed import get_worker

    worker = get_worker()

    def give_up(path: str, seconds: float) -> None:
        log.error("%s still decoding after %s s: restarting this worker", path, seconds)
        worker.log_event(TIMEOUT_TOPIC, {"path": path, "seconds": seconds})
        time.sleep(_REPORT_GRACE_S)
        os._exit(1)

    results: list[ImageResult] = []
    with Watchdog(timeout, give_up) as dog:
        for path in paths:
            with dog.watch(path):
                results += ingest([path], config)
    return results


def _reported_hung(client: Any, since: float) -> set[str]:
    """Paths that workers reported on :data:`TIMEOUT_TOPIC` (see :func:`watched_ingest`)
    at or after ``since`` (``time.time()``; a long-lived cluster keeps older events)."""
    return {msg["path"] for when, msg in client.get_events(TIMEOUT_TOPIC) if when >= since}


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while worker processes start, so they inherit "ignore".

    Ctrl-C reaches the whole process group; only the driver should act on it (stop
    submitting, close the cluster, keep finished parts) instead of every worker
    printing a traceback.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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


@dataclass
class _Chunk:
    results: list[ImageResult]
    predictions: list[Prediction | None]
    outstanding: int


class ChunkInference:
    """Feeds the ok images of finished chunks into fixed-size batches and writes parts.

    A chunk's part file is written as soon as its last image has been predicted; the
    final batch is padded by :meth:`finish`.
    """

    def __init__(
        self,
        predictor: BatchPredictor,
        write_part: Callable[[list[ImageRow]], object],
        *,
        low_confidence: float = DEFAULT_LOW_CONFIDENCE,
        observer: ScanObserver | None = None,
    ) -> None:
        self.queue: BatchQueue[tuple[int, int]] = BatchQueue(predictor)
        self.write_part = write_part
        self.low_confidence = low_confidence
        self.observer = observer or NullObserver()
        self._chunks: dict[int, _Chunk] = {}
        self._next_id = 0
        self.files = 0
        self.decode_ms = 0.0

    def add(self, paths: Sequence[str], results: list[ImageResult]) -> None:
        """Take one chunk's ingest results (``>= 1`` per path)."""
        chunk_id, self._next_id = self._next_id, self._next_id + 1
        self.files += len(paths)
        self.decode_ms += sum(result.decode_ms for result in results)
        chunk = _Chunk(list(results), [None] * len(results), 0)
        self._chunks[chunk_id] = chunk
        ready: list[tuple[tuple[int, int], Prediction]] = []
        for index, result in enumerate(results):
            if result.status is not Status.OK:
                continue
            if result.pixels is None:
                raise ValueError(f"ok ingest result without pixels: {result.file.path}")
            chunk.outstanding += 1
            ready += self.queue.put((chunk_id, index), result.pixels)
            chunk.results[index] = dataclasses.replace(result, pixels=None)  # free it now
        self._complete(ready)
        if chunk.outstanding == 0 and chunk_id in self._chunks:
            self._write(chunk_id)

    def finish(self) -> None:
        """Run the last (padded) batch and write every remaining chunk."""
        self._complete(self.queue.flush())
        if self._chunks:
            raise RuntimeError(f"{len(self._chunks)} chunks still waiting after the last batch")

    def _complete(self, ready: list[tuple[tuple[int, int], Prediction]]) -> None:
        for (chunk_id, index), prediction in ready:
            chunk = self._chunks[chunk_id]
            chunk.predictions[index] = prediction
            chunk.outstanding -= 1
            if chunk.outstanding == 0:
                self._write(chunk_id)

    def _write(self, chunk_id: int) -> None:
        chunk = self._chunks.pop(chunk_id)
        rows = [
            image_row(r, p, low_confidence=self.low_confidence)
            for r, p in zip(chunk.results, chunk.predictions, strict=True)
        ]
        self.write_part(rows)
        self.observer.chunk_written(rows)
