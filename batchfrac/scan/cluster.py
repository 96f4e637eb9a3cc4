"""Decoding on a Dask cluster: a bounded window of chunk tasks, crashes and hangs handled.

This is the only module that imports Dask (inside its functions). The task function is
:func:`batchfrac.ingest.entry.ingest_chunk`, whose import chain is free of TensorFlow, so
worker processes never load it. At most ``window`` chunks are in flight, and the window is
refilled before the driver starts inference on a finished chunk, so workers keep decoding
while the trunk runs; the walk is consumed lazily, so memory stays flat whatever the
archive size.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ..errors import BatchfracError
from ..records import ImageResult
from .chunks import ChunkResults, IngestChunk
from .forkserver import FORKSERVER_CONFIG, WORKER_ENVIRON, environ, sigint_ignored, start_forkserver
from .retry import after_lost_rows, after_task_failure, after_worker_death, overdue
from .workers import (
    LOCAL_CLUSTER_CONFIG,
    TIMEOUT_TOPIC,
    archive_problem,
    describe,
    guarded,
    watched_ingest,
)

log = logging.getLogger(__name__)

#: Seconds to reach an existing scheduler (``--scheduler``) before the scan gives up.
CONNECT_TIMEOUT_S = 30.0


class SchedulerUnreachable(BatchfracError):
    """``--scheduler`` names a scheduler that does not answer."""


class WorkerRefused(BatchfracError):
    """A worker cannot take part in the scan (version, bundle or archive): the scan stops
    (finished chunks are kept) rather than blame the files of its chunk."""


def dask_ingest(
    chunks: Iterable[list[str]],
    config: Any,
    ingest: IngestChunk,
    *,
    workers: int,
    window: int,
    scheduler: str | None = None,
    timeout: float | None = None,
    client: Any = None,
    task: RemoteTask | None = None,
    resources: dict[str, float] | None = None,
    archive: str | None = None,
) -> ChunkResults:
    """Ingest chunks on a Dask cluster with at most ``window`` chunks in flight.

    ``scheduler`` is the address of an existing cluster; otherwise a ``LocalCluster`` of
    ``workers`` single-threaded processes is started (and closed when the generator ends,
    also on Ctrl-C). A chunk whose worker dies is retried one file per task so the
    crash is pinned on one file, which then gets an ``error`` row (``decode_error``).
    With ``timeout``, a file still being ingested after that many seconds makes its
    worker report it and exit (:func:`watched_ingest`; the nanny starts a fresh process):
    that file gets an ``error`` row (``timeout``) and the rest of its chunk is retried.

    ``client`` is an open client to use (not closed here); ``task(ingest, paths, config,
    timeout)`` replaces the decode-only task (``--infer-on workers``:
    :func:`batchfrac.scan.remote.infer_chunk`), submitted with ``resources``. With
    ``archive`` and ``scheduler``, every worker must be able to read it
    (:class:`WorkerRefused` before any task otherwise).
    """
    chunks = iter(chunks)
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(connect(workers, scheduler))
        log.info("decoding on Dask: %s", client)
        if archive is not None and scheduler:
            check_archive(client, archive)
        tasks = _Tasks(client, ingest, config, timeout, task, resources)
        for paths in islice(chunks, window):
            tasks.submit(paths)
        while tasks.in_flight:
            for paths, results in tasks.next_finished():
                if paths:
                    yield paths, results
            for refill in islice(chunks, max(0, window - tasks.in_flight)):
                tasks.submit(refill)


def check_archive(client: Any, archive: str) -> None:
    """Refuse (:class:`WorkerRefused`) unless every worker can read ``archive``."""
    problems = client.run(archive_problem, archive)
    refused = [f"{address}: {problem}" for address, problem in sorted(problems.items()) if problem]
    if refused:
        raise WorkerRefused(
            "refused: " + "; ".join(refused) + " (workers must see the archive at the same "
            "path: shared storage)"
        )


#: A task run on a worker instead of the decode-only one: ``(ingest, paths, config,
#: timeout) -> results`` (see :func:`dask_ingest`).
RemoteTask = Callable[[IngestChunk, list[str], Any, "float | None"], Any]


@contextlib.contextmanager
def connect(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client of the cluster at ``scheduler``, or of a new ``LocalCluster``."""
    import dask
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT_S))
            except (OSError, TimeoutError) as exc:
                raise SchedulerUnreachable(
                    f"cannot reach the Dask scheduler at {scheduler} within "
                    f"{CONNECT_TIMEOUT_S:.0f} s: {exc}"
                ) from None
            yield client
            return
        # Workers are forked from this process's fork server (see .forkserver), or spawned
        # if it cannot start; a nanny also sets its pre-spawn environment in the worker it
        # starts, so that says the same.
        spawn_environ = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
        settings: dict[str, object] = dict(LOCAL_CLUSTER_CONFIG)
        if start_forkserver():
            settings.update(FORKSERVER_CONFIG)
        settings["distributed.nanny.pre-spawn-environ"] = {**spawn_environ, **WORKER_ENVIRON}
        stack.enter_context(dask.config.set(settings))
        with sigint_ignored(), environ(WORKER_ENVIRON):  # inherited by spawned workers
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        stack.enter_context(cluster)
        yield stack.enter_context(Client(cluster))


