"""batchfrac.pacs.export: one SR per study, one KOS per abnormal study, from the reports
and the source headers; deterministic; no names; pseudonyms on request; valid DICOM."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
)

from batchfrac.pacs.export import ExportSummary, ObjectKind, SkipReason, export_dicom
from batchfrac.report.pseudonym import Pseudonymizer
from tests.pacs import scan_output as so

KEY = b"0123456789abcdef0123456789abcdef"
HAND, WRIST = (s.uid for s in so.standard_studies())


def items(ds: Dataset) -> Iterator[Dataset]:
    """Every SR content item below ``ds``, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from items(item)


def meaning(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


def groups(sr: Dataset) -> dict[str, Dataset]:
    """Measurement groups by tracking identifier ("Image 1", ..., "Study")."""
    found = {}
    for item in items(sr):
        if item.ValueType == "CONTAINER" and meaning(item) == "Measurement Group":
            (tracking,) = (
                i.TextValue for i in item.ContentSequence if meaning(i) == "Tracking Identifier"
            )
            found[str(tracking)] = item
    return found


def numbers(group: Dataset) -> dict[str, float]:
    return {
        meaning(i): float(i.MeasuredValueSequence[0].NumericValue)
        for i in group.ContentSequence
        if i.ValueType == "NUM"
    }


def code_of(group: Dataset, name: str) -> str:
    (value,) = (
        i.ConceptCodeSequence[0].CodeMeaning for i in group.ContentSequence if meaning(i) == name
    )
    return str(value)


def sources(group: Dataset) -> list[tuple[str, str, list[int] | None]]:
    out = []
    for item in group.ContentSequence:
        if item.ValueType == "IMAGE":
            ref = item.ReferencedSOPSequence[0]
            frames = ref.get("ReferencedFrameNumber")
            frame_list = (
                None
                if frames is None
                else [
                    int(f)
                    for f in (
                        frames
                        if isinstance(frames, list | pydicom.multival.MultiValue)
                        else [frames]
                    )
                ]
            )
            out.append(
                (str(ref.ReferencedSOPClassUID), str(ref.ReferencedSOPInstanceUID), frame_list)
            )
    return out


def by_kind(summary: ExportSummary, kind: ObjectKind) -> dict[str, Dataset]:
    return {
        o.study_instance_uid: pydicom.dcmread(o.path) for o in summary.objects if o.kind is kind
    }


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    return so.make_scan_output(tmp_path / "scan")


@pytest.fixture
def exported(scan: Path, tmp_path: Path) -> ExportSummary:
    return export_dicom(scan, tmp_path / "dicom")


class TestObjects:
    def test_one_sr_per_study_and_one_kos_per_abnormal_study(
        self, exported: ExportSummary, tmp_path: Path
    ) -> None:
        kinds = sorted((o.kind.value, o.study_instance_uid) for o in exported.objects)
        assert kinds == [("kos", HAND), ("sr", HAND), ("sr", WRIST)]
        assert exported.exit_code == 0 and exported.skipped == ()
        names = sorted(p.name for p in (tmp_path / "dicom").iterdir())
        assert names == sorted(f"{o.sop_instance_uid}.dcm" for o in exported.objects)

    def test_objects_go_into_the_source_study_in_their_own_series(
        self, exported: ExportSummary
    ) -> None:
        for obj in exported.objects:
            ds = pydicom.dcmread(obj.path)
            assert ds.StudyInstanceUID == obj.study_instance_uid
            assert (
                ds.SOPInstanceUID == obj.sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
            )
            assert not ds.SeriesInstanceUID.startswith(
                obj.study_instance_uid
            )  # not a source series
            assert ds.Modality == {"sr": "SR", "kos": "KO"}[obj.kind.value]
        series = {pydicom.dcmread(o.path).SeriesInstanceUID for o in exported.objects}
        assert len(series) == 3

    def test_sr_holds_each_image_its_bone_probability_and_call(
        self, exported: ExportSummary
    ) -> None:
        hand = groups(by_kind(exported, ObjectKind.SR)[HAND])
        assert sorted(hand) == ["Image 1", "Image 2", "Image 3", "Study"]
        image2 = hand["Image 2"]
        assert numbers(image2) == {
            "Probability of abnormality": pytest.approx(0.72),
            "Body part classifier confidence": pytest.approx(0.88),
            "Threshold Value": 0.5,
        }
        assert code_of(image2, "Finding Site") == "Hand"
        assert code_of(image2, "Normality") == "Abnormal"
        study = hand["Study"]
        assert numbers(study)["Probability of abnormality"] == pytest.approx(
            (0.91 + 0.72 + 0.40) / 3
        )
        assert code_of(study, "Normality") == "Abnormal"
        assert code_of(study, "Finding Site") == "Hand"

    def test_an_image_routed_to_a_bone_without_known_threshold_gets_numbers_but_no_call(
        self, exported: ExportSummary
    ) -> None:
        image3 = groups(by_kind(exported, ObjectKind.SR)[HAND])["Image 3"]
        assert code_of(image3, "Finding Site") == "Finger"
        assert sorted(numbers(image3)) == [
            "Body part classifier confidence",
            "Probability of abnormality",
        ]
        assert "Normality" not in {meaning(i) for i in image3.ContentSequence}

    def test_the_run_bundle_gives_thresholds_of_bones_without_a_study(self, tmp_path: Path) -> None:
        out = so.make_scan_output(tmp_path / "scan", bundle_thresholds={"finger": 0.3, "hand": 0.9})
        image3 = groups(by_kind(export_dicom(out, tmp_path / "d"), ObjectKind.SR)[HAND])["Image 3"]
        assert numbers(image3)["Threshold Value"] == pytest.approx(0.3)
        assert code_of(image3, "Normality") == "Abnormal"  # 0.40 > 0.3
        image1 = groups(by_kind(export_dicom(out, tmp_path / "d"), ObjectKind.SR)[HAND])["Image 1"]
        assert numbers(image1)["Threshold Value"] == 0.5  # the study row's threshold wins

    def test_sr_references_source_images_with_their_sop_classes_and_frames(
        self, exported: ExportSummary
    ) -> None:
        hand = groups(by_kind(exported, ObjectKind.SR)[HAND])
        assert sources(hand["Image 2"]) == [(ComputedRadiographyImageStorage, f"{HAND}.1.2", None)]
        assert sources(hand["Image 1"]) == [
            (DigitalXRayImageStorageForPresentation, f"{HAND}.1.1", None)
        ]
        assert len(sources(hand["Study"])) == 3
        wrist = groups(by_kind(exported, ObjectKind.SR)[WRIST])
        # a two-frame DX file: DX is not a multi-frame IOD, so the whole instance is referenced
        assert (
            sources(wrist["Image 1"])
            == sources(wrist["Image 2"])
            == [(DigitalXRayImageStorageForPresentation, f"{WRIST}.1.1", None)]
        )
        evidence = by_kind(exported, ObjectKind.SR)[HAND].CurrentRequestedProcedureEvidenceSequence
        referenced = {
            r.ReferencedSOPInstanceUID
            for s in evidence[0].ReferencedSeriesSequence
            for r in s.ReferencedSOPSequence
        }
        assert referenced == {f"{HAND}.1.{n}" for n in (1, 2, 3)}

    def test_frames_of_a_multi_frame_sop_class_are_referenced_by_number(
        self, tmp_path: Path
    ) -> None:
        studies = so.standard_studies()
        studies[1].images[0].sop_class_uid = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
        summary = export_dicom(so.make_scan_output(tmp_path / "scan", studies), tmp_path / "d")
        wrist = groups(by_kind(summary, ObjectKind.SR)[WRIST])
        assert sources(wrist["Image 1"])[0][2] == [1]
        assert sources(wrist["Image 2"])[0][2] == [2]

    def test_sr_names_algorithm_version_bundle_and_demo_notice(
        self, exported: ExportSummary
    ) -> None:
        sr = by_kind(exported, ObjectKind.SR)[WRIST]
        texts = {(meaning(i), str(i.TextValue)) for i in items(sr) if i.ValueType == "TEXT"}
        assert ("Algorithm Name", "batchfrac") in texts
        assert ("Algorithm Version", "0.1.0") in texts
        assert ("Algorithm Parameters", "model bundle feedfacecafe0001") in texts
        assert ("Algorithm Parameters", so.NOTICE) in texts
        assert "DEMO" in sr.SeriesDescription

    def test_no_demo_notice_for_a_real_bundle(self, tmp_path: Path) -> None:
        out = so.make_scan_output(tmp_path / "scan", demo=False)
        summary = export_dicom(out, tmp_path / "dicom")
        for obj in summary.objects:
            data = obj.path.read_bytes()
            assert b"DEMO" not in data and so.NOTICE.encode() not in data

    def test_kos_lists_the_abnormal_study_images_for_review(self, exported: ExportSummary) -> None:
        kos = by_kind(exported, ObjectKind.KOS)[HAND]
        assert kos.ConceptNameCodeSequence[0].CodeValue == "128201"  # For Physician Review
        images = [
            i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for i in items(kos)
            if i.ValueType == "IMAGE"
        ]
        assert sorted(images) == [f"{HAND}.1.{n}" for n in (1, 2, 3)]
        (description,) = (
            str(i.TextValue) for i in items(kos) if meaning(i) == "Key Object Description"
        )
        assert "abnormal" in description and "hand" in description and so.NOTICE in description


class TestIdentification:
    def test_copied_from_the_source_headers(self, exported: ExportSummary) -> None:
        for obj in exported.objects:
            ds = pydicom.dcmread(obj.path)
            assert (ds.PatientID, ds.AccessionNumber) in {
                ("PAT001", "ACC001"),
                ("PAT002", "ACC002"),
            }
            assert (ds.StudyDate, ds.StudyTime, ds.StudyID) == ("20240105", "101500", "S42")

    def test_names_birth_dates_and_addresses_never_leave(self, exported: ExportSummary) -> None:
        for obj in exported.objects:
            data = obj.path.read_bytes()
            for secret in (
                so.PATIENT_NAME,
                so.BIRTH_DATE,
                so.ADDRESS,
                so.REFERRING,
                "DOE",
                "HOUSE",
            ):
                assert secret.encode() not in data, (secret, obj.kind)
            ds = pydicom.dcmread(obj.path)
            for keyword in (
                "PatientName",
                "PatientBirthDate",
                "PatientSex",
                "ReferringPhysicianName",
            ):
                assert keyword in ds and ds[keyword].value in ("", None), keyword  # type 2: empty
            assert "PatientAddress" not in ds

    def test_pseudonyms_replace_ids_and_the_objects_say_so(
        self, scan: Path, tmp_path: Path
    ) -> None:
        pseudo = Pseudonymizer(KEY)
        summary = export_dicom(scan, tmp_path / "pseudo", pseudonymizer=pseudo)
        plain = export_dicom(scan, tmp_path / "plain")
        assert {o.sop_instance_uid for o in summary.objects}.isdisjoint(
            o.sop_instance_uid for o in plain.objects
        )
        for obj in summary.objects:
            ds = pydicom.dcmread(obj.path)
            original = "PAT001" if obj.study_instance_uid == HAND else "PAT002"
            assert ds.PatientID == pseudo.patient_id(original)
            assert ds.AccessionNumber == pseudo.accession_number(original.replace("PAT", "ACC"))
            assert ds.PatientIdentityRemoved == "YES" and "pseudonym" in ds.DeidentificationMethod
            assert ds.StudyID == ""
            data = obj.path.read_bytes()
            assert b"PAT00" not in data and b"ACC00" not in data

    def test_a_vanished_source_falls_back_to_the_reports(self, scan: Path, tmp_path: Path) -> None:
        shutil.rmtree(scan.parent / "archive" / "study0")
        summary = export_dicom(scan, tmp_path / "dicom")
        assert any("SOP Class UID assumed from the modality" in w for w in summary.warnings)
        sr = by_kind(summary, ObjectKind.SR)[HAND]
        assert (sr.PatientID, sr.AccessionNumber, sr.StudyDate, sr.StudyID) == (
            "PAT001",
            "ACC001",
            "",
            "",
        )
        image2 = groups(sr)["Image 2"]  # the CR image: CR Image Storage assumed from its modality
        assert sources(image2)[0][0] == ComputedRadiographyImageStorage


class TestDeterminism:
    def test_same_run_exports_the_same_bytes(self, scan: Path, tmp_path: Path) -> None:
        first = export_dicom(scan, tmp_path / "a")
        second = export_dicom(scan, tmp_path / "b")
        a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
        b = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
        assert a == b and len(a) == 3
        assert first.files_written == second.files_written == 3

    def test_exporting_again_rewrites_nothing(self, scan: Path, tmp_path: Path) -> None:
        export_dicom(scan, tmp_path / "a")
        before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()}
        again = export_dicom(scan, tmp_path / "a")
        assert again.files_written == 0
        assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()} == before

    def test_times_come_from_the_run_not_the_clock(self, exported: ExportSummary) -> None:
        for obj in exported.objects:
            ds = pydicom.dcmread(obj.path)
            assert (ds.ContentDate, ds.ContentTime) == ("20261130", "021507.125000")
            assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == (
                "20261130",
                "021507.125000",
            )

    def test_another_run_makes_other_objects(self, tmp_path: Path) -> None:
        one = export_dicom(so.make_scan_output(tmp_path / "1", run_id="run-1"), tmp_path / "d1")
        two = export_dicom(so.make_scan_output(tmp_path / "2", run_id="run-2"), tmp_path / "d2")
        assert {o.sop_instance_uid for o in one.objects}.isdisjoint(
            o.sop_instance_uid for o in two.objects
        )


