"""Report rows: one :class:`ImageRow` per file (or frame), one :class:`StudyRow` per study.

Field names and order match ``schemas/images.schema.json`` and ``schemas/studies.schema.json``
(a test keeps them in step).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from ..defaults import DEFAULT_LOW_CONFIDENCE
from ..enums import ImageFlag, Reason, Status
from ..records import ImageResult, Prediction
from .bodypart import routing_flags


def report_path(path: str) -> str:
    """``path`` as it appears in reports and in the resume ledger.

    File names are bytes on POSIX; bytes that are not UTF-8 reach Python as lone
    surrogates, which Parquet cannot store. They are written as ``\\xNN`` escapes
    (deterministic, so the resume ledger still recognises the file).
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def _text(value: str | None) -> str | None:
    """A header or detail string Parquet can store (lone surrogates become U+FFFD)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


@dataclass(frozen=True, slots=True)
class ImageRow:
    """One row of ``images.parquet``."""

    path: str
    status: str
    reason: str | None
    detail: str | None
    patient_id: str | None
    accession_number: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    frame: int
    modality: str | None
    body_part_examined: str | None
    view_position: str | None
    laterality: str | None
    photometric_interpretation: str | None
    transfer_syntax_uid: str | None
    bone: str | None
    bone_confidence: float | None
    abnormal_probability: float | None
    flags: tuple[str, ...]
    decode_ms: float
    file_size: int
    file_mtime_ns: int
    thumbnail: str | None = None
    heatmap: str | None = None
    heatmap_peak_x: int | None = None
    heatmap_peak_y: int | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        """The resume key of the file this row came from."""
        return (self.path, self.file_size, self.file_mtime_ns)

    @classmethod
    def from_mapping(cls, row: dict[str, Any]) -> ImageRow:
        """Build from a dict such as a ``pyarrow.Table.to_pylist()`` item."""
        return cls(**{**row, "flags": tuple(row["flags"] or ())})

    def as_dict(self) -> dict[str, Any]:
        """Column name -> value, ``flags`` as a list (Arrow ``list<string>``)."""
        out = asdict(self)
        out["flags"] = list(self.flags)
        return out


@dataclass(frozen=True, slots=True)
class StudyRow:
    """One row of ``studies.parquet``."""

    study_instance_uid: str | None
    patient_id: str | None
    accession_number: str | None
    bone: str
    n_images: int
    n_errors: int
    abnormal_probability: float
    prediction: str
    threshold: float
    flags: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """Column name -> value, ``flags`` as a list (Arrow ``list<string>``)."""
        out = asdict(self)
        out["flags"] = list(self.flags)
        return out


def image_row(
    result: ImageResult,
    prediction: Prediction | None = None,
    *,
    low_confidence: float = DEFAULT_LOW_CONFIDENCE,
) -> ImageRow:
    """The report row of one ingest result and (for ``ok`` rows) its prediction."""
    header = result.header
    flags = list(result.flags)
    path = report_path(result.file.path)
    if path != result.file.path:
        flags.append(ImageFlag.NON_UTF8_PATH.value)
    bone = confidence = probability = None
    if prediction is not None:
        if result.status is not Status.OK:
            raise ValueError(f"prediction given for a {result.status.value} row: {path}")
        bone = prediction.bone.value
        confidence = prediction.bone_confidence
        probability = prediction.abnormal_probability
        body_part = header.body_part_examined if header else None
        flags.extend(
            routing_flags(body_part, prediction.bone, confidence, low_confidence=low_confidence)
        )
    elif result.status is Status.OK:
        raise ValueError(f"ok row without a prediction: {path}")
    reason: Reason | None = result.reason
    return ImageRow(
        path=path,
        status=Status(result.status).value,
        reason=reason.value if reason is not None else None,
        detail=_text(result.detail) or None,
        patient_id=_text(header.patient_id) if header else None,
        accession_number=_text(header.accession_number) if header else None,
        study_instance_uid=_text(header.study_instance_uid) if header else None,
        series_instance_uid=_text(header.series_instance_uid) if header else None,
        sop_instance_uid=_text(header.sop_instance_uid) if header else None,
        frame=result.frame,
        modality=_text(header.modality) if header else None,
        body_part_examined=_text(header.body_part_examined) if header else None,
        view_position=_text(header.view_position) if header else None,
        laterality=_text(header.laterality) if header else None,
        photometric_interpretation=_text(header.photometric_interpretation) if header else None,
        transfer_syntax_uid=_text(header.transfer_syntax_uid) if header else None,
        bone=bone,
        bone_confidence=confidence,
        abnormal_probability=probability,
        flags=tuple(dict.fromkeys(flags)),
        decode_ms=float(result.decode_ms),
        file_size=result.file.size,
        file_mtime_ns=result.file.mtime_ns,
    )
