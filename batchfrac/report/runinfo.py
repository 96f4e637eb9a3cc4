"""``run.json``: what one scan did, built from typed records and validated against
``schemas/run.schema.json``.

A scan fills these records as it goes (:class:`RunInfo` when it starts, :class:`BundleInfo`
when the bundle is loaded, :class:`ScanWork` when the last chunk is done) and
:func:`run_document` turns them, with the counts of the written reports, into the JSON
document: nothing is looked up twice and nothing travels in an untyped dict.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from .. import __version__
from ..atomic import REPORT_FILE_MODE, write_text
from ..errors import SpecError
from .deidentify import PSEUDONYMS_META_KEY, run_json_record
from .parquet import Provenance
from .schema import check_run_json

RUN_SCHEMA_VERSION = "1.2.0"


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Who ran the scan, where and when it started."""

    run_id: str
    started_at: str
    host: str
    software_version: str
    python_version: str
    working_directory: str = ""

    @classmethod
    def start(cls) -> RunInfo:
        """A new run: a sortable, unique id (UTC start time + random suffix), this host."""
        now = datetime.now(timezone.utc)
        return cls(
            run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
            started_at=now.isoformat(timespec="milliseconds"),
            host=socket.gethostname(),
            software_version=__version__,
            python_version=platform.python_version(),
            working_directory=os.getcwd(),
        )


class _Bundle(Protocol):
    bundle_id: str
    path: Path
    demo: bool
    trunk_sha256: str

    @property
    def notice(self) -> str: ...


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """The model bundle a scan used (its weight hashes travel in :class:`Provenance`)."""

    id: str
    path: str
    demo: bool
    notice: str | None
    trunk_sha256: str

    @classmethod
    def of(cls, bundle: _Bundle) -> BundleInfo:
        """The record of a loaded bundle."""
        return cls(bundle.bundle_id, str(bundle.path), bool(bundle.demo), bundle.notice,
                   bundle.trunk_sha256)  # fmt: skip


