"""``run_scan``: one whole scan of an archive into ``--out``, resumable, with its reports.

Outputs in ``OUTDIR`` (each written atomically): ``parts/part-*.parquet`` (one per finished
chunk, the resume ledger), ``images.parquet``, ``studies.parquet``, ``index.html``,
``run.json`` (last: a run.json newer than the reports means they are complete), optionally
``images.csv``/``studies.csv``, and the log ``scan.log``. Nothing is written anywhere else;
no file name is derived from DICOM values.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import platform
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__
from ..atomic import write_text
from ..enums import Bone, Head, Status
from ..errors import BatchfracError, BundleError
from ..ingest.preprocess import PreprocessSpec
from ..report.aggregate import aggregate_studies
from ..report.csv_export import export_csv
from ..report.html import render_index
from ..report.parquet import Provenance, write_parquet
from ..report.rows import ImageRow
from ..report.runinfo import write_run_json
from ..report.schema import load_schema, rows_to_table
from .chunks import IngestChunk, NullObserver, ScanObserver, local_ingest, pending_chunks
from .cluster import dask_ingest
from .config import ScanConfig
from .feed import ChunkInference
from .inference import BatchPredictor, InferenceBundle
from .resume import Ledger, config_id, outdir_lock, remove_stale_temp_files

log = logging.getLogger(__name__)

LOG_FILE = "scan.log"
EXIT_OK = 0
EXIT_ERRORS = 3


class ScanBundle(InferenceBundle, Protocol):
    """What a scan needs from :class:`batchfrac.bundle.format.ModelBundle`."""

    bundle_id: str
    demo: bool
    spec: PreprocessSpec
    trunk_sha256: str
    path: Path

    @property
    def notice(self) -> str: ...

    def heads(self) -> list[str]: ...

    def threshold(self, bone: Bone) -> float: ...

    def weights_sha256(self) -> dict[str, str]: ...


class ScanPathError(BatchfracError):
    """The archive or output directory cannot be used."""


@dataclass(frozen=True)
class ScanSummary:
    """What a finished scan reports back: the ``run.json`` document and the exit code."""

    run: dict[str, Any]
    exit_code: int


def check_paths(archive: Path, out: Path) -> None:
    """Refuse an archive that does not exist and an output inside the archive (read-only)."""
    if not archive.exists():
        raise ScanPathError(f"archive not found: {archive}")
    real_archive, real_out = Path(os.path.realpath(archive)), Path(os.path.realpath(out))
    if archive.is_dir() and real_out.is_relative_to(real_archive):
        raise ScanPathError(
            f"--out {out} is inside the archive {archive}; the archive is never written to"
        )
    if out.exists() and not out.is_dir():
        raise ScanPathError(f"--out {out} exists and is not a directory")


def load_bundle(path: Path) -> ScanBundle:
    """Load and verify a bundle that has the router and all seven bone heads."""
    from ..bundle.format import ModelBundle

    bundle = ModelBundle.load(path)
    missing = sorted({h.value for h in Head} - set(bundle.heads()))
    if missing:
        raise BundleError(f"bundle {path} cannot scan: it lacks the heads {missing}")
    return bundle


@contextlib.contextmanager
def scan_log(out: Path) -> Iterator[None]:
    """Append batchfrac's (and Dask's warnings') log records to ``OUTDIR/scan.log``."""
    handler = logging.FileHandler(out / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    ours, dask = logging.getLogger("batchfrac"), logging.getLogger("distributed")
    old_level = ours.level
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    ours.addHandler(handler)
    dask.addHandler(handler)
    try:
        yield
    finally:
        ours.removeHandler(handler)
        dask.removeHandler(handler)
        ours.setLevel(old_level)
        handler.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def run_scan(
    config: ScanConfig,
    observer: ScanObserver | None = None,
    *,
    bundle: ScanBundle | None = None,
    ingest: IngestChunk | None = None,
) -> ScanSummary:
    """Scan ``config.archive`` into ``config.out``; resume from its parts if any.

    ``bundle``/``ingest`` replace the bundle at ``config.bundle`` and
    :func:`batchfrac.ingest.entry.ingest_chunk` (tests). Raises :class:`BatchfracError`
    (bad paths, bundle), ``OSError`` (e.g. no space) and ``KeyboardInterrupt``; finished
    chunks stay in ``parts/`` in every case.
    """
    from ..ingest.decode import DecodePolicy
    from ..ingest.entry import IngestConfig, ingest_chunk

    observer = observer or NullObserver()
    check_paths(config.archive, config.out)
    config.out.mkdir(parents=True, exist_ok=True)
    with outdir_lock(config.out), scan_log(config.out):
        started, clock = _now(), time.perf_counter()
        run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        log.info(
            "scan %s of %s into %s (batchfrac %s)", run_id, config.archive, config.out, __version__
        )
        remove_stale_temp_files(config.out)
        bundle = bundle or load_bundle(config.bundle)
        log.info(
            "bundle %s from %s%s", bundle.bundle_id, bundle.path, " (DEMO)" if bundle.demo else ""
        )
        policy = DecodePolicy(max_pixels=config.max_pixels) if config.max_pixels else DecodePolicy()
        ingest_config = IngestConfig(modalities=config.modalities, decode=policy, spec=bundle.spec)
        settings = {
            "bundle_id": bundle.bundle_id,
            "routing": config.routing.value,
            "modalities": sorted(config.modalities),
            "decode": repr(policy),
            "low_confidence": config.low_confidence,
            "images_schema": load_schema("images").version,
        }
        provenance = Provenance(
            run_id=run_id,
            bundle_id=bundle.bundle_id,
            software_version=__version__,
            spec_id=bundle.spec.spec_id,
            spec=bundle.spec.to_dict(),
            weights_sha256=bundle.weights_sha256(),
            config_id=config_id(settings),
            demo_notice=bundle.notice if bundle.demo else None,
        )
        ledger = Ledger(config.out, provenance.config_id).load()
        log.info(
            "resume ledger: %d files already reported in %d parts", len(ledger), ledger.old_parts
        )
        predictor = BatchPredictor(bundle, batch_size=config.batch_size, routing=config.routing)
        inference = ChunkInference(
            predictor,
            lambda rows: ledger.write_part(rows, provenance),
            low_confidence=config.low_confidence,
            observer=observer,
        )
        chunks = pending_chunks(config.archive, ledger, config.chunk_size, observer)
        first = next(chunks, None)
        warm = _Background(predictor.warm_up if first is not None else None)
        chunks = itertools.chain([first] if first is not None else [], chunks)
        task = ingest or ingest_chunk
        if config.workers == 0 and not config.scheduler:
            if config.timeout is not None:
                log.info("--workers 0: files are decoded in this process, without --timeout")
            stream = local_ingest(chunks, ingest_config, task)
        else:
            stream = dask_ingest(
                chunks,
                ingest_config,
                task,
                workers=config.workers,
                window=config.in_flight,
                scheduler=config.scheduler,
                timeout=config.timeout,
            )
        with contextlib.closing(stream):
            for paths, results in stream:
                warm.join()
                inference.add(paths, results)
        warm.join()
        inference.finish()
        wall = time.perf_counter() - clock
        work = {
            "files_reused": ledger.reused,
            "files_processed": inference.files,
            "inferred_images": predictor.images,
            "trunk_images": predictor.trunk_images,
            "wall_s": wall,
            "decode_s": inference.decode_ms / 1000,
            "inference_s": predictor.seconds,
        }
        run = {"run_id": run_id, "started_at": started, "config": config}
        return write_reports(ledger, bundle, provenance, run, work)


class _Background:
    """Runs ``work`` in a daemon thread; :meth:`join` waits and re-raises its exception."""

    def __init__(self, work: Callable[[], None] | None) -> None:
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if work is not None:
            self._thread = threading.Thread(
                target=self._run, args=(work,), name="batchfrac-warm-up", daemon=True
            )
            self._thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the joining thread
            self._error = exc

    def join(self) -> None:
        """Wait for the work to finish (at once if it has); raise what it raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def write_reports(
    ledger: Ledger,
    bundle: ScanBundle,
    provenance: Provenance,
    run: Mapping[str, Any],
    work: Mapping[str, Any],
) -> ScanSummary:
    """Assemble the parts and write images/studies Parquet, CSV, index.html and run.json."""
    config: ScanConfig = run["config"]
    out = config.out
    images_schema, studies_schema = load_schema("images"), load_schema("studies")
    images = ledger.assemble()
    write_parquet(images, out / "images.parquet", images_schema, provenance)
    scored = images.filter(pc.not_equal(images.column("status"), Status.SKIPPED.value))
    thresholds = {bone: bundle.threshold(bone) for bone in Bone}
    studies = aggregate_studies((ImageRow.from_mapping(r) for r in scored.to_pylist()), thresholds)
    write_parquet(
        rows_to_table(studies, studies_schema), out / "studies.parquet", studies_schema, provenance
    )
    if config.csv:
        export_csv(out)
    counts = _counts(images)
    exit_code = EXIT_ERRORS if counts["status"].get(Status.ERROR.value) else EXIT_OK
    wall = max(work["wall_s"], 1e-9)
    inferred, trunk = work["inferred_images"], work["trunk_images"]
    doc: dict[str, Any] = {
        "schema": "run",
        "schema_version": "1.0.0",
        "run_id": run["run_id"],
        "started_at": run["started_at"],
        "finished_at": _now(),
        "host": socket.gethostname(),
        "software_version": __version__,
        "python_version": platform.python_version(),
        "bundle": {
            "id": bundle.bundle_id,
            "path": str(bundle.path),
            "demo": bool(bundle.demo),
            "notice": bundle.notice,
            "weights_sha256": bundle.weights_sha256(),
            "trunk_sha256": bundle.trunk_sha256,
        },
        "preprocessing": {"spec_id": provenance.spec_id, "spec": dict(provenance.spec)},
        "arguments": config.arguments(),
        "config_id": provenance.config_id,
        "counts": {
            **counts,
            "studies": len(studies),
            "files_reused": work["files_reused"],
            "files_processed": work["files_processed"],
        },
        "throughput": {
            "wall_s": round(work["wall_s"], 3),
            "files_per_s": round(work["files_processed"] / wall, 3),
            "images_per_s": round(inferred / wall, 3),
            "inferred_images": inferred,
            "trunk_images": trunk,
            "trunk_passes_per_image": round(trunk / inferred, 4) if inferred else None,
            "decode_s": round(work["decode_s"], 3),
            "inference_s": round(work["inference_s"], 3),
        },
        "exit_code": exit_code,
    }
    write_text(out / "index.html", render_index(doc, studies))
    write_run_json(out / "run.json", doc)
    log.info(
        "scan %s finished: %d files, %s, exit code %d",
        run["run_id"],
        counts["files"],
        counts["status"],
        exit_code,
    )
    return ScanSummary(doc, exit_code)


def _counts(images: pa.Table) -> dict[str, Any]:
    def tally(column: str) -> dict[str, int]:
        values = pc.value_counts(images.column(column).drop_null()).to_pylist()
        return {v["values"]: v["counts"] for v in values}

    return {
        "files": pc.count_distinct(images.column("path")).as_py() if images.num_rows else 0,
        "rows": images.num_rows,
        "status": tally("status"),
        "reason": tally("reason"),
    }
