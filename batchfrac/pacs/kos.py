"""One Key Object Selection document per abnormal study, so a worklist shows it first.

TID 2010 with the title (128201, DCM, "For Physician Review") from CID 7010, the device
observer (batchfrac and its bundle), a (113012, DCM, "Key Object Description") that says
why the study was flagged (and that the bundle is a DEMO when it is), and one IMAGE item
per scanned image of the study. Filed in the source study, in its own series.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from pydicom.dataset import Dataset

from . import concepts
from .identity import SourceImage, StudyIdentity
from .results import RunInfo, StudyResult
from .sr import MANUFACTURER, device_observer_context, object_uids, series_description
from .stamping import CHARACTER_SET, dicom_date, dicom_time, evidence_datasets, run_time, stamp

KOS_SERIES_NUMBER = 9902


def key_object_description(study: StudyResult, run: RunInfo) -> str:
    """The (113012, DCM, "Key Object Description") text: the call, its numbers, any DEMO."""
    text = (
        f"batchfrac flagged this {study.bone.value} study as abnormal for review: "
        f"P(abnormal) {study.abnormal_probability:.3f} > threshold {study.threshold:.3f} "
        f"over {len(study.images)} image(s); bundle {run.bundle_id}."
    )
    if run.demo:
        text += " " + (run.notice or "DEMO bundle: not for clinical use") + "."
    return text


def build_kos(
    study: StudyResult,
    identity: StudyIdentity,
    images: Sequence[SourceImage],
    run: RunInfo,
) -> Dataset:
    """The Key Object Selection document of an abnormal ``study`` listing its images."""
    import highdicom as hd

    evidence = evidence_datasets(identity, images)
    # highdicom makes an IMAGE item (not COMPOSITE) for a dataset that has Rows and
    # Columns; the values themselves are not written anywhere.
    selected = []
    for ds in evidence:
        item = copy.copy(ds)
        item.Rows = item.Columns = 0
        selected.append(item)
    content = hd.ko.KeyObjectSelection(
        document_title=concepts.FOR_PHYSICIAN_REVIEW,
        referenced_objects=selected,
        observer_device_context=device_observer_context(run),
        description=key_object_description(study, run),
    )
    uids = object_uids(run, identity.study_instance_uid, "kos", identity.patient_id)
    when = run_time(run)
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        series_instance_uid=uids.series_instance_uid,
        series_number=KOS_SERIES_NUMBER,
        sop_instance_uid=uids.sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description=series_description(run, "flagged for review"),
        content_date=dicom_date(when),
        content_time=dicom_time(when),
        series_date=dicom_date(when),
        series_time=dicom_time(when),
        specific_character_set=CHARACTER_SET,
    )
    stamp(kos, identity, run)
    return kos
