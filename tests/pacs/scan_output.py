"""A small finished scan output (run.json, images.parquet, studies.parquet) over real DICOM
source files, built at test time, so the export tests control every value (and can break
them) without running the networks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydicom.uid import ComputedRadiographyImageStorage

from tests.factories import gradient_image, make_image_dataset, write_dataset

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
PATIENT_NAME = "DOE^JANE"
BIRTH_DATE = "19700101"
ADDRESS = "1 Hospital Road, Springfield"
REFERRING = "HOUSE^GREGORY"
FINISHED_AT = "2026-11-30T02:15:07.125+00:00"
BUNDLE_ID = "feedfacecafe0001"
NOTICE = "DEMO bundle trained on synthetic radiographs - not for clinical use"


@dataclass
class Image:
    """One scanned image (or frame) and what the networks said about it."""

    bone: str
    bone_confidence: float
    abnormal_probability: float
    frames: int = 1
    modality: str = "DX"
    sop_class_uid: str | None = None
    name: str = ""
    sop_instance_uid: str = ""
    series_instance_uid: str = ""


@dataclass
class Study:
    """One study of the fake scan."""

    uid: str
    patient_id: str
    accession_number: str
    images: list[Image] = field(default_factory=list)
    threshold: float = 0.5


def standard_studies() -> list[Study]:
    """An abnormal hand study (two DX images, one CR) and a normal wrist study whose one
    file has two frames."""
    return [
        Study(
            "1.2.826.0.1.3680043.8.498.100",
            "PAT001",
            "ACC001",
            [
                Image("hand", 0.97, 0.91),
                Image("hand", 0.88, 0.72, modality="CR"),
                Image("finger", 0.60, 0.40),
            ],
        ),
        Study(
            "1.2.826.0.1.3680043.8.498.200",
            "PAT002",
            "ACC002",
            [Image("wrist", 0.99, 0.10, frames=2)],
        ),
    ]


def make_scan_output(
    root: Path,
    studies: list[Study] | None = None,
    *,
    demo: bool = True,
    run_id: str = "run-1",
    bundle_thresholds: dict[str, float] | None = None,
) -> Path:
    """Write source files under ``root/archive`` and the reports under ``root/out``; with
    ``bundle_thresholds``, also a ``root/bundle/bundle.json`` that run.json points to."""
    studies = standard_studies() if studies is None else studies
    archive, out = root / "archive", root / "out"
    out.mkdir(parents=True, exist_ok=True)
    image_rows: list[dict[str, object]] = []
    study_rows: list[dict[str, object]] = []
    for s_index, study in enumerate(studies):
        probabilities = []
        for i_index, image in enumerate(study.images):
            image.sop_instance_uid = image.sop_instance_uid or f"{study.uid}.1.{i_index + 1}"
            image.series_instance_uid = image.series_instance_uid or f"{study.uid}.1"
            path = archive / f"study{s_index}" / (image.name or f"im{i_index}.dcm")
            _write_source(path, study, image)
            for frame in range(image.frames):
                image_rows.append(_image_row(path, study, image, frame))
                probabilities.append(image.abnormal_probability)
        mean = float(np.mean(probabilities))
        study_rows.append(
            {
                "study_instance_uid": study.uid,
                "patient_id": study.patient_id,
                "accession_number": study.accession_number,
                "bone": study.images[0].bone,
                "n_images": len(probabilities),
                "n_errors": 0,
                "abnormal_probability": mean,
                "prediction": "abnormal" if mean > study.threshold else "normal",
                "threshold": study.threshold,
                "flags": [],
            }
        )
    image_rows.append(_junk_row(archive / "notes.txt"))
    write_table(out / "images.parquet", "images", image_rows)
    write_table(out / "studies.parquet", "studies", study_rows)
    bundle_path = root / "bundle"
    if bundle_thresholds is not None:
        bundle_path.mkdir(parents=True, exist_ok=True)
        heads = {bone: {"threshold": value} for bone, value in bundle_thresholds.items()}
        (bundle_path / "bundle.json").write_text(
            json.dumps({"bundle_id": BUNDLE_ID, "heads": heads})
        )
    run = {
        "run_id": run_id,
        "finished_at": FINISHED_AT,
        "software_version": "0.1.0",
        "bundle": {"id": BUNDLE_ID, "path": str(bundle_path), "demo": demo,
                   "notice": NOTICE if demo else None},
    }  # fmt: skip
    (out / "run.json").write_text(json.dumps(run))
    return out


def write_table(path: Path, name: str, rows: list[dict[str, object]]) -> None:
    """Write ``rows`` as the report ``name`` with its schema from ``schemas/``."""
    types = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(),
             "float64": pa.float64(), "list<string>": pa.list_(pa.string())}  # fmt: skip
    spec = json.loads((SCHEMAS / f"{name}.schema.json").read_text())["fields"]
    schema = pa.schema([pa.field(f["name"], types[f["type"]], f["nullable"]) for f in spec])
    defaults: dict[str, object] = {"flags": [], "frame": 0, "decode_ms": 1.0, "file_size": 1,
                                   "file_mtime_ns": 1}  # fmt: skip
    full = [{f.name: row.get(f.name, defaults.get(f.name)) for f in schema} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=schema), path)


def _write_source(path: Path, study: Study, image: Image) -> None:
    pixels = gradient_image(16, 12)
    if image.frames > 1:
        pixels = np.stack([pixels] * image.frames)
    tags: dict[str, object] = {}
    if image.modality == "CR":
        tags["sop_class_uid"] = ComputedRadiographyImageStorage
    if image.sop_class_uid is not None:
        tags["sop_class_uid"] = image.sop_class_uid
    ds = make_image_dataset(pixels, modality=image.modality, **tags)  # type: ignore[arg-type]
    ds.SOPInstanceUID = image.sop_instance_uid
    ds.file_meta.MediaStorageSOPInstanceUID = image.sop_instance_uid
    ds.SeriesInstanceUID = image.series_instance_uid
    ds.StudyInstanceUID = study.uid
    ds.PatientID = study.patient_id
    ds.AccessionNumber = study.accession_number
    ds.PatientName = PATIENT_NAME
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "F"
    ds.PatientAddress = ADDRESS
    ds.ReferringPhysicianName = REFERRING
    ds.StudyDate = "20240105"
    ds.StudyTime = "101500"
    ds.StudyID = "S42"
    write_dataset(ds, path)


def _image_row(path: Path, study: Study, image: Image, frame: int) -> dict[str, object]:
    return {
        "path": str(path),
        "status": "ok",
        "patient_id": study.patient_id,
        "accession_number": study.accession_number,
        "study_instance_uid": study.uid,
        "series_instance_uid": image.series_instance_uid,
        "sop_instance_uid": image.sop_instance_uid,
        "frame": frame,
        "modality": image.modality,
        "bone": image.bone,
        "bone_confidence": image.bone_confidence,
        "abnormal_probability": image.abnormal_probability,
    }


def _junk_row(path: Path) -> dict[str, object]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a radiograph")
    return {"path": str(path), "status": "skipped", "reason": "not_dicom"}
