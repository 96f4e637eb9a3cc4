"""Study rules: image rows -> study rows (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from batchfrac.enums import Bone, ImageFlag, Reason, StudyFlag
from batchfrac.records import Prediction
from batchfrac.report.aggregate import aggregate_studies, duplicate_instance_rows, study_bone
from batchfrac.report.rows import ImageRow, image_row
from tests.scan_fakes import ok_result, rejected_result

THRESHOLDS = {bone: 0.5 for bone in Bone}


def ok_row(
    path: str, bone: Bone, probability: float, confidence: float = 0.9, **tags: object
) -> ImageRow:
    tags.setdefault("body_part_examined", None)
    result = ok_result(path, 0.5, **tags)
    return image_row(result, Prediction(bone, confidence, probability))


def error_row(path: str, study: str | None) -> ImageRow:
    tags = {"study_instance_uid": study} if study else {}
    return image_row(rejected_result(path, Reason.DECODE_ERROR, **tags))


class TestStudyProbability:
    def test_is_the_mean_of_ok_image_probabilities(self) -> None:
        rows = [
            ok_row("/a/1", Bone.HAND, 0.2),
            ok_row("/a/2", Bone.HAND, 0.9),
            ok_row("/a/3", Bone.HAND, 0.7),
        ]
        (study,) = aggregate_studies(rows, THRESHOLDS)
        assert study.abnormal_probability == pytest.approx(0.6)
        assert study.n_images == 3
        assert study.prediction == "abnormal"
        assert study.bone == "hand"
        assert study.flags == ()

    def test_uses_the_bone_threshold_strictly(self) -> None:
        rows = [ok_row("/a/1", Bone.WRIST, 0.25), ok_row("/a/2", Bone.WRIST, 0.35)]
        at = aggregate_studies(rows, {**THRESHOLDS, Bone.WRIST: 0.3})
        below = aggregate_studies(rows, {**THRESHOLDS, Bone.WRIST: 0.29})
        assert (at[0].prediction, at[0].threshold) == ("normal", 0.3)
        assert (below[0].prediction, below[0].threshold) == ("abnormal", 0.29)

    def test_errors_are_counted_but_not_averaged(self) -> None:
        rows = [
            ok_row("/a/1", Bone.HAND, 0.4),
            error_row("/a/2", "1.2.3"),
            error_row("/a/3", "1.2.3"),
            image_row(rejected_result("/a/4", Reason.NOT_DICOM)),
        ]
        (study,) = aggregate_studies(rows, THRESHOLDS)
        assert (study.n_images, study.n_errors) == (1, 2)
        assert study.abnormal_probability == pytest.approx(0.4)
        assert StudyFlag.HAS_ERRORS in study.flags

    def test_study_with_only_errors_has_no_row(self) -> None:
        rows = [ok_row("/a/1", Bone.HAND, 0.4), error_row("/b/1", "9.9.9")]
        studies = aggregate_studies(rows, THRESHOLDS)
        assert [s.study_instance_uid for s in studies] == ["1.2.3"]


class TestMixedBones:
    def test_majority_by_summed_confidence_and_flagged(self) -> None:
        rows = [
            ok_row("/a/1", Bone.HAND, 0.2, confidence=0.5),
            ok_row("/a/2", Bone.HAND, 0.2, confidence=0.5),
            ok_row("/a/3", Bone.WRIST, 0.8, confidence=0.95),
        ]
        (study,) = aggregate_studies(rows, {**THRESHOLDS, Bone.HAND: 0.45})
        assert study.bone == "hand"  # 0.5 + 0.5 > 0.95
        assert study.threshold == 0.45
        # each image keeps its own bone's probability
        assert study.abnormal_probability == pytest.approx(0.4)
        assert StudyFlag.MIXED_BONES in study.flags

    def test_tie_goes_to_router_order(self) -> None:
        assert study_bone([(Bone.WRIST, 0.6), (Bone.ELBOW, 0.6)]) is Bone.ELBOW
        rows = [ok_row("/a/1", Bone.WRIST, 0.2, 0.6), ok_row("/a/2", Bone.ELBOW, 0.2, 0.6)]
        (study,) = aggregate_studies(rows, THRESHOLDS)
        assert study.bone == "elbow"


class TestStudyIdentity:
    def test_grouped_by_study_uid_sorted_and_first_path_wins(self) -> None:
        rows = [
            ok_row("/z/1", Bone.HAND, 0.1, study_instance_uid="2.2", patient_id="P9"),
            ok_row("/b/2", Bone.HAND, 0.1, study_instance_uid="1.1", accession_number="B"),
            ok_row("/b/1", Bone.HAND, 0.3, study_instance_uid="1.1", accession_number="A"),
        ]
        studies = aggregate_studies(rows, THRESHOLDS)
        assert [s.study_instance_uid for s in studies] == ["1.1", "2.2"]
        assert studies[0].accession_number == "A"
        assert studies[0].n_images == 2
        assert studies[1].patient_id == "P9"

    def test_missing_study_uid_makes_one_study_per_image(self) -> None:
        rows = [
            ok_row("/a/1", Bone.HAND, 0.1, study_instance_uid=None),
            ok_row("/a/2", Bone.HAND, 0.9, study_instance_uid=None),
        ]
        studies = aggregate_studies(rows, THRESHOLDS)
        assert len(studies) == 2
        assert all(s.study_instance_uid is None for s in studies)
        assert all(StudyFlag.MISSING_STUDY_UID in s.flags for s in studies)

    def test_flags_several_patients_and_carries_routing_flags(self) -> None:
        rows = [
            ok_row("/a/1", Bone.HAND, 0.1, patient_id="P1", body_part_examined="ELBOW"),
            ok_row("/a/2", Bone.HAND, 0.1, patient_id="P2"),
        ]
        assert ImageFlag.BODYPART_MISMATCH in rows[0].flags
        (study,) = aggregate_studies(rows, THRESHOLDS)
        assert study.flags == (StudyFlag.MULTIPLE_PATIENT_IDS, StudyFlag.BODYPART_MISMATCH)

    def test_ok_row_without_probability_is_a_bug(self) -> None:
        row = replace(ok_row("/a/1", Bone.HAND, 0.1), abnormal_probability=None)
        with pytest.raises(ValueError, match="probability"):
            aggregate_studies([row], THRESHOLDS)


class TestRepeatedInstances:
    def test_an_instance_stored_twice_counts_once_and_is_flagged(self) -> None:
        first = ok_row("/a/1", Bone.HAND, 0.2, sop_instance_uid="9.1")
        copy = ok_row("/a/2", Bone.HAND, 0.9, sop_instance_uid="9.1")
        other = ok_row("/a/3", Bone.HAND, 0.4, sop_instance_uid="9.2")
        keys = [(r.status, r.study_instance_uid, r.sop_instance_uid, r.frame)
                for r in (first, copy, other)]  # fmt: skip
        assert duplicate_instance_rows(keys) == [1]
        flagged = replace(copy, flags=(*copy.flags, ImageFlag.DUPLICATE_INSTANCE.value))
        (study,) = aggregate_studies([first, flagged, other], THRESHOLDS)
        assert study.n_images == 2
        assert study.abnormal_probability == pytest.approx((0.2 + 0.4) / 2)
        assert StudyFlag.DUPLICATE_INSTANCES in study.flags

    def test_other_frames_and_studies_are_not_repeats(self) -> None:
        keys = [
            ("ok", "1.1", "9.1", 0),
            ("ok", "1.1", "9.1", 1),  # another frame of the same instance
            ("ok", "1.2", "9.1", 0),  # the same UID in another study
            ("error", "1.1", "9.1", 0),  # not scored
            ("ok", "1.1", None, 0),
            ("ok", "1.1", None, 0),  # no UID: nothing to compare
        ]
        assert duplicate_instance_rows(keys) == []
