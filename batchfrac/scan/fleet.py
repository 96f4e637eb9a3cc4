"""``--infer-on workers``, the driver side: check the workers, then collect their rows.

Before any work (:func:`join_fleet`): the bundle plugin is registered on the cluster
(:class:`~batchfrac.scan.remote.BundlePlugin`, with the bundle's path, id and weight
hashes), and every worker is asked (``client.run``) for its batchfrac version, the
bundle it loaded, its backend and whether it can read the archive. Any worker that
differs or cannot see the archive refuses the scan (:class:`WorkerRefused`, exit 1).
Tasks ask for a ``GPU`` resource when some worker advertises one.

Then :func:`remote_pending` runs the same chunk loop as decoding
(:func:`batchfrac.scan.cluster.dask_ingest`, with its retry policy and deadlines) on
whole-chunk tasks, and writes each chunk's rows as a part, as a local scan does. This
process never builds a network: it imports neither Keras nor onnxruntime.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..enums import Status
from ..records import ImageResult
from ..report.rows import ImageRow, image_row
from ..report.runinfo import InferenceInfo, ScanWork, WorkerInference
from .chunks import NullObserver, ScanObserver, pending_chunks
from .cluster import CONNECT_TIMEOUT_S, connect, dask_ingest
from .remote import PLUGIN_NAME, BundlePlugin, InferredChunk, RemoteSettings, WorkerRefused
from .remote import infer_chunk as infer_chunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fleet:
    """The checked workers of a ``--infer-on workers`` scan."""

    client: Any
    workers: dict[str, dict[str, Any]]  #: address -> :func:`~.remote.worker_state`
    resources: dict[str, float] | None  #: what each inference task asks for

    @property
    def backend(self) -> str:
        """The backend every worker runs (they all run the same one)."""
        return next(iter(self.workers.values()))["backend"]["name"]

    def inference_info(self, requested: str, batch_size: int | None) -> InferenceInfo:
        """``run.json``'s ``inference`` of this scan: where, and each worker's device."""
        devices = [
            WorkerInference(
                address,
                state["host"],
                state["backend"]["name"],
                state["backend"]["device"],
                tuple(state["backend"]["providers"]),
                batch_size or state["backend"]["batch_size"],
                dict(state["resources"]),
            )  # fmt: skip
            for address, state in sorted(self.workers.items())
        ]
        first = next(iter(self.workers.values()))["backend"]
        return InferenceInfo(
            requested=requested,
            backend=first["name"],
            note=None,
            device="gpu" if any(d.device == "gpu" for d in devices) else first["device"],
            providers=tuple(sorted({p for d in devices for p in d.providers})),
            threads=None,
            batch_size=min(d.batch_size for d in devices),
            graphs_sha256=dict(first["graphs_sha256"]),
            where="workers",
            workers=tuple(devices),
        )


@contextlib.contextmanager
def join_fleet(config: Any, bundle: Any) -> Iterator[Fleet]:
    """Connect to ``config.scheduler``, set the bundle up on every worker and check them
    all (:class:`WorkerRefused` with every problem found); the plugin is removed after."""
    with connect(0, config.scheduler) as client:
        plugin = BundlePlugin(
            str(bundle.path.resolve()), bundle.bundle_id, bundle.weights_sha256(),
            __version__, config.backend.value,
        )  # fmt: skip
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise WorkerRefused(
                f"the Dask cluster at {config.scheduler} has no worker (waited "
                f"{CONNECT_TIMEOUT_S:.0f} s)"
            ) from None
        try:
            client.register_plugin(plugin, name=PLUGIN_NAME)
        except Exception as exc:  # noqa: BLE001 - e.g. a worker without this module
            raise WorkerRefused(f"a worker could not set the bundle plugin up: {exc}") from None
        try:
            yield check_workers(client, str(config.archive))
        finally:
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(PLUGIN_NAME)


def check_workers(client: Any, archive: str) -> Fleet:
    """Ask every worker for its state; refuse unless all are usable and alike."""
    from .remote import worker_state

    try:
        states: dict[str, dict[str, Any]] = client.run(worker_state, archive)
    except Exception as exc:  # noqa: BLE001 - e.g. an older batchfrac without this function
        raise WorkerRefused(
            f"cannot ask the workers for their batchfrac state ({exc}): do they run "
            f"batchfrac {__version__}?"
        ) from None
    advertised = client.scheduler_info().get("workers", {})
    for address, state in states.items():  # as the scheduler knows them (dask worker --resources)
        state["resources"] = dict(advertised.get(address, {}).get("resources") or {})
    problems = []
    for address, state in sorted(states.items()):
        if state["version"] != __version__:
            problems.append(f"{address} runs batchfrac {state['version']}, this driver "
                            f"{__version__}")  # fmt: skip
        elif state["problem"]:
            problems.append(f"{address}: {state['problem']}")
        if state["archive_problem"]:
            problems.append(f"{address}: {state['archive_problem']} (workers must see the "
                            "archive at the same path: shared storage)")  # fmt: skip
    backends = {s["backend"]["name"] for s in states.values() if s["backend"]}
    if not problems and len(backends) > 1:
        problems.append(f"the workers run different backends {sorted(backends)}: their "
                        "probabilities would differ; pass --backend onnx or keras")  # fmt: skip
    if problems:
        raise WorkerRefused("refused: " + "; ".join(problems))
    gpu = {a: s for a, s in states.items() if s["resources"].get("GPU")}
    for address, state in states.items():
        log.info("worker %s (%s): batchfrac %s, %s on %s%s", address, state["host"],
                 state["version"], state["backend"]["name"], state["backend"]["device"],
                 " [GPU resource]" if address in gpu else "")  # fmt: skip
    if gpu:
        log.info("inference tasks ask for a GPU resource: %d of %d workers have one",
                 len(gpu), len(states))  # fmt: skip
    return Fleet(client, gpu or states, {"GPU": 1} if gpu else None)


class RemoteFeed:
    """The driver's side of worker inference: each finished chunk's rows become a part."""

    def __init__(
        self,
        write_part: Callable[[list[ImageRow]], object],
        *,
        low_confidence: float,
        observer: ScanObserver | None = None,
    ) -> None:
        self.write_part = write_part
        self.low_confidence = low_confidence
        self.observer = observer or NullObserver()
        self.files = self.images = self.trunk_images = 0
        self.decode_ms = self.inference_s = 0.0

    def add(self, paths: Sequence[str], results: InferredChunk | list[ImageResult]) -> None:
        """A chunk's rows from a worker, or rows made here (walk rejects, retry errors)."""
        self.files += len(paths)
        if isinstance(results, InferredChunk):
            for path, entry in results.logs:
                log.warning("%s: %s", path, entry)
            rows = results.rows
            self.images += results.images
            self.trunk_images += results.trunk_images
            self.inference_s += results.inference_s
            self.decode_ms += results.decode_ms
        else:
            for result in results:
                if result.status is Status.OK:
                    raise ValueError(f"an ok row without a prediction: {result.file.path}")
                for entry in result.log:
                    log.warning("%s: %s", result.file.path, entry)
            rows = [image_row(r, None, low_confidence=self.low_confidence) for r in results]
            self.decode_ms += sum(r.decode_ms for r in results)
        self.write_part(rows)
        self.observer.chunk_written(rows)


