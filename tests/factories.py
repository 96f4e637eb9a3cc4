"""Small DICOM factories for tests: build tiny datasets of any photometric
interpretation and transfer syntax at test time (no patient data is committed)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from batchfrac.records import DicomHeader


def make_dataset(sop_class_uid: str, modality: str) -> Dataset:
    """An Explicit VR Little Endian dataset with file meta and fresh SOP/study/series UIDs."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    return ds


def make_image_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    bits_stored: int = 12,
    sop_class_uid: str = DigitalXRayImageStorageForPresentation,
    **tags: Any,
) -> Dataset:
    """An uncompressed (Explicit VR Little Endian) image dataset holding ``pixels``.

    ``pixels`` is (rows, cols) or (frames, rows, cols) for greyscale, or
    (rows, cols, 3) for colour photometric interpretations. Extra keyword
    arguments are set as DICOM keywords (``BodyPartExamined="HAND"``).
    """
    ds = make_dataset(sop_class_uid, modality)
    ds.PatientID = "TEST0001"
    ds.AccessionNumber = "ACC0001"
    colour = photometric in {"RGB", "YBR_FULL", "YBR_FULL_422"}
    multi = pixels.ndim == 3 and not colour
    ds.Rows, ds.Columns = pixels.shape[-2:] if multi or pixels.ndim == 2 else pixels.shape[:2]
    if multi:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if pixels.dtype.itemsize == 1 else 16
    ds.BitsStored = min(bits_stored, ds.BitsAllocated)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def write_dataset(ds: Dataset, path: Path, transfer_syntax: str | UID | None = None) -> Path:
    """Write ``ds`` to ``path`` (with preamble), compressing to ``transfer_syntax`` if given."""
    if transfer_syntax is not None and UID(transfer_syntax) != ds.file_meta.TransferSyntaxUID:
        ds = copy.deepcopy(ds)
        ds.compress(UID(transfer_syntax))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def gradient_image(rows: int = 64, columns: int = 48, bits_stored: int = 12) -> np.ndarray:
    """A deterministic uint16 test image with structure in both axes (bright lower right)."""
    r = np.linspace(0.0, 1.0, rows)[:, None]
    c = np.linspace(0.0, 1.0, columns)[None, :]
    img = (0.6 * r + 0.4 * c) * ((1 << bits_stored) - 1)
    img[rows // 4 : rows // 2, columns // 4 : columns // 2] = (1 << bits_stored) - 1
    return img.astype(np.uint16)


def make_header(**values: object) -> DicomHeader:
    """A DicomHeader of a plausible DX hand image; keyword arguments override fields."""
    fields: dict[str, object] = dict(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        sop_instance_uid="1.2.3.4",
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.1",
        patient_id="P1",
        accession_number="A1",
        modality="DX",
        body_part_examined="HAND",
        view_position="PA",
        laterality="L",
        photometric_interpretation="MONOCHROME2",
        rows=64,
        columns=48,
        number_of_frames=1,
        bits_stored=12,
        samples_per_pixel=1,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    fields.update(values)
    return DicomHeader(**fields)  # type: ignore[arg-type]


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root``: relative POSIX path -> contents (to compare whole trees)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
