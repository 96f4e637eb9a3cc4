"""A finished scan's results, read from its reports into small frozen records.

Reads ``run.json``, ``images.parquet`` and ``studies.parquet`` directly with pyarrow (column
names as in ``schemas/images.schema.json`` and ``schemas/studies.schema.json``), so the DICOM
export depends on the report files, not on the code that wrote them. A missing or malformed
report is a :class:`ReportError` with a one-line message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..enums import Bone, Label, Status
from ..errors import BatchfracError

IMAGE_COLUMNS = (
    "path", "status", "patient_id", "accession_number", "study_instance_uid",
    "series_instance_uid", "sop_instance_uid", "frame", "modality", "bone", "bone_confidence",
    "abnormal_probability", "flags",
)  # fmt: skip
STUDY_COLUMNS = (
    "study_instance_uid", "patient_id", "accession_number", "bone", "n_images", "n_errors",
    "abnormal_probability", "prediction", "threshold", "flags",
)  # fmt: skip


class ReportError(BatchfracError):
    """A scan's report files are missing, unreadable or not what a scan writes."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Provenance of the scan (from ``run.json``)."""

    run_id: str
    finished_at: datetime
    software_version: str
    bundle_id: str
    bundle_path: str | None
    demo: bool
    notice: str | None
    #: The scan's working directory: report paths given relative to it are resolved
    #: against it, so an export run from elsewhere still finds the source files.
    working_directory: Path | None = None


@dataclass(frozen=True, slots=True)
class ImageFinding:
    """One ``ok`` image row: the router's bone and the bone head's probability."""

    path: str
    sop_instance_uid: str | None
    series_instance_uid: str | None
    frame: int
    modality: str | None
    bone: Bone
    bone_confidence: float
    abnormal_probability: float
    patient_id: str | None
    accession_number: str | None


@dataclass(frozen=True, slots=True)
class StudyResult:
    """One ``studies.parquet`` row with its ok images (sorted by path, frame)."""

    study_instance_uid: str | None
    patient_id: str | None
    accession_number: str | None
    bone: Bone
    n_images: int
    n_errors: int
    abnormal_probability: float
    prediction: Label
    threshold: float
    flags: tuple[str, ...]
    images: tuple[ImageFinding, ...]


@dataclass(frozen=True, slots=True)
class ScanResults:
    """Everything the DICOM export needs from a scan's output directory."""

    outdir: Path
    run: RunInfo
    studies: tuple[StudyResult, ...]
    thresholds: Mapping[Bone, float]
    """Decision threshold per bone, as far as the reports (or the run's bundle) state it."""


def read_scan_results(outdir: Path) -> ScanResults:
    """Read ``outdir``'s ``run.json``, ``images.parquet`` and ``studies.parquet``."""
    run = _read_run(outdir / "run.json")
    image_rows = _read_table(outdir / "images.parquet", IMAGE_COLUMNS)
    study_rows = _read_table(outdir / "studies.parquet", STUDY_COLUMNS)
    images_by_study: dict[str, list[ImageFinding]] = {}
    for row in image_rows:
        if row["status"] == Status.OK.value and row["study_instance_uid"] is not None:
            finding = _image(row, run.working_directory)
            images_by_study.setdefault(row["study_instance_uid"], []).append(finding)
    studies = []
    for row in study_rows:
        uid = row["study_instance_uid"]
        images = sorted(images_by_study.get(uid, []), key=lambda i: (i.path, i.frame))
        studies.append(_study(row, tuple(images) if uid is not None else ()))
    thresholds = {s.bone: s.threshold for s in studies}
    for bone, value in _bundle_thresholds(run).items():
        thresholds.setdefault(bone, value)
    return ScanResults(outdir, run, tuple(studies), thresholds)