class _Backend(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def note(self) -> str | None: ...
    @property
    def device(self) -> str: ...
    @property
    def providers(self) -> tuple[str, ...]: ...
    @property
    def threads(self) -> int | None: ...
    @property
    def graphs_sha256(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class WorkerInference:
    """One Dask worker that ran the networks (``--infer-on workers``)."""

    address: str
    host: str
    backend: str
    device: str
    providers: tuple[str, ...]
    batch_size: int
    resources: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class InferenceInfo:
    """What ran the networks: the backend asked for and the one used, and how; ``where``
    they ran (``driver`` or ``workers``) and, on workers, each worker's device."""

    requested: str
    backend: str
    note: str | None
    device: str
    providers: tuple[str, ...]
    threads: int | None
    batch_size: int
    graphs_sha256: Mapping[str, str]
    where: str = "driver"
    workers: tuple[WorkerInference, ...] = ()

    @classmethod
    def of(cls, requested: str, backend: _Backend, batch_size: int) -> InferenceInfo:
        """The record of a chosen backend (:class:`batchfrac.bundle.device.BackendInfo`)."""
        return cls(requested, backend.name, backend.note, backend.device,
                   tuple(backend.providers), backend.threads, batch_size,
                   dict(backend.graphs_sha256))  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScanWork:
    """What the scan measured while it ran.

    ``inference_idle_share``: the share of the inference phase (from the networks
    being ready to the last batch) in which the inference device (GPU, or the driver's
    CPU threads) sat idle waiting for decoded images; ``None`` when nothing was inferred.
    """

    files_reused: int
    files_processed: int
    inferred_images: int
    trunk_images: int
    wall_s: float
    decode_s: float
    inference_s: float
    inference_idle_share: float | None = None


@dataclass(frozen=True, slots=True)
class Counts:
    """Counts of the written reports."""

    files: int
    rows: int
    studies: int
    status: Mapping[str, int]
    reason: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Everything ``run.json`` says about a scan except what its reports count."""

    info: RunInfo
    bundle: BundleInfo
    provenance: Provenance
    arguments: Mapping[str, Any]
    work: ScanWork
    inference: InferenceInfo
    #: ``--previous``: ``{"used": True, "run_id", "path", "files_removed"}`` or
    #: ``{"used": False, "why_not"}``; ``None`` without ``--previous``.
    previous: Mapping[str, Any] | None = None
    #: Grad-CAM heatmaps of this run: ``{"written", "left_out", "flagged", "seconds",
    #: "method"}`` (:class:`batchfrac.scan.pictures.HeatmapStats`).
    heatmaps: Mapping[str, Any] | None = None


def run_document(
    record: RunRecord, counts: Counts, exit_code: int, finished_at: str
) -> dict[str, Any]:
    """The ``run.json`` document of a finished scan."""
    info, bundle, work, provenance = record.info, record.bundle, record.work, record.provenance
    wall = max(work.wall_s, 1e-9)
    inferred = work.inferred_images
    return {
        "schema": "run",
        "schema_version": RUN_SCHEMA_VERSION,
        "run_id": info.run_id,
        "started_at": info.started_at,
        "finished_at": finished_at,
        "host": info.host,
        "software_version": info.software_version,
        "python_version": info.python_version,
        "working_directory": info.working_directory,
        "bundle": {
            "id": bundle.id,
            "path": bundle.path,
            "demo": bundle.demo,
            "notice": bundle.notice,
            "weights_sha256": dict(provenance.weights_sha256),
            "trunk_sha256": bundle.trunk_sha256,
        },
        "preprocessing": {"spec_id": provenance.spec_id, "spec": dict(provenance.spec)},
        "arguments": dict(record.arguments),
        "config_id": provenance.config_id,
        "counts": {
            "files": counts.files,
            "rows": counts.rows,
            "status": dict(counts.status),
            "reason": dict(counts.reason),
            "studies": counts.studies,
            "files_reused": work.files_reused,
            "files_processed": work.files_processed,
        },
        "throughput": {
            "wall_s": round(work.wall_s, 3),
            "files_per_s": round(work.files_processed / wall, 3),
            "images_per_s": round(inferred / wall, 3),
            "inferred_images": inferred,
            "trunk_images": work.trunk_images,
            "trunk_passes_per_image": round(work.trunk_images / inferred, 4) if inferred else None,
            "decode_s": round(work.decode_s, 3),
            "inference_s": round(work.inference_s, 3),
            "inference_idle_share": _rounded(work.inference_idle_share),
        },
        "inference": {
            "requested": record.inference.requested,
            "backend": record.inference.backend,
            "note": record.inference.note,
            "device": record.inference.device,
            "providers": list(record.inference.providers),
            "threads": record.inference.threads,
            "batch_size": record.inference.batch_size,
            "graphs_sha256": dict(record.inference.graphs_sha256),
            "where": record.inference.where,
            "workers": [_worker_record(w) for w in record.inference.workers],
        },
        "exit_code": exit_code,
        "pseudonyms": run_json_record(provenance.extra.get(PSEUDONYMS_META_KEY)),
        **({"previous": dict(record.previous)} if record.previous is not None else {}),
        **({"heatmaps": dict(record.heatmaps)} if record.heatmaps is not None else {}),
    }


def _worker_record(worker: WorkerInference) -> dict[str, Any]:
    return {"address": worker.address, "host": worker.host, "backend": worker.backend,
            "device": worker.device, "providers": list(worker.providers),
            "batch_size": worker.batch_size, "resources": dict(worker.resources)}  # fmt: skip


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def write_run_json(path: Path, doc: Mapping[str, Any]) -> Path:
    """Validate ``doc`` against ``schemas/run.schema.json`` and write it atomically."""
    import jsonschema

    try:
        check_run_json(dict(doc))
    except jsonschema.ValidationError as exc:
        raise SpecError(f"run.json does not match its schema: {exc.message}") from exc
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return write_text(path, text, mode=REPORT_FILE_MODE)
