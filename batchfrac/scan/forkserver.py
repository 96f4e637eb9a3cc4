"""How the worker processes of a scan's own ``LocalCluster`` start: forked from one server.

A spawned Dask worker is a new interpreter that imports Dask, runs the main module again
(for the ``batchfrac`` script: the whole CLI), and imports the decoding stack on its first
task: 2–3 CPU-seconds each, paid by every worker of every scan and again by every worker
restarted after a crash or a hung file. Instead, one fork server per scan process imports
all that once (:data:`FORKSERVER_PRELOAD`) and each worker is forked from it, ready.

:func:`start_forkserver` is called as early as a scan knows it will start local workers
(the CLI calls it before it loads the scan's own modules), so the server's imports run on
another core while this process loads the rest; :func:`batchfrac.scan.cluster.connect`
calls it again (a no-op once it runs). When nothing turns out to need decoding (a resumed
or ``--previous`` scan with no new files), the server has cost only its imports, on the
other core. It ends with this process, and so do the workers forked from it, also when
this process is killed. This module imports the standard library only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping

log = logging.getLogger(__name__)

#: glibc malloc settings of the workers. Dask starts workers with
#: ``MALLOC_TRIM_THRESHOLD_=65536``, and setting any malloc threshold freezes glibc's mmap
#: threshold at 128 KiB: every full-resolution frame (tens of MB, several per file) is then
#: a fresh ``mmap`` the kernel must zero page by page, and ``munmap``-ed when freed. On 788
#: radiographs that was 18 s of system time on 2 cores. Buffers up to 64 MiB now come from
#: the heap, which keeps up to 256 MiB free for the next file; a worker's footprint stays
#: bounded by one file.
WORKER_MALLOC_ENVIRON = {
    "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
}

#: The environment the workers start with (glibc and numpy read it at start, so it is the
#: fork server's): one thread per numerical library, as Dask sets it (each worker is one
#: single-threaded process; the cores are shared out as processes), and
#: :data:`WORKER_MALLOC_ENVIRON`. Dask's ``distributed.nanny.pre-spawn-environ`` does not
#: reach forked workers; these replace it.
WORKER_ENVIRON = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    **WORKER_MALLOC_ENVIRON,
}

#: What the fork server imports once for all the workers it forks: Dask's worker, the
#: decoding stack every task needs (pydicom, its codecs, OpenCV, numpy), and the CLI.
#: multiprocessing runs the main module again in each worker: for the ``batchfrac``
#: script that imports the CLI, then found loaded (Python 3.11's fork server ignores
#: ``"__main__"`` here). A main module run as ``python -m NAME`` is added by name.
FORKSERVER_PRELOAD = ["distributed", "batchfrac.ingest.entry", "batchfrac.cli"]

#: Dask setting under which the nannies of our LocalCluster ask the fork server for workers.
FORKSERVER_CONFIG = {"distributed.worker.multiprocessing-method": "forkserver"}


def start_forkserver() -> bool:
    """Start this process's fork server, unless it runs (it lives until this process ends);
    ``False`` (and a warning in the log) if it cannot: workers are then spawned, as Dask
    does by default (e.g. no Unix socket can be made in the temporary directory).

    It starts with :data:`WORKER_ENVIRON` and with SIGINT ignored (see
    :func:`sigint_ignored`), and every worker forked from it inherits both; this
    process's own environment is left as it was.
    """
    import multiprocessing
    import multiprocessing.forkserver

    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    by_name = [main_spec.name] if main_spec is not None else []  # python -m NAME
    with sigint_ignored(), environ(WORKER_ENVIRON):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([*FORKSERVER_PRELOAD, *by_name])
        try:
            multiprocessing.forkserver.ensure_running()
        except OSError as exc:
            log.warning("cannot start a fork server (%s): Dask workers are spawned", exc)
            return False
    return True


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` set in this process's environment (inherited by processes started
    meanwhile), and every one of them restored afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
