"""``run_scan``: one whole scan of an archive into ``--out``, resumable, with its reports.

Outputs in ``OUTDIR`` (each written atomically): ``parts/part-*.parquet`` (one per finished
chunk, the resume ledger), ``images.parquet``, ``studies.parquet``, ``index.html``,
``run.json`` (last: a run.json newer than the reports means they are complete), optionally
``images.csv``/``studies.csv``, and the log ``scan.log``. Nothing is written anywhere else;
no file name is derived from DICOM values.

The steps of :func:`run_scan`, in order: check the paths, lock ``--out``, open the log,
load the bundle, derive the settings that identify its rows (:func:`scan_settings`),
load the resume ledger, decode and infer what is not reported yet (:func:`scan_pending`),
then write the report set (:func:`batchfrac.report.writer.write_reports`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .. import __version__
from ..atomic import make_report_dir
from ..enums import Backend, Bone, Head, InferOn
from ..errors import BatchfracError, BundleError
from ..ingest.preprocess import PreprocessSpec
from ..report.deidentify import (
    PSEUDONYMS_META_KEY,
    ReportPseudonyms,
    check_outdir,
    key_marker,
)
from ..report.parquet import Provenance
from ..report.rows import report_path
from ..report.runinfo import BundleInfo, InferenceInfo, RunInfo, RunRecord, ScanWork
from ..report.schema import load_schema
from ..report.writer import ScanSummary, remove_report_set, write_reports
from .chunks import IngestChunk, NullObserver, ScanObserver, local_ingest, pending_chunks
from .cluster import dask_ingest
from .config import ScanConfig
from .feed import Background, ChunkInference, warm_up
from .inference import BatchPredictor, InferenceBundle
from .pictures import Pictures, finish_pictures, picture_name, reported_heatmaps
from .previous import PreviousNight, previous_summary, use_previous
from .resume import PARTS_DIR, Ledger, config_id, outdir_lock, remove_stale_temp_files
from .scanlog import LOG_FILE as LOG_FILE  # re-exported: the CLI names it
from .scanlog import scan_log

if TYPE_CHECKING:
    import numpy as np

    from ..bundle.device import BackendInfo
    from ..ingest.settings import IngestConfig
    from .fleet import Fleet

log = logging.getLogger(__name__)


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

    @property
    def backend(self) -> BackendInfo: ...

    def use_backend(self, backend: Backend, *, threads: int | None = None) -> BackendInfo: ...

    @property
    def gradcam_method(self) -> str: ...

    def gradcam(self, name: Head, features: list[np.ndarray]) -> np.ndarray: ...


class ScanPathError(BatchfracError):
    """The archive or output directory cannot be used."""


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


def run_scan(
    config: ScanConfig,
    observer: ScanObserver | None = None,
    *,
    bundle: ScanBundle | None = None,
    ingest: IngestChunk | None = None,
) -> ScanSummary:
    """Scan ``config.archive`` into ``config.out``; resume from its parts if any.

    ``bundle``/``ingest`` replace the bundle at ``config.bundle`` and
    :func:`batchfrac.ingest.settings.ingest_task` (tests). Raises :class:`BatchfracError`
    (bad paths, bundle), ``OSError`` (e.g. no space) and ``KeyboardInterrupt``; finished
    chunks stay in ``parts/`` in every case.
    """
    observer = observer or NullObserver()
    check_paths(config.archive, config.out)
    pseudonyms = load_pseudonyms(config)
    fingerprint = pseudonyms.fingerprint if pseudonyms else None
    make_report_dir(config.out)
    check_outdir(config.out, fingerprint, config.out / PARTS_DIR)
    with outdir_lock(config.out), scan_log(config.out, pseudonyms), contextlib.ExitStack() as stack:
        if fingerprint:
            log.info("%s", key_marker(fingerprint))
        clock = time.perf_counter()
        info = RunInfo.start()
        log.info("scan %s of %s into %s (batchfrac %s)", info.run_id, config.archive,
                 config.out, __version__)  # fmt: skip
        remove_stale_temp_files(config.out)
        earlier_heatmaps = reported_heatmaps(config.out)
        remove_report_set(config.out)
        bundle = bundle or load_bundle(config.bundle)
        log.info("bundle %s from %s%s", bundle.bundle_id, bundle.path,
                 " (DEMO)" if bundle.demo else "")  # fmt: skip
        fleet = _join_fleet(stack, config, bundle)  # workers checked before any work
        if fleet is None:
            choose_backend(bundle, config)
        backend_name = fleet.backend if fleet is not None else bundle.backend.name
        ingest_config = ingest_settings(config, bundle.spec)
        provenance = Provenance(
            run_id=info.run_id,
            bundle_id=bundle.bundle_id,
            software_version=__version__,
            spec_id=bundle.spec.spec_id,
            spec=bundle.spec.to_dict(),
            weights_sha256=bundle.weights_sha256(),
            config_id=config_id(
                scan_settings(config, bundle.bundle_id, ingest_config, backend_name, fingerprint)
            ),
            demo_notice=bundle.notice if bundle.demo else None,
            extra={PSEUDONYMS_META_KEY: fingerprint} if fingerprint else {},
        )
        ledger = Ledger(config.out, provenance.config_id, retry_errors=config.retry_errors,
                        pseudonyms=pseudonyms)  # fmt: skip
        ledger.load()
        log.info("resume ledger: %d files already reported in %d parts", len(ledger),
                 ledger.old_parts)  # fmt: skip
        previous = use_previous(config, ledger, provenance.config_id)
        thresholds = {bone: bundle.threshold(bone) for bone in Bone}
        pictures = make_pictures(config, bundle.spec, thresholds, pseudonyms)
        if fleet is not None:  # the workers return rows only: no pictures (see README)
            from .fleet import remote_pending

            work = remote_pending(config, fleet, ingest_config, ledger, provenance, observer,
                                  ingest, started=clock)  # fmt: skip
        else:
            work = scan_pending(config, bundle, ingest_config, ledger, provenance, observer,
                                ingest, started=clock, pictures=pictures)  # fmt: skip
        heatmaps = pictures.make_heatmaps(bundle, earlier_heatmaps)
        if fleet is not None:
            pictures.stats.method = "not drawn: --infer-on workers returns rows only"
        images = finish_pictures(config.out, ledger.assemble(), heatmaps, config.previous)
        previous_info: dict[str, object] | None = None
        if isinstance(previous, PreviousNight):
            previous_info = previous_summary(previous, images)
        elif previous is not None:
            previous_info = {"used": False, "why_not": previous}
        record = RunRecord(
            info,
            BundleInfo.of(bundle),
            provenance,
            config.arguments(),
            work,
            fleet.inference_info(config.backend.value, config.batch_size)
            if fleet is not None
            else InferenceInfo.of(config.backend.value, bundle.backend, batch_size(config, bundle)),
            previous_info,
            heatmaps=pictures.stats.to_dict(),
        )
        return write_reports(config.out, images, thresholds, record, csv=config.csv)


def make_pictures(
    config: ScanConfig,
    spec: PreprocessSpec,
    thresholds: dict[Bone, float],
    pseudonyms: ReportPseudonyms | None,
) -> Pictures:
    """The scan's thumbnails and heatmaps (:mod:`.pictures`), named from each row's
    report path (pseudonymised with a key) and frame."""

    def name_of(path: str, frame: int) -> str:
        shown = report_path(path)
        return picture_name(pseudonyms.path(shown) if pseudonyms else shown, frame)

    return Pictures(
        config.out, spec, thresholds, name_of,
        heatmaps_max=config.heatmaps_max, uncertain=config.heatmaps_uncertain,
    )  # fmt: skip


def _join_fleet(
    stack: contextlib.ExitStack, config: ScanConfig, bundle: ScanBundle
) -> Fleet | None:
    """With ``--infer-on workers``: the checked workers of ``--scheduler`` (or refused)."""
    if config.infer_on is not InferOn.WORKERS:
        return None
    from .fleet import join_fleet

    fleet = stack.enter_context(join_fleet(config, bundle))
    log.info("inference on %d Dask workers at %s", len(fleet.workers), config.scheduler)
    return fleet


def load_pseudonyms(config: ScanConfig) -> ReportPseudonyms | None:
    """The pseudonyms of ``config.pseudonymize_key_file`` below the archive root, if any
    (raises :class:`~batchfrac.report.pseudonym.PseudonymKeyError` for a bad key file)."""
    from ..report.pseudonym import Pseudonymizer, load_key

    if config.pseudonymize_key_file is None:
        return None
    return ReportPseudonyms(Pseudonymizer(load_key(config.pseudonymize_key_file)), config.archive)


def choose_backend(bundle: ScanBundle, config: ScanConfig) -> BackendInfo:
    """Run the bundle's networks on ``--backend`` and log the choice (and any fallback)."""
    backend = bundle.use_backend(config.backend, threads=config.inference_threads)
    if backend.note:
        log.warning("--backend %s: running on Keras because %s", config.backend.value,
                    backend.note)  # fmt: skip
    log.info("inference on %s (%s), batch size %d%s", backend.name, backend.device,
             batch_size(config, bundle),
             f", {backend.threads} threads" if backend.threads else "")  # fmt: skip
    return backend


