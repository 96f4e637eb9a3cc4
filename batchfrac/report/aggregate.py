"""Image rows -> study rows (pure; no I/O).

Rules (documented in ``schemas/studies.schema.json``):

- A study is the set of rows sharing (0020,000D) *Study Instance UID*; it gets a row when
  at least one of its images is ``ok``. An ``ok`` image without a Study Instance UID is its
  own study (flag ``missing_study_uid``).
- ``abnormal_probability`` is the MURA rule: the mean of the ``ok`` images' probabilities.
  Each image keeps the probability of the bone it was routed to, so a study whose images
  route to different bones still averages its images' own-bone probabilities.
- The study's ``bone`` is the bone with the largest summed router confidence over its ``ok``
  images (ties: first in router order); a study with more than one routed bone is flagged
  ``mixed_bones``. The threshold is that bone's threshold from the model bundle, and the
  prediction is ``abnormal`` when the probability is greater than the threshold.
- An ok row flagged ``duplicate_instance`` (the same SOP Instance UID and frame as an
  earlier row of the study) is left out of the mean and of ``n_images``; the study is
  flagged ``duplicate_instances``.
- ``n_errors`` counts the study's ``error`` rows (files whose header was read but whose
  pixels failed); ``has_errors`` flags them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..enums import Bone, ImageFlag, Label, Status, StudyFlag
from .rows import ImageRow, StudyRow

#: Image flags a study row carries up from its images.
_CARRIED_IMAGE_FLAGS = {
    ImageFlag.BODYPART_MISMATCH.value: StudyFlag.BODYPART_MISMATCH,
    ImageFlag.LOW_ROUTER_CONFIDENCE.value: StudyFlag.LOW_ROUTER_CONFIDENCE,
}


@dataclass
class _Study:
    ok: list[ImageRow] = field(default_factory=list)
    n_errors: int = 0


def study_bone(routed: Iterable[tuple[Bone, float]]) -> Bone:
    """A study's bone from its images' ``(routed bone, router confidence)``: the bone with
    the largest summed confidence (ties: first in router order).

    The one rule for the study bone: the scan's aggregation and ``batchfrac evaluate``'s
    routed study-level results both call it.
    """
    totals = {bone: 0.0 for bone in Bone}
    for bone, confidence in routed:
        totals[bone] += confidence
    return max(Bone, key=lambda bone: totals[bone])  # max keeps the first of equal keys


def _routed(row: ImageRow) -> tuple[Bone, float]:
    if row.bone is None or row.bone_confidence is None:
        raise ValueError(f"ok row without a routed bone: {row.path}")
    return Bone(row.bone), row.bone_confidence


def duplicate_instance_rows(
    rows: Iterable[tuple[str | None, str | None, str | None, int]],
) -> list[int]:
    """Indices of the ``(status, study UID, SOP Instance UID, frame)`` rows that repeat an
    earlier ok row's study, SOP Instance UID and frame (rows in path order: the first
    copy is the one that counts). Such rows get the ``duplicate_instance`` flag and are
    left out of their study's mean, so an instance stored twice is not counted twice."""
    seen: set[tuple[str | None, str, int]] = set()
    repeated = []
    for index, (status, study, sop, frame) in enumerate(rows):
        if status != Status.OK.value or not sop:
            continue
        key = (study, sop, frame)
        if key in seen:
            repeated.append(index)
        seen.add(key)
    return repeated


def aggregate_studies(rows: Iterable[ImageRow], thresholds: Mapping[Bone, float]) -> list[StudyRow]:
    """One :class:`StudyRow` per study with >= 1 ok image, sorted by Study Instance UID."""
    studies: dict[str | tuple[str, int], _Study] = defaultdict(_Study)
    for row in rows:
        if row.status == Status.OK.value:
            key: str | tuple[str, int] = row.study_instance_uid or (row.path, row.frame)
            studies[key].ok.append(row)
        elif row.status == Status.ERROR.value and row.study_instance_uid:
            studies[row.study_instance_uid].n_errors += 1
    out = [_study_row(s, thresholds) for s in studies.values() if s.ok]
    out.sort(key=lambda s: (s.study_instance_uid is None, s.study_instance_uid or ""))
    return out


def _study_row(study: _Study, thresholds: Mapping[Bone, float]) -> StudyRow:
    everything = sorted(study.ok, key=lambda r: (r.path, r.frame))
    # A repeated (SOP Instance UID, frame) counts once: see duplicate_instance_rows.
    images = [r for r in everything if ImageFlag.DUPLICATE_INSTANCE.value not in r.flags]
    first = images[0]
    bone = study_bone(_routed(row) for row in images)
    probs = [r.abnormal_probability for r in images]
    if any(p is None for p in probs):
        raise ValueError(f"ok row without a probability in study {first.study_instance_uid}")
    probability = sum(p for p in probs if p is not None) / len(probs)
    threshold = float(thresholds[bone])
    flags: set[StudyFlag] = set()
    if len({r.bone for r in images}) > 1:
        flags.add(StudyFlag.MIXED_BONES)
    if study.n_errors:
        flags.add(StudyFlag.HAS_ERRORS)
    if first.study_instance_uid is None:
        flags.add(StudyFlag.MISSING_STUDY_UID)
    if len({r.patient_id for r in images if r.patient_id is not None}) > 1:
        flags.add(StudyFlag.MULTIPLE_PATIENT_IDS)
    if len(images) < len(everything):
        flags.add(StudyFlag.DUPLICATE_INSTANCES)
    for row in images:
        flags.update(_CARRIED_IMAGE_FLAGS[f] for f in row.flags if f in _CARRIED_IMAGE_FLAGS)
    return StudyRow(
        study_instance_uid=first.study_instance_uid,
        patient_id=first.patient_id,
        accession_number=first.accession_number,
        bone=bone.value,
        n_images=len(images),
        n_errors=study.n_errors,
        abnormal_probability=probability,
        prediction=(Label.ABNORMAL if probability > threshold else Label.NORMAL).value,
        threshold=threshold,
        flags=tuple(f.value for f in StudyFlag if f in flags),
    )
