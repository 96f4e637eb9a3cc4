"""What every object we make carries besides its content: identification, times, evidence.

highdicom copies patient and study attributes from the first evidence dataset and stamps
creation times from the clock. We hand it evidence that holds nothing but UIDs and the
identification we allow, then set every identifying and time attribute ourselves, so that
no name, birth date or address can get in and the same run always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from pydicom.dataset import Dataset

from .identity import SourceImage, StudyIdentity
from .results import RunInfo

DEIDENTIFICATION_METHOD = "batchfrac HMAC-SHA256 pseudonyms: PatientID, AccessionNumber"
"""(0012,0063) *De-identification Method* of pseudonymised objects (LO, 64 characters)."""

CHARACTER_SET = "ISO_IR 192"
"""UTF-8: identifiers copied from sources in any character set are stored as decoded."""


def run_time(run: RunInfo) -> datetime:
    """The run's end (UTC): the content, series and creation time of every object it makes."""
    return run.finished_at.astimezone(timezone.utc)


def dicom_date(moment: datetime) -> str:
    """A DA value (YYYYMMDD)."""
    return moment.strftime("%Y%m%d")


def dicom_time(moment: datetime) -> str:
    """A TM value (HHMMSS.FFFFFF)."""
    return moment.strftime("%H%M%S.%f")


def evidence_datasets(identity: StudyIdentity, images: Sequence[SourceImage]) -> list[Dataset]:
    """One minimal dataset per referenced instance (SOP class and instance, series, study).

    The first also carries the identification highdicom copies into the new object's
    Patient and General Study modules, with (0010,0010) *Patient's Name*, (0010,0030)
    *Patient's Birth Date*, (0010,0040) *Patient's Sex* and (0008,0090) *Referring
    Physician's Name* present but empty (type 2).
    """
    datasets = []
    seen: set[str] = set()
    for image in images:
        uid = image.finding.sop_instance_uid
        if uid is None or uid in seen:
            continue
        seen.add(uid)
        ds = Dataset()
        ds.SOPClassUID = image.sop_class_uid
        ds.SOPInstanceUID = uid
        ds.SeriesInstanceUID = image.finding.series_instance_uid
        ds.StudyInstanceUID = identity.study_instance_uid
        datasets.append(ds)
    if not datasets:
        raise ValueError("no referenceable image")
    first = datasets[0]
    first.PatientName = ""
    first.PatientID = identity.patient_id
    first.PatientBirthDate = ""
    first.PatientSex = ""
    first.AccessionNumber = identity.accession_number
    first.StudyID = identity.study_id
    first.StudyDate = identity.study_date
    first.StudyTime = identity.study_time
    first.ReferringPhysicianName = ""
    return datasets


def stamp(ds: Dataset, identity: StudyIdentity, run: RunInfo) -> None:
    """Set identification and times of a finished object in place.

    Patient module: (0010,0020) from ``identity``, name/birth date/sex empty, and when
    pseudonymised (0012,0062) *Patient Identity Removed* ``YES`` with (0012,0063)
    *De-identification Method*. General Study: (0020,000D), (0008,0050), (0020,0010),
    (0008,0020), (0008,0030) from ``identity``. SOP Common (0008,0012)/(0008,0013)
    *Instance Creation Date/Time* and every (0018,A002) *Contribution DateTime* become
    the run's end, never the clock.
    """
    when = run_time(run)
    ds.PatientName = ""
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.AccessionNumber = identity.accession_number
    ds.StudyID = identity.study_id
    ds.StudyDate = identity.study_date
    ds.StudyTime = identity.study_time
    ds.ReferringPhysicianName = ""
    if identity.pseudonymized:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    ds.InstanceCreationDate = dicom_date(when)
    ds.InstanceCreationTime = dicom_time(when)
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S.%f") + "+0000"
