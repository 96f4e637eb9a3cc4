"""One Comprehensive SR per scanned study: a TID 1500 *Measurement Report* of the findings.

Content tree (PS3.16 TID 1500, made with highdicom)::

    Imaging Measurement Report
      Language, Device observer (batchfrac, bundle id), Procedure reported: Plain radiography
      Imaging Measurements
        Measurement Group (TID 1501) per image: tracking id "Image n", algorithm (batchfrac,
          version, bundle, run, DEMO notice), finding site (the routed bone),
          Probability of abnormality, Body part classifier confidence, Threshold Value,
          Normality: Normal/Abnormal at that bone's threshold, source image (SOP class and
          instance UID, frame for multi-frame objects)
        Measurement Group "Study": the study's bone, the mean probability, threshold and
          the study-level call, with every image as source

The SR goes into the source study (same (0020,000D)) in its own series; its UIDs come from
the run id and the study UID (:func:`object_uids`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from ..enums import Bone
from . import concepts
from .identity import SourceImage, StudyIdentity
from .results import RunInfo, StudyResult
from .stamping import CHARACTER_SET, dicom_date, dicom_time, evidence_datasets, run_time, stamp
from .uids import derive_uid

if TYPE_CHECKING:
    from highdicom.sr import (
        AlgorithmIdentification,
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        ObserverContext,
        SourceImageForMeasurementGroup,
    )

SR_SERIES_NUMBER = 9901
MULTI_FRAME_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
        "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic
        "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA
        "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic
        "1.2.840.10008.5.1.4.1.1.12.2.1",  # Enhanced XRF
        "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis
    }
)
"""Image storage SOP classes whose IOD has the Multi-frame module (frames referencable)."""
MANUFACTURER = "batchfrac"


@dataclass(frozen=True, slots=True)
class ObjectUids:
    """Series and instance UIDs of one object, derived from the run and the study."""

    series_instance_uid: str
    sop_instance_uid: str


def object_uids(run: RunInfo, study_uid: str, kind: str, identity_key: str) -> ObjectUids:
    """UIDs for the ``kind`` (``"sr"``, ``"kos"``) object of a study in a run.

    ``identity_key`` is the patient ID the object carries (a pseudonym when pseudonymised),
    so that a pseudonymised export never reuses the UIDs of an identified one.
    """
    return ObjectUids(
        series_instance_uid=derive_uid(run.run_id, study_uid, kind, "series", identity_key),
        sop_instance_uid=derive_uid(run.run_id, study_uid, kind, "instance", identity_key),
    )


def series_description(run: RunInfo, what: str) -> str:
    """(0008,103E) *Series Description*, at most 64 characters, naming a DEMO bundle."""
    text = f"batchfrac {what}" + (" - DEMO, not for clinical use" if run.demo else "")
    return text[:64]


def algorithm_identification(run: RunInfo) -> AlgorithmIdentification:
    """TID 4019 *Algorithm Identification*: name, version, bundle, run and any DEMO notice."""
    import highdicom as hd

    parameters = [f"model bundle {run.bundle_id}", f"run {run.run_id}"]
    if run.demo:
        parameters.append(run.notice or "DEMO bundle: not for clinical use")
    return hd.sr.AlgorithmIdentification(
        name="batchfrac", version=run.software_version, parameters=parameters
    )


def device_observer_context(run: RunInfo) -> ObserverContext:
    """TID 1002 observer context: the device is batchfrac with its bundle."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derive_uid("batchfrac-device", run.bundle_id),
        name="batchfrac",
        manufacturer_name=MANUFACTURER,
        model_name=f"bundle {run.bundle_id}"[:64],
    )
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device
    )


