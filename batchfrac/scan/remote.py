"""``--infer-on workers``, the worker side: the bundle plugin and the whole-chunk task.

Each worker loads the bundle once, from its *path*, through :class:`BundlePlugin` (a
``distributed.WorkerPlugin`` the driver registers with the bundle id and weight hashes
it loaded; no network travels through the scheduler). The plugin checks that this
worker runs the driver's batchfrac version and sees the same bundle (every weight file's
sha256), and keeps the reason when it does not: the driver asks every worker for its
:func:`worker_state` before any work and refuses the scan (:mod:`batchfrac.scan.fleet`).

A task (:func:`infer_chunk`) decodes one chunk (with the same per-file watchdog as a
decode-only task), runs the trunk, the router and the bone heads on its ok images with
:class:`~batchfrac.scan.inference.BatchPredictor`, and returns the chunk's report rows
(:class:`InferredChunk`): no pixel array leaves the worker. The bundle runs on ONNX
Runtime by default, so workers need no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from ..enums import Backend, Head, Routing, Status
from ..errors import BatchfracError, BundleError
from ..report.rows import ImageRow, image_row
from .chunks import IngestChunk
from .cluster import WorkerRefused
from .inference import BatchPredictor
from .workers import archive_problem, describe, guarded, watched_ingest

#: The plugin's name on the workers (one bundle per cluster at a time).
PLUGIN_NAME = "batchfrac-bundle"


@dataclass(frozen=True)
class RemoteSettings:
    """What a whole-chunk task needs besides its paths."""

    ingest: Any  #: :class:`batchfrac.ingest.entry.IngestConfig`
    batch_size: int | None  #: ``None``: what suits the worker's device
    routing: Routing
    low_confidence: float


@dataclass
class InferredChunk:
    """One chunk's report rows made on a worker, with what the work took there."""

    rows: list[ImageRow]
    #: ``(path, entry)``: what ingest logged for the driver's scan.log.
    logs: list[tuple[str, str]]
    decode_ms: float
    images: int
    trunk_images: int
    inference_s: float
    worker: str