def batch_size(config: ScanConfig, bundle: ScanBundle) -> int:
    """``--batch-size``, or the size that suits the backend's device."""
    return config.batch_size or bundle.backend.batch_size


def ingest_settings(config: ScanConfig, spec: PreprocessSpec) -> IngestConfig:
    """What the workers need to turn a path into image rows, from the scan's options."""
    from ..ingest.settings import DecodePolicy, IngestConfig

    policy = DecodePolicy(
        max_frame_pixels=config.max_frame_pixels,
        max_frames=config.max_frames,
        max_decoded_bytes=config.max_decoded_bytes,
    )
    return IngestConfig(modalities=config.modalities, decode=policy, spec=spec)


def scan_settings(
    config: ScanConfig,
    bundle_id: str,
    ingest_config: IngestConfig,
    bundle_backend: str,
    key_fingerprint: str | None = None,
) -> dict[str, object]:
    """The settings that change a report row: their hash is the resume ``config_id``
    (the backend too: its probabilities differ from another's in the sixth decimal; with
    a pseudonymisation key, its fingerprint too: never the key)."""
    pseudonyms = {"pseudonyms": key_fingerprint} if key_fingerprint else {}
    return {
        **pseudonyms,
        "bundle_id": bundle_id,
        "routing": config.routing.value,
        "backend": bundle_backend,
        "modalities": sorted(config.modalities),
        "decode": repr(ingest_config.decode),
        "low_confidence": config.low_confidence,
        "images_schema": load_schema("images").version,
    }


