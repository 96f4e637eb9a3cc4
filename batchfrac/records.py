"""Small frozen records that cross process boundaries (never pydicom Datasets)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .enums import Bone, Reason, Status


@dataclass(frozen=True, slots=True)
class FileStat:
    """Identity of one input file for resume: a file is re-done when any of these change."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class DicomHeader:
    """The header values batchfrac needs, read without pixel data.

    Missing optional attributes are ``None``; ``rows``/``columns`` are 0 for
    objects without an image (which are skipped as ``non_image``).
    """

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    patient_id: str | None
    accession_number: str | None
    modality: str | None
    body_part_examined: str | None
    view_position: str | None
    laterality: str | None
    photometric_interpretation: str | None
    rows: int
    columns: int
    number_of_frames: int
    bits_stored: int | None
    samples_per_pixel: int
    transfer_syntax_uid: str | None
    has_preamble: bool = True


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One image-report row before inference: one per file, or per frame of a multi-frame file.

    ``pixels`` holds the preprocessed model input (H, W, 3) float32 for ``ok`` rows
    and is ``None`` otherwise. ``flags`` are short machine-readable notes
    (e.g. ``no_preamble``) that do not change the status.

    ``log`` carries, for the scan driver to write to ``scan.log``, what ingesting the
    file produced besides the row: the warnings and ``pydicom`` log records raised
    while it was read and decoded, and the traceback of an unexpected exception (the
    row is then an ``error`` whose ``detail`` names it). Each entry is one message,
    possibly several lines, without the path (the row has it); a file's entries are
    bounded in number and size (:mod:`batchfrac.ingest.capture`). A multi-frame file's
    entries are on its first row only, so writing every row's entries writes each once.
    """

    file: FileStat
    status: Status
    reason: Reason | None
    header: DicomHeader | None
    frame: int = 0
    decode_ms: float = 0.0
    detail: str = ""
    flags: tuple[str, ...] = ()
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)
    log: tuple[str, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model outputs for one image; ``cam``: the Grad-CAM map (h, w) of its bone head's
    abnormal class, when the backend made it in the same pass (ONNX Runtime, asked for)."""

    bone: Bone
    bone_confidence: float
    abnormal_probability: float
    cam: np.ndarray | None = field(default=None, compare=False, repr=False)
