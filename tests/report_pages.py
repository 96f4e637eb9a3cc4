"""A realistic report set written by ``write_reports`` from made-up rows, with real PNG
thumbnails and heatmaps (as the scan's heatmap step writes them), hostile strings included:
for the page's tests and the real-browser test."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from batchfrac.enums import Bone, ImageFlag, Reason, Status
from batchfrac.ingest.preprocess import PreprocessSpec, letterbox_geometry
from batchfrac.report.deidentify import PSEUDONYMS_META_KEY, ReportPseudonyms
from batchfrac.report.heatmap import png_bytes, render_overlay, render_thumbnail
from batchfrac.report.parquet import Provenance
from batchfrac.report.rows import ImageRow
from batchfrac.report.runinfo import BundleInfo, InferenceInfo, RunInfo, RunRecord, ScanWork
from batchfrac.report.schema import load_schema, rows_to_table
from batchfrac.report.writer import ScanSummary, write_reports

BONES = list(Bone)
#: Values that would run as script or markup if the page ever treated data as HTML.
HOSTILE_PATIENT = "</script><script>window.__pwned=1</script>"
HOSTILE_ACCESSION = "<img src=x onerror=window.__pwned=2>"
HOSTILE_DETAIL = "bad \u2028 line </script><!-- & ' \" <b>x</b>"
DEMO_NOTICE = "DEMO bundle trained on synthetic radiographs - not for clinical use"


@dataclass(frozen=True)
class SampleReport:
    """What :func:`write_sample_report` wrote."""

    out: Path
    summary: ScanSummary
    rows: list[ImageRow]
    pictures: int
    """Thumbnails plus heatmaps the page shows once every study is opened."""


def _picture(out: Path, folder: str, key: str, data: bytes) -> str:
    name = hashlib.sha256(key.encode()).hexdigest()[:20] + ".png"
    (out / folder).mkdir(exist_ok=True)
    (out / folder / name).write_bytes(data)
    return f"{folder}/{name}"


def _display(rows: int, columns: int, seed: int) -> np.ndarray:
    """A radiograph-like display image in [0, 1]: a bright bone band on soft tissue."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    band = np.exp(-(((x - columns / 2) / (columns / 8)) ** 2))
    return np.clip(0.2 + 0.6 * band + 0.05 * rng.standard_normal((rows, columns)), 0, 1)


def sample_rows(out: Path, studies: int, archive: str = "/archive") -> tuple[list[ImageRow], int]:
    """Image rows of ``studies`` studies (1-3 images each, bones in turn, probabilities from
    clearly normal through the threshold to clearly abnormal), two files in error, one
    skipped file; PNG thumbnails for every ok image and heatmaps for the abnormal ones
    are written under ``out``. The third study carries the hostile strings."""
    spec = PreprocessSpec()
    rows: list[ImageRow] = []
    pictures = 0
    for s in range(studies):
        bone = BONES[s % len(BONES)]
        p = [0.03, 0.45, 0.55, 0.97, 0.2, 0.62, 0.38, 0.88][s % 8] + (s % 5) * 0.001
        patient, accession = f"PAT{s // 2:05d}", f"ACC{s:06d}"
        if s == 2:
            patient, accession = HOSTILE_PATIENT, HOSTILE_ACCESSION
        uid = f"1.2.826.0.1.3680043.8.498.{1000 + s}"
        for i in range(1 + s % 3):
            path = f"{archive}/{patient[:12]}/{accession[:12]}/IM{i:04d}"
            body_part = bone.value.upper() if (s + i) % 4 else "CHEST"
            flags: list[str] = []
            if body_part == "CHEST":
                flags.append(ImageFlag.BODYPART_MISMATCH.value)
            display = _display(300 + 40 * i, 240, seed=s * 10 + i)
            thumbnail = _picture(out, "thumbnails", f"{path}:0",
                                 png_bytes(render_thumbnail(display)))  # fmt: skip
            heatmap = peak = None
            if p > 0.5:
                geometry = letterbox_geometry(*display.shape, spec)
                cam = np.zeros((7, 7), np.float32)
                cam[2 + i % 3, 3] = 1.0
                overlay = render_overlay(display, cam, geometry)
                heatmap = _picture(out, "heatmaps", f"{path}:0", png_bytes(overlay))
                peak = (120, 90 + 20 * i)
            pictures += 1 + (heatmap is not None)
            rows.append(ImageRow(
                path=path, status=Status.OK.value, reason=None, detail=None,
                patient_id=patient, accession_number=accession, study_instance_uid=uid,
                series_instance_uid=uid + ".1", sop_instance_uid=f"{uid}.1.{i}", frame=0,
                modality="DX", body_part_examined=body_part, view_position="PA",
                laterality="L", photometric_interpretation="MONOCHROME2",
                transfer_syntax_uid="1.2.840.10008.1.2.1", bone=bone.value,
                bone_confidence=0.93, abnormal_probability=p, flags=tuple(flags),
                decode_ms=12.0, file_size=1000, file_mtime_ns=1, thumbnail=thumbnail,
                heatmap=heatmap, heatmap_peak_x=peak[0] if peak else None,
                heatmap_peak_y=peak[1] if peak else None,
            ))  # fmt: skip
    base = rows[0]
    for name, reason, detail in [
        ("broken.dcm", Reason.TRUNCATED, "pixel data declares 1000 bytes, the file holds 10"),
        ("hostile.dcm", Reason.DECODE_ERROR, HOSTILE_DETAIL),
    ]:
        rows.append(replace(
            base, path=f"{archive}/{base.patient_id}/{name}", status=Status.ERROR.value,
            reason=reason.value, detail=detail, bone=None, bone_confidence=None,
            abnormal_probability=None, flags=(), thumbnail=None, heatmap=None,
            heatmap_peak_x=None, heatmap_peak_y=None,
        ))  # fmt: skip
    rows.append(ImageRow(
        path=f"{archive}/README.txt", status=Status.SKIPPED.value,
        reason=Reason.NOT_DICOM.value, detail="no DICM prefix at offset 128",
        patient_id=None, accession_number=None, study_instance_uid=None,
        series_instance_uid=None, sop_instance_uid=None, frame=0, modality=None,
        body_part_examined=None, view_position=None, laterality=None,
        photometric_interpretation=None, transfer_syntax_uid=None, bone=None,
        bone_confidence=None, abnormal_probability=None, flags=(), decode_ms=0.1,
        file_size=10, file_mtime_ns=1,
    ))  # fmt: skip
    return sorted(rows, key=lambda r: (r.path, r.frame)), pictures


