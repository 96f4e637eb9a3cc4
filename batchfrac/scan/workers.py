"""What runs on, or starts, the Dask worker processes of a scan.

The task wrappers (:func:`watched_ingest` with its per-file watchdog, :func:`guarded`,
which lets no ``BaseException`` out of a task), and how a scan's own ``LocalCluster``
starts its workers (settings, malloc environment, SIGINT ignored). The driver side is
:mod:`batchfrac.scan.cluster`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..records import ImageResult
from .chunks import IngestChunk
from .watchdog import Watchdog

log = logging.getLogger(__name__)

#: Dask event topic on which a worker names the file it gave up on before exiting.
TIMEOUT_TOPIC = "batchfrac-timeout"
#: Seconds a worker waits after reporting a hung file, for the report to reach the scheduler.
_REPORT_GRACE_S = 1.0


def guarded(ingest: IngestChunk, paths: Sequence[str], config: Any) -> list[ImageResult]:
    """Worker side: run ``ingest``; let no ``BaseException`` out (pyo3's ``PanicException``
    derives from it: Dask ships it back, but the driver's ``Future.result()`` would then
    never return), re-raised as an ordinary exception the driver handles like a failure."""
    try:
        return ingest(paths, config)
    except (Exception, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - see the docstring
        raise RuntimeError(describe(exc)) from None


def archive_problem(archive: str) -> str | None:
    """Worker side (``client.run``): why ``archive`` cannot be read here, or ``None``.
    A relative path is resolved in the worker's working directory, which is named."""
    try:
        if os.path.isdir(archive):
            os.listdir(archive)
        else:
            with open(archive, "rb"):
                pass
    except OSError as exc:
        return f"cannot read the archive {archive} (working directory {os.getcwd()}): {exc}"
    return None


def describe(error: BaseException | None) -> str:
    """``Type: message`` on one line, bounded."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


#: Dask settings of the LocalCluster a scan starts. Retries of crashed tasks are ours (per
#: file, see :func:`batchfrac.scan.retry.after_worker_death`), not the scheduler's.
#: Saturation 1.0: a worker holds only the task it runs, none queued behind it, so a worker
#: killed by one file takes no innocent task down with it (at the default 1.1 a
#: single-threaded worker holds two, and the second one's file could be blamed).
#: Recommended for a ``--scheduler`` cluster.
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
def worker_malloc_environ() -> Iterator[None]:
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
                results += guarded(ingest, [path], config)
    return results


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
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