def _read_run(path: Path) -> RunInfo:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        bundle = doc["bundle"]
        finished = datetime.fromisoformat(str(doc["finished_at"]))
        run = RunInfo(
            run_id=_text(doc["run_id"], "run_id"),
            finished_at=finished if finished.tzinfo else finished.replace(tzinfo=timezone.utc),
            software_version=_text(doc["software_version"], "software_version"),
            bundle_id=_text(bundle["id"], "bundle.id"),
            bundle_path=bundle.get("path") if isinstance(bundle.get("path"), str) else None,
            demo=bool(bundle["demo"]),
            notice=bundle["notice"] if isinstance(bundle.get("notice"), str) else None,
            working_directory=(
                Path(doc["working_directory"])
                if isinstance(doc.get("working_directory"), str)
                else None
            ),
        )
    except FileNotFoundError:
        raise ReportError(f"{path} not found: is this a finished scan's output?") from None
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON (line {exc.lineno})") from None
    except (KeyError, TypeError) as exc:
        raise ReportError(f"{path} lacks a field a scan writes: {exc}") from None
    except ValueError as exc:
        raise ReportError(f"{path}: {exc}") from None
    return run


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _read_table(path: Path, columns: Sequence[str]) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ReportError(f"{path} not found: is this a finished scan's output?")
    try:
        schema = pq.read_schema(path)
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ReportError(f"{path} lacks the columns {', '.join(missing)}")
        rows: list[dict[str, Any]] = pq.read_table(path, columns=list(columns)).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise ReportError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return rows


def _image(row: Mapping[str, Any], working_directory: Path | None) -> ImageFinding:
    path = Path(str(row["path"]))
    if working_directory is not None and not path.is_absolute():
        path = working_directory / path
    return ImageFinding(
        path=str(path),
        sop_instance_uid=row["sop_instance_uid"],
        series_instance_uid=row["series_instance_uid"],
        frame=int(row["frame"] or 0),
        modality=row["modality"],
        bone=_bone(row["bone"], row["path"]),
        bone_confidence=_probability(row["bone_confidence"], "bone_confidence", row["path"]),
        abnormal_probability=_probability(
            row["abnormal_probability"], "abnormal_probability", row["path"]
        ),
        patient_id=row["patient_id"],
        accession_number=row["accession_number"],
    )


def _study(row: Mapping[str, Any], images: tuple[ImageFinding, ...]) -> StudyResult:
    where = f"study {row['study_instance_uid']}"
    try:
        prediction = Label(row["prediction"])
    except ValueError:
        raise ReportError(
            f"studies.parquet: {where} has prediction {row['prediction']!r}"
        ) from None
    return StudyResult(
        study_instance_uid=row["study_instance_uid"],
        patient_id=row["patient_id"],
        accession_number=row["accession_number"],
        bone=_bone(row["bone"], where),
        n_images=int(row["n_images"] or 0),
        n_errors=int(row["n_errors"] or 0),
        abnormal_probability=_probability(row["abnormal_probability"], "probability", where),
        prediction=prediction,
        threshold=_probability(row["threshold"], "threshold", where),
        flags=tuple(row["flags"] or ()),
        images=images,
    )


def _bone(value: object, where: object) -> Bone:
    try:
        return Bone(value)
    except ValueError:
        raise ReportError(f"{where}: bone {value!r} is not one of the seven bones") from None


def _probability(value: object, name: str, where: object) -> float:
    if not isinstance(value, int | float) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ReportError(f"{where}: {name} {value!r} is not a number in [0, 1]")
    return float(value)


def _bundle_thresholds(run: RunInfo) -> dict[Bone, float]:
    """Thresholds of bones that no study row states, from the run's bundle when it is there.

    A bone that only a minority of a mixed study's images were routed to has no study row;
    its threshold is still needed to call those images. Only a bundle whose id is the
    run's is trusted.
    """
    if run.bundle_path is None:
        return {}
    try:
        doc = json.loads((Path(run.bundle_path) / "bundle.json").read_text(encoding="utf-8"))
        if doc.get("bundle_id") != run.bundle_id:
            return {}
        heads = doc["heads"]
        return {
            bone: float(heads[bone.value]["threshold"])
            for bone in Bone
            if isinstance(heads.get(bone.value, {}).get("threshold"), int | float)
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