class BundlePlugin(WorkerPlugin):
    """Loads the bundle at ``path`` once per worker and checks it is the driver's."""

    name = PLUGIN_NAME

    def __init__(
        self,
        path: str,
        bundle_id: str,
        weights_sha256: dict[str, str],
        version: str,
        backend: str = Backend.AUTO.value,
        threads: int | None = None,
    ) -> None:
        self.path = path
        self.bundle_id = bundle_id
        self.weights_sha256 = dict(weights_sha256)
        self.version = version
        self.backend = backend
        self.threads = threads
        self.bundle: Any = None
        self.problem: str | None = None
        self._predictors: dict[tuple[int, Routing], BatchPredictor] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(bundle=None, problem=None, _predictors={}, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def setup(self, worker: Any = None) -> None:
        if self.threads is None and worker is not None:  # one core per worker thread
            self.threads = getattr(worker, "nthreads", None)
        try:
            self.bundle = self.load()
        except Exception as exc:  # noqa: BLE001 - kept for the driver's check
            self.problem = str(exc) if isinstance(exc, BatchfracError) else describe(exc)

    def load(self) -> Any:
        """The verified bundle, on its backend; raises :class:`WorkerRefused`/BundleError."""
        import batchfrac

        from ..bundle.format import ModelBundle

        if batchfrac.__version__ != self.version:
            raise WorkerRefused(
                f"this worker runs batchfrac {batchfrac.__version__}, the driver "
                f"{self.version}: install the same version everywhere"
            )
        if not Path(self.path).is_dir():
            raise WorkerRefused(f"this worker cannot see the bundle folder {self.path}")
        bundle = ModelBundle.load(Path(self.path))  # checks every weight file's sha256
        if bundle.bundle_id != self.bundle_id or bundle.weights_sha256() != self.weights_sha256:
            raise BundleError(
                f"the bundle at {self.path} on this worker is {bundle.bundle_id}, not the "
                f"driver's {self.bundle_id} (its weight files differ)"
            )
        missing = sorted({h.value for h in Head} - set(bundle.heads()))
        if missing:
            raise BundleError(f"bundle {self.path} cannot scan: it lacks the heads {missing}")
        bundle.use_backend(Backend(self.backend), threads=self.threads)
        return bundle

    def predictor(self, batch_size: int | None, routing: Routing) -> BatchPredictor:
        """This worker's predictor for these settings (built once)."""
        if self.bundle is None:
            raise WorkerRefused(f"this worker has no usable bundle: {self.problem}")
        size = batch_size or self.bundle.backend.batch_size
        key = (size, routing)
        if key not in self._predictors:
            self._predictors[key] = BatchPredictor(self.bundle, batch_size=size, routing=routing)
        return self._predictors[key]


def _plugin(worker: Any = None) -> tuple[Any, BundlePlugin | None]:
    from distributed import get_worker

    worker = worker or get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    return worker, plugin if isinstance(plugin, BundlePlugin) else None


def worker_state(archive: str, dask_worker: Any = None) -> dict[str, Any]:
    """Run on every worker (``client.run``, which passes ``dask_worker``) before any
    work: version, bundle, backend, and whether the archive is readable from here."""
    import batchfrac

    _worker, plugin = _plugin(dask_worker)
    state: dict[str, Any] = {
        "version": batchfrac.__version__,
        "host": os.uname().nodename,
        "problem": None,
        "backend": None,
        "archive_problem": archive_problem(archive),
    }
    if plugin is None:
        state["problem"] = "the batchfrac bundle plugin is not set up on this worker"
    elif plugin.bundle is None:
        state["problem"] = plugin.problem or "the bundle was not loaded"
    else:
        info = plugin.bundle.backend
        state["bundle_id"] = plugin.bundle.bundle_id
        state["backend"] = {
            "name": info.name,
            "device": info.device,
            "providers": list(info.providers),
            "batch_size": info.batch_size,
            "graphs_sha256": dict(info.graphs_sha256),
        }
    return state


def infer_chunk(
    ingest: IngestChunk, paths: Sequence[str], settings: RemoteSettings, timeout: float | None
) -> InferredChunk:
    """Worker side: decode ``paths`` and infer their ok images; only rows come back."""
    import numpy as np

    worker, plugin = _plugin()
    if plugin is None:
        raise WorkerRefused("the batchfrac bundle plugin is not set up on this worker")
    if timeout is None:
        results = guarded(ingest, paths, settings.ingest)
    else:
        results = watched_ingest(ingest, paths, settings.ingest, timeout)
    ok = [i for i, result in enumerate(results) if result.status is Status.OK]
    predictions: list[Any] = [None] * len(results)
    before = trunk_before = 0
    started = time.perf_counter()
    if ok:
        assert plugin._lock is not None
        with plugin._lock:  # one predictor per worker; tasks may share its threads
            predictor = plugin.predictor(settings.batch_size, settings.routing)
            before, trunk_before = predictor.images, predictor.trunk_images
            pixels = [results[i].pixels for i in ok]
            images = np.stack([p for p in pixels if p is not None]).astype(np.float32, copy=False)
            if len(images) != len(ok):
                raise ValueError("an ok ingest result without pixels")
            for i, prediction in zip(ok, predictor.predict(images), strict=True):
                predictions[i] = prediction
            done, trunk_done = predictor.images - before, predictor.trunk_images - trunk_before
    else:
        done = trunk_done = 0
    seconds = time.perf_counter() - started
    rows = [
        image_row(dataclasses.replace(r, pixels=None), p, low_confidence=settings.low_confidence)
        for r, p in zip(results, predictions, strict=True)
    ]
    logs = [(r.file.path, entry) for r in results for entry in r.log]
    return InferredChunk(
        rows=rows,
        logs=logs,
        decode_ms=sum(r.decode_ms for r in results),
        images=done,
        trunk_images=trunk_done,
        inference_s=seconds,
        worker=str(worker.address),
    )