def build_sr(
    study: StudyResult,
    identity: StudyIdentity,
    images: Sequence[SourceImage],
    run: RunInfo,
    thresholds: Mapping[Bone, float],
) -> Dataset:
    """The Comprehensive SR of ``study`` (see the module docstring for its content)."""
    import highdicom as hd
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    algorithm = algorithm_identification(run)
    frames = Counter(i.finding.sop_instance_uid for i in images)
    groups = [
        _image_group(n, image, run, identity, thresholds, algorithm, frames)
        for n, image in enumerate(images, start=1)
    ]
    groups.append(_study_group(study, images, run, identity, algorithm, frames))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=device_observer_context(run)
        ),
        procedure_reported=concepts.PLAIN_RADIOGRAPHY,
        imaging_measurements=groups,
    )
    uids = object_uids(run, identity.study_instance_uid, "sr", identity.patient_id)
    when = run_time(run)
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence_datasets(identity, images),
        content=report,
        series_instance_uid=uids.series_instance_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,  # an unverified machine result stays PRELIMINARY
        is_verified=False,
        series_description=series_description(run, "results"),
        software_versions=run.software_version,
        content_date=dicom_date(when),
        content_time=dicom_time(when),
        series_date=dicom_date(when),
        series_time=dicom_time(when),
        specific_character_set=CHARACTER_SET,
        coding_schemes=[
            CodingSchemeIdentificationItem(concepts.LOCAL_SCHEME, name=concepts.LOCAL_SCHEME_NAME)
        ],
    )
    stamp(sr, identity, run)
    return sr


def _source(image: SourceImage, frames: Counter[str | None]) -> SourceImageForMeasurementGroup:
    import highdicom as hd

    several = frames[image.finding.sop_instance_uid] > 1 or image.finding.frame > 0
    # (0008,1160) is allowed only for SOP classes whose IOD is multi-frame: a DX file that
    # holds several frames anyway is referenced as a whole.
    multi_frame = several and image.sop_class_uid in MULTI_FRAME_SOP_CLASSES
    return hd.sr.SourceImageForMeasurementGroup(
        referenced_sop_class_uid=image.sop_class_uid,
        referenced_sop_instance_uid=str(image.finding.sop_instance_uid),
        referenced_frame_numbers=[image.finding.frame + 1] if multi_frame else None,
    )


def _image_group(
    number: int,
    image: SourceImage,
    run: RunInfo,
    identity: StudyIdentity,
    thresholds: Mapping[Bone, float],
    algorithm: AlgorithmIdentification,
    frames: Counter[str | None],
) -> MeasurementsAndQualitativeEvaluations:
    import highdicom as hd

    finding = image.finding
    measurements = [
        _number(concepts.ABNORMAL_PROBABILITY, finding.abnormal_probability),
        _number(concepts.ROUTER_CONFIDENCE, finding.bone_confidence),
    ]
    evaluations = []
    threshold = thresholds.get(finding.bone)
    if threshold is not None:  # the call needs the bone's threshold; the numbers do not
        measurements.append(_number(concepts.THRESHOLD, threshold))
        call = concepts.finding_for(finding.abnormal_probability, threshold)
        evaluations.append(hd.sr.QualitativeEvaluation(concepts.NORMALITY, concepts.FINDING[call]))
    tracking_uid = derive_uid(
        run.run_id, identity.study_instance_uid, str(finding.sop_instance_uid),
        str(finding.frame), "image", identity.patient_id,
    )  # fmt: skip
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid, identifier=f"Image {number}"
        ),
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(concepts.BONE_SITE[finding.bone])],
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[_source(image, frames)],
    )


def _study_group(
    study: StudyResult,
    images: Sequence[SourceImage],
    run: RunInfo,
    identity: StudyIdentity,
    algorithm: AlgorithmIdentification,
    frames: Counter[str | None],
) -> MeasurementsAndQualitativeEvaluations:
    import highdicom as hd

    tracking_uid = derive_uid(run.run_id, identity.study_instance_uid, "study", identity.patient_id)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier="Study"),
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(concepts.BONE_SITE[study.bone])],
        measurements=[
            _number(concepts.ABNORMAL_PROBABILITY, study.abnormal_probability, concepts.MEAN),
            _number(concepts.THRESHOLD, study.threshold),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(concepts.NORMALITY, concepts.FINDING[study.prediction])
        ],
        source_images=[_source(image, frames) for image in images],
    )


def _number(name: Code, value: float, derivation: Code | None = None) -> Measurement:
    import highdicom as hd

    return hd.sr.Measurement(name=name, value=value, unit=concepts.NO_UNITS, derivation=derivation)