@dataclass
class _Task:
    future: Any
    paths: list[str]
    deadline: float | None  # time.monotonic() after which the driver stops waiting


class _Tasks:
    """The chunk tasks in flight on one client: submission, completion, and retries.

    The driver never blocks on one task: it waits for the first of them to finish, up to
    the nearest deadline, and reads a failed task's exception with ``Future.exception()``
    rather than ``Future.result()``. A task's deadline (``timeout`` per file plus
    :data:`DEADLINE_GRACE_S`) starts when a worker starts it, not while it queues behind
    others. If no task starts or finishes for :data:`STALL_S`, the cluster has no working
    worker left and the scan stops (:class:`ClusterStalled`; its finished parts are kept).
    ``--timeout 0`` asks for no limit: then nothing is given up and nothing stalls.
    """

    def __init__(
        self,
        client: Any,
        ingest: IngestChunk,
        config: Any,
        timeout: float | None,
        task: RemoteTask | None = None,
        resources: dict[str, float] | None = None,
    ) -> None:
        self.client = client
        self.task = task
        self.resources = resources
        self.ingest = ingest
        self.config = config
        self.timeout = timeout
        self.since = time.time()
        self._tasks: dict[str, _Task] = {}
        self._deaths: dict[str, int] = {}
        self._losses: dict[str, int] = {}
        self._progress = time.monotonic()  # when a task last started or finished

    @property
    def in_flight(self) -> int:
        """Chunks submitted and not yet collected."""
        return len(self._tasks)

    def submit(self, paths: list[str]) -> None:
        """Start one task on ``paths`` (watched by a per-file deadline with a timeout)."""
        if self.task is not None:
            future = self.client.submit(self.task, self.ingest, paths, self.config, self.timeout,
                                        pure=False, resources=self.resources)  # fmt: skip
        elif self.timeout is None:
            future = self.client.submit(guarded, self.ingest, paths, self.config, pure=False)
        else:
            future = self.client.submit(
                watched_ingest, self.ingest, paths, self.config, self.timeout, pure=False
            )
        self._tasks[future.key] = _Task(future, paths, None)

    def next_finished(self) -> list[tuple[list[str], list[ImageResult]]]:
        """Wait for at least one task to finish (or to pass its deadline) and collect every
        finished one: ``(paths, rows)`` per task; after a failure, the files blamed and
        their rows (the rest of the chunk is submitted again), possibly none."""
        from distributed import wait

        with contextlib.suppress(TimeoutError):  # a deadline passed: handled below
            wait([t.future for t in self._tasks.values()], timeout=self._wait_s(),
                 return_when="FIRST_COMPLETED")  # fmt: skip
        self._start_deadlines()
        now = time.monotonic()
        collected = []
        for key, task in list(self._tasks.items()):
            if task.future.done():
                del self._tasks[key]
                self._progress = now
                collected.append(self._collect(task))
            elif task.deadline is not None and now >= task.deadline:
                del self._tasks[key]
                collected.append(self._give_up(task))
        if not collected and self.timeout is not None and now - self._progress > STALL_S:
            raise ClusterStalled(
                f"no decoding task started or finished for {STALL_S:.0f} s: the Dask "
                "cluster has no working worker (finished chunks are kept; run again to resume)"
            )
        return collected

    def _wait_s(self) -> float | None:
        """How long to wait for a task to finish: until the nearest deadline, and no longer
        than :data:`POLL_S` while some task has not started (its deadline is not set yet)."""
        now = time.monotonic()
        deadlines = [t.deadline for t in self._tasks.values() if t.deadline is not None]
        waits = [max(0.0, d - now) for d in deadlines if d != float("inf")]
        if len(deadlines) < len(self._tasks):
            waits.append(POLL_S)
        return min(waits) if waits else None

    def _start_deadlines(self) -> None:
        """Give each task that a worker has started its deadline (with a timeout)."""
        waiting = [t for t in self._tasks.values() if t.deadline is None]
        if not waiting:
            return
        try:
            running = {key for keys in self.client.processing().values() for key in keys}
        except Exception as exc:  # noqa: BLE001 - the scheduler will answer next time
            log.debug("cannot ask the scheduler what runs: %s", exc)
            return
        now = time.monotonic()
        for task in waiting:
            if task.future.key in running:
                self._progress = now
                if self.timeout is not None:
                    task.deadline = now + self.timeout * len(task.paths) + DEADLINE_GRACE_S
                else:
                    task.deadline = float("inf")  # started; no limit

    def _collect(self, task: _Task) -> tuple[list[str], list[ImageResult]]:
        from distributed.scheduler import KilledWorker

        future = task.future
        if future.status == "finished":
            try:  # the rows live on the worker that made them, which may since have frozen
                results: list[ImageResult] = future.result(timeout=RESULT_FETCH_TIMEOUT_S)
            except TimeoutError:
                return self._lost(task)
            future.release()
            return task.paths, results
        # Future.exception(), not .result(): result() re-raises through tornado, which lets
        # a BaseException (a Rust codec's PanicException) escape and never wakes the caller.
        error = future.exception()
        future.release()
        if isinstance(error, WorkerRefused):
            raise WorkerRefused(str(error)) from None
        if isinstance(error, KilledWorker):
            hung = _reported_hung(self.client, self.since) if self.timeout is not None else set()
            retry, paths, results = after_worker_death(task.paths, hung, self._deaths, self.timeout)
        else:
            retry, paths, results = after_task_failure(task.paths, describe(error))
        for again in retry:
            self.submit(again)
        return paths, results

    def _lost(self, task: _Task) -> tuple[list[str], list[ImageResult]]:
        """A finished task whose rows cannot be fetched (its worker stopped answering):
        restart that worker and run the chunk again, without counting a death (see
        :func:`~batchfrac.scan.retry.after_lost_rows`)."""
        log.warning("the rows of a finished chunk of %d files could not be fetched in %.0f s; "
                    "running it again", len(task.paths), RESULT_FETCH_TIMEOUT_S)  # fmt: skip
        holders: list[str] = []
        with contextlib.suppress(Exception):
            holders = list(self.client.who_has(task.future).get(task.future.key, ()))
        task.future.cancel()
        _restart(self.client, holders)
        retry, paths, results = after_lost_rows(task.paths, self._losses)
        for again in retry:
            self.submit(again)
        return paths, results

    def _give_up(self, task: _Task) -> tuple[list[str], list[ImageResult]]:
        assert self.timeout is not None
        # Ask where it runs before cancelling: once cancelled, the scheduler forgets, sees
        # the frozen worker idle and hands it the split chunk's files, which then go
        # unanswered too. So the worker is restarted before anything is submitted again.
        busy = _workers_running(self.client, task.future.key)
        task.future.cancel()
        _restart(self.client, busy)
        seconds = self.timeout * len(task.paths) + DEADLINE_GRACE_S
        retry, paths, results = overdue(task.paths, seconds)
        for again in retry:
            self.submit(again)
        return paths, results