class TestHostileReports:
    @pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # hostile UIDs on purpose
    def test_an_invalid_study_uid_is_skipped_and_nothing_escapes(self, tmp_path: Path) -> None:
        studies = so.standard_studies()
        studies[0].uid = "../../evil"
        for image in studies[0].images:
            image.sop_instance_uid, image.series_instance_uid = "1.2.3.4", "1.2.3"
        out = so.make_scan_output(tmp_path / "scan", studies)
        summary = export_dicom(out, tmp_path / "x" / "dicom")
        assert [(s.study_instance_uid, s.reason) for s in summary.skipped] == [
            ("../../evil", SkipReason.INVALID_UID)
        ]
        assert summary.exit_code == 3
        written = {p.relative_to(tmp_path / "x").as_posix() for p in (tmp_path / "x").rglob("*")}
        assert written == {"dicom", f"dicom/{summary.objects[0].sop_instance_uid}.dcm"}

    @pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # hostile UIDs on purpose
    def test_images_with_invalid_uids_are_left_out(self, tmp_path: Path) -> None:
        studies = so.standard_studies()
        studies[0].images[2].sop_instance_uid = "1.2.3/../4"
        summary = export_dicom(so.make_scan_output(tmp_path / "scan", studies), tmp_path / "d")
        assert any("not referenced" in w for w in summary.warnings)
        hand = groups(by_kind(summary, ObjectKind.SR)[HAND])
        assert sorted(hand) == ["Image 1", "Image 2", "Study"]

    def test_a_study_without_uid_is_skipped_without_failing(self, tmp_path: Path) -> None:
        out = so.make_scan_output(tmp_path / "scan")
        table = pq.read_table(out / "studies.parquet").to_pylist()
        table[1]["study_instance_uid"] = None
        so.write_table(out / "studies.parquet", "studies", table)
        summary = export_dicom(out, tmp_path / "d")
        assert [s.reason for s in summary.skipped] == [SkipReason.MISSING_STUDY_UID]
        assert summary.exit_code == 0 and len(summary.objects) == 2
