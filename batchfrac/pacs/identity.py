"""Who and what a result is about: study identification and source references.

Only what our objects may carry is read from the source files' headers
(``dcmread(stop_before_pixels=True, specific_tags=...)``): UIDs, (0010,0020) *Patient ID*,
(0008,0050) *Accession Number*, (0020,0010) *Study ID*, (0008,0020) *Study Date*,
(0008,0030) *Study Time*. Names, birth dates and addresses are never read, so they cannot
leak into an output. A source file that is gone, unreadable or no longer the scanned
instance falls back to the report's values (and the type-2 attributes stay empty).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..report.pseudonym import Pseudonymizer
from .results import ImageFinding, StudyResult

log = logging.getLogger(__name__)

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"

_HEADER_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID",
    "SeriesInstanceUID", "PatientID", "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
)  # fmt: skip
_STUDY_VALUE_VRS = {
    "PatientID": "LO",
    "AccessionNumber": "SH",
    "StudyID": "SH",
    "StudyDate": "DA",
    "StudyTime": "TM",
}


@dataclass(frozen=True, slots=True)
class SourceImage:
    """One scanned image as our objects reference it."""

    finding: ImageFinding
    sop_class_uid: str
    sop_class_from_header: bool
    """False when the header could not be read and the class was chosen from the modality."""


@dataclass(frozen=True, slots=True)
class StudyIdentity:
    """Patient and study identification for the objects of one study.

    Empty strings stand for type-2 attributes left empty.
    """

    study_instance_uid: str
    patient_id: str
    accession_number: str
    study_id: str
    study_date: str
    study_time: str
    pseudonymized: bool
    from_source_header: bool
    dropped: tuple[str, ...] = ()
    """Keywords whose source value was not valid for its VR and was left empty."""


def default_sop_class(modality: str | None) -> str:
    """The SOP Class UID assumed for an image whose header is gone: CR Image Storage for
    (0008,0060) *Modality* ``CR``, else Digital X-Ray Image Storage - For Presentation."""
    return CR_IMAGE_STORAGE if modality == "CR" else DX_IMAGE_STORAGE_FOR_PRESENTATION


def read_source_images(
    study: StudyResult,
) -> tuple[list[SourceImage], dict[str, str] | None]:
    """The study's images with their SOP classes, and the first matching header's study values.

    An image's header counts only when its (0008,0018) *SOP Instance UID* and
    (0020,000D) *Study Instance UID* are still those of the report row.
    """
    images: list[SourceImage] = []
    study_values: dict[str, str] | None = None
    for finding in study.images:
        header = _read_header(finding.path)
        matches = (
            header is not None
            and header.get("SOPInstanceUID") == finding.sop_instance_uid
            and header.get("StudyInstanceUID") == study.study_instance_uid
        )
        sop_class = str(header.get("SOPClassUID", "")) if header is not None and matches else ""
        if matches and sop_class:
            images.append(SourceImage(finding, sop_class, True))
        else:
            images.append(SourceImage(finding, default_sop_class(finding.modality), False))
        if matches and study_values is None and header is not None:
            study_values = {k: _str(header.get(k)) for k in _STUDY_VALUE_VRS}
    return images, study_values


def study_identity(
    study: StudyResult,
    study_values: dict[str, str] | None,
    pseudonymizer: Pseudonymizer | None,
) -> StudyIdentity:
    """Identification for ``study``'s objects: the source header's values (or the report's
    when no header could be read), with keyed pseudonyms when ``pseudonymizer`` is given.

    With pseudonyms, (0020,0010) *Study ID* is left empty too: sites often fill it with
    the accession number.
    """
    if study.study_instance_uid is None:
        raise ValueError("a study without a Study Instance UID has no identity")
    values = (
        dict(study_values)
        if study_values is not None
        else {
            "PatientID": study.patient_id or "",
            "AccessionNumber": study.accession_number or "",
        }
    )
    dropped = tuple(k for k, vr in _STUDY_VALUE_VRS.items() if not _valid(vr, values.get(k, "")))
    for keyword in dropped:
        values[keyword] = ""
    if pseudonymizer is not None:
        values["PatientID"] = pseudonymizer.patient_id(values.get("PatientID")) or ""
        values["AccessionNumber"] = (
            pseudonymizer.accession_number(values.get("AccessionNumber")) or ""
        )
        values["StudyID"] = ""
    return StudyIdentity(
        study_instance_uid=study.study_instance_uid,
        patient_id=values.get("PatientID", ""),
        accession_number=values.get("AccessionNumber", ""),
        study_id=values.get("StudyID", ""),
        study_date=values.get("StudyDate", ""),
        study_time=values.get("StudyTime", ""),
        pseudonymized=pseudonymizer is not None,
        from_source_header=study_values is not None,
        dropped=dropped,
    )


def _read_header(path: str) -> dict[str, object] | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_KEYWORDS))
        return {k: ds.get(k) for k in _HEADER_KEYWORDS if k in ds}
    except FileNotFoundError:
        log.info("source file gone: %s", path)
        return None
    except Exception as exc:  # any reader failure means "no usable header", never a crash
        log.warning("cannot read the header of %s (%s): using the report's values", path,
                    type(exc).__name__)  # fmt: skip
        return None


def _str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "\\".join(str(v) for v in value)
    return str(value)


def _valid(vr: str, value: str) -> bool:
    """Whether ``value`` is one valid value of ``vr`` (length, characters, no ``\\``)."""
    from pydicom.config import RAISE
    from pydicom.valuerep import validate_value

    if value == "":
        return True
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return False
    try:
        validate_value(vr, value, RAISE)
    except (ValueError, TypeError):
        return False
    return True
