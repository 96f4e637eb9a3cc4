"""What runs on, or starts, the Dask worker processes of a scan.

The task wrappers (:func:`watched_ingest` with its per-file watchdog, :func:`guarded`,
which lets no ``BaseException`` out of a task) and the Dask settings of a scan's own
``LocalCluster``; how its worker processes start is :mod:`batchfrac.scan.forkserver`. The
driver side is :mod:`batchfrac.scan.cluster`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
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