def write_sample_report(
    out: Path,
    studies: int = 12,
    *,
    pseudonyms: ReportPseudonyms | None = None,
    archive: str = "/archive",
) -> SampleReport:
    """Write a whole report set of :func:`sample_rows` into ``out`` with ``write_reports``
    (pseudonymised as a scan with a key writes it when ``pseudonyms`` is given)."""
    out.mkdir(parents=True, exist_ok=True)
    rows, pictures = sample_rows(out, studies, archive)
    if pseudonyms is not None:
        rows = sorted(pseudonyms.image_rows(rows), key=lambda r: (r.path, r.frame))
    fingerprint = pseudonyms.fingerprint if pseudonyms else None
    table = rows_to_table(rows, load_schema("images"))
    info = RunInfo.start()
    provenance = Provenance(
        run_id=info.run_id, bundle_id="ca6c1d282891f980", software_version="0.1.0",
        spec_id="4bc19a983374", spec={}, weights_sha256={}, config_id="0123456789abcdef",
        demo_notice=DEMO_NOTICE,
        extra={PSEUDONYMS_META_KEY: fingerprint} if fingerprint else {},
    )  # fmt: skip
    bundle = BundleInfo("ca6c1d282891f980", "/bundle", True, DEMO_NOTICE, "0" * 64)
    ok = sum(r.status == Status.OK.value for r in rows)
    work = ScanWork(0, len(rows), ok, ok + 3, 4.2, 3.0, 1.1)
    inference = InferenceInfo("auto", "onnx", None, "cpu", ("CPUExecutionProvider",), 1, 8, {})
    record = RunRecord(
        info, bundle, provenance, {"archive": archive, "workers": 2}, work, inference
    )
    summary = write_reports(out, table, {bone: 0.5 for bone in Bone}, record, csv=True)
    return SampleReport(out, summary, rows, pictures)


def abnormal_first(report: SampleReport) -> list[str]:
    """The studies' UIDs in the page's default order (priority), from the rows."""
    means: dict[str, list[float]] = {}
    for row in report.rows:
        if row.status == Status.OK.value and row.study_instance_uid:
            means.setdefault(row.study_instance_uid, []).append(row.abnormal_probability or 0)
    p = {uid: sum(v) / len(v) for uid, v in means.items()}

    def group(uid: str) -> int:
        return 0 if p[uid] > 0.5 else 1 if abs(p[uid] - 0.5) < 0.1 else 2

    return sorted(p, key=lambda uid: (group(uid), -p[uid], uid))