def remote_pending(
    config: Any,
    fleet: Fleet,
    ingest_config: Any,
    ledger: Any,
    provenance: Any,
    observer: ScanObserver,
    ingest: Any = None,
    *,
    started: float,
) -> ScanWork:
    """Decode and infer every file the ledger does not hold yet on the fleet's workers."""
    from ..ingest.entry import ingest_chunk

    feed = RemoteFeed(lambda rows: ledger.write_part(rows, provenance),
                      low_confidence=config.low_confidence, observer=observer)  # fmt: skip
    settings = RemoteSettings(ingest_config, config.batch_size, config.routing,
                              config.low_confidence)  # fmt: skip
    chunks = pending_chunks(config.archive, ledger, config.chunk_size, observer, feed.add)
    stream = dask_ingest(
        chunks,
        settings,
        ingest or ingest_chunk,
        workers=len(fleet.workers),
        window=config.window or max(2, 2 * len(fleet.workers)),
        timeout=config.timeout,
        client=fleet.client,
        task=infer_chunk,
        resources=fleet.resources,
    )
    with contextlib.closing(stream):
        for paths, results in stream:
            feed.add(paths, results)
    return ScanWork(
        files_reused=ledger.reused,
        files_processed=feed.files,
        inferred_images=feed.images,
        trunk_images=feed.trunk_images,
        wall_s=time.perf_counter() - started,
        decode_s=feed.decode_ms / 1000,
        inference_s=feed.inference_s,
        inference_idle_share=None,
    )