#: Seconds between looks at which queued tasks a worker has started.
POLL_S = 5.0

#: Seconds without any task starting or finishing after which the cluster is declared
#: stalled (every worker frozen or gone, and none coming back).
STALL_S = 900.0


class ClusterStalled(BatchfracError):
    """No task of the scan started or finished for :data:`STALL_S` seconds."""


#: Seconds to fetch a finished task's rows from its worker before running the task again.
RESULT_FETCH_TIMEOUT_S = 60.0

#: Seconds the driver waits beyond a task's per-file timeouts before it gives up on the
#: task (the worker's own watchdog normally reports a hung file long before).
DEADLINE_GRACE_S = 120.0


def _workers_running(client: Any, key: str) -> list[str]:
    """The workers the scheduler has task ``key`` processing on (none if it cannot say)."""
    try:
        return [addr for addr, keys in client.processing().items() if key in keys]
    except Exception as exc:  # noqa: BLE001 - a best effort; the task is given up anyway
        log.warning("cannot ask the scheduler where task %s runs: %s", key, exc)
        return []


def _restart(client: Any, workers: list[str]) -> None:
    """Restart ``workers`` (frozen processes) and wait until they are back. Their nannies
    kill and replace them; the scheduler removes a worker without a nanny, or one whose
    process does not go away, so no new task is handed to a frozen worker either way."""
    if not workers:
        return
    try:
        outcome = client.restart_workers(workers, timeout=RESTART_TIMEOUT_S, raise_for_error=False)
    except Exception as exc:  # noqa: BLE001 - a best effort; the task is already given up
        log.warning("could not restart the worker(s) %s: %s", workers, exc)
        return
    log.warning("restarted the unanswering worker(s): %s", outcome)


#: Seconds to wait for an unanswering worker to be replaced before work goes on.
RESTART_TIMEOUT_S = 30.0


def _reported_hung(client: Any, since: float) -> set[str]:
    """Paths that workers reported on :data:`TIMEOUT_TOPIC` (see :func:`watched_ingest`)
    at or after ``since`` (``time.time()``; a long-lived cluster keeps older events)."""
    return {msg["path"] for when, msg in client.get_events(TIMEOUT_TOPIC) if when >= since}