def scan_pending(
    config: ScanConfig,
    bundle: ScanBundle,
    ingest_config: IngestConfig,
    ledger: Ledger,
    provenance: Provenance,
    observer: ScanObserver,
    ingest: IngestChunk | None = None,
    *,
    started: float | None = None,
    pictures: Pictures | None = None,
) -> ScanWork:
    """Decode and infer every file the ledger does not hold yet, writing a part per chunk.

    The networks are built and traced in a thread while the first chunks decode.
    ``started`` (``time.perf_counter()``) is when the scan began, for its wall time.
    """
    from ..ingest.settings import ingest_task

    clock = time.perf_counter() if started is None else started
    size = batch_size(config, bundle)
    cams = pictures is not None and config.heatmaps_max > 0
    predictor = BatchPredictor(bundle, batch_size=size, routing=config.routing, cams=cams)
    inference = ChunkInference(
        predictor,
        lambda rows: ledger.write_part(rows, provenance),
        low_confidence=config.low_confidence,
        observer=observer,
        pictures=pictures,
    )
    chunks = pending_chunks(config.archive, ledger, config.chunk_size, observer, inference.add)
    # The first chunks (one per worker at most) are walked before any worker starts: a
    # small archive (a night's new files) needs fewer decoding processes than --workers,
    # and each one costs about 3 CPU-seconds to start.
    head = list(itertools.islice(chunks, max(1, config.workers)))
    warm = Background(warm_up(predictor, inference) if head else None)
    chunks = itertools.chain(head, chunks)
    task = ingest or ingest_task
    if not head:  # nothing left to decode: no cluster to start
        stream = local_ingest(chunks, ingest_config, task)
    elif config.workers == 0 and not config.scheduler:
        if config.timeout is not None:
            log.info("--workers 0: files are decoded in this process, without --timeout")
        stream = local_ingest(chunks, ingest_config, task)
    else:
        stream = dask_ingest(
            chunks,
            ingest_config,
            task,
            workers=max(1, min(config.workers, len(head))),
            window=config.in_flight,
            scheduler=config.scheduler,
            timeout=config.timeout,
            archive=str(config.archive),
        )
    with contextlib.closing(stream):
        for paths, results in stream:
            warm.join()
            inference.add(paths, results)
    warm.join()
    inference.finish()
    return ScanWork(
        files_reused=ledger.reused,
        files_processed=inference.files,
        inferred_images=predictor.images,
        trunk_images=predictor.trunk_images,
        wall_s=time.perf_counter() - clock,
        decode_s=inference.decode_ms / 1000,
        inference_s=predictor.seconds,
        inference_idle_share=inference.idle_share,
    )
