"""generate_archive: a tiny synthetic DICOM archive, its ground truth and its junk."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet
from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation

from batchfrac.enums import Bone, Reason
from batchfrac.synth import GROUND_TRUTH_COLUMNS, Syntax, SynthConfig, generate_archive
from batchfrac.synth.archive import render_planned
from batchfrac.synth.plan import abnormal_flags, bone_sequence, plan_archive
from tests.factories import tree_bytes

TINY = SynthConfig(studies=8, seed=7, min_size=48, max_size=72)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "archive"
    generate_archive(out, TINY)
    return out


@pytest.fixture(scope="module")
def truth(archive: Path) -> list[dict[str, str]]:
    return _read_csv(archive / "ground_truth.csv")


class TestDeterminism:
    def test_same_seed_gives_identical_bytes(self, archive: Path, tmp_path: Path) -> None:
        generate_archive(tmp_path / "again", TINY)
        assert tree_bytes(tmp_path / "again") == tree_bytes(archive)

    def test_drawing_processes_do_not_change_the_bytes(self, archive: Path, tmp_path: Path) -> None:
        generate_archive(tmp_path / "parallel", TINY, jobs=2)
        assert tree_bytes(tmp_path / "parallel") == tree_bytes(archive)

    def test_different_seed_differs(self, archive: Path, tmp_path: Path) -> None:
        other = SynthConfig(studies=8, seed=8, min_size=48, max_size=72)
        generate_archive(tmp_path / "other", other)
        theirs, ours = tree_bytes(tmp_path / "other"), tree_bytes(archive)
        assert theirs["ground_truth.csv"] != ours["ground_truth.csv"]
        shared = set(theirs) & set(ours) - {"README.txt"}
        assert all(theirs[k] != ours[k] for k in shared if k.startswith("PT"))

    def test_refuses_a_non_empty_folder(self, archive: Path) -> None:
        with pytest.raises(FileExistsError):
            generate_archive(archive, TINY)


class TestFiles:
    def test_every_image_decodes_and_matches_its_row(self, archive: Path, truth: list) -> None:
        assert truth, "no images written"
        for row in truth:
            ds = dcmread(archive / row["path"])
            assert ds.file_meta.TransferSyntaxUID == row["transfer_syntax"]
            assert ds.PhotometricInterpretation == row["photometric"]
            assert ds.Modality == row["modality"]
            assert ds.SOPInstanceUID == row["sop_instance_uid"]
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert int(ds.BitsStored) == int(row["bits_stored"])
            assert 10 <= int(ds.BitsStored) <= 16
            pixels = ds.pixel_array
            assert pixels.shape == (int(row["rows"]), int(row["columns"]))
            assert 48 <= min(pixels.shape) and max(pixels.shape) <= 72
            assert int(pixels.max()) < (1 << int(ds.BitsStored))

    def test_all_syntaxes_are_used(self, truth: list) -> None:
        assert {r["transfer_syntax"] for r in truth} == {str(s.uid) for s in Syntax}

    def test_both_photometrics_and_modalities_occur(self, truth: list) -> None:
        assert {r["photometric"] for r in truth} == {"MONOCHROME1", "MONOCHROME2"}
        assert {r["modality"] for r in truth} == {"CR", "DX"}

    def test_sop_classes_and_modules_fit_the_modality(self, archive: Path, truth: list) -> None:
        for row in truth:
            ds = dcmread(archive / row["path"], stop_before_pixels=True)
            assert ds.Manufacturer == "batchfrac-synth"
            assert str(ds.PatientName).startswith("SYNTH^")
            assert "RescaleSlope" in ds and "RescaleIntercept" in ds
            if ds.Modality == "DX":
                assert ds.SOPClassUID == DigitalXRayImageStorageForPresentation
                assert ds.PresentationIntentType == "FOR PRESENTATION"
                assert "WindowCenter" in ds and "WindowWidth" in ds
            else:
                assert ds.SOPClassUID == ComputedRadiographyImageStorage
            assert ds.ViewPosition == row["view"]
            assert ds.ImageLaterality == row["laterality"]
            assert ds.get("BodyPartExamined", "") == row["body_part_examined"]

    def test_monochrome1_is_stored_inverted(self, archive: Path, truth: list) -> None:
        plans = {s.study_instance_uid: s for s in plan_archive(TINY, tuple(Syntax))}
        seen = set()
        for row in truth:
            study = plans[row["study_instance_uid"]]
            image = next(i for i in study.images if i.sop_instance_uid == row["sop_instance_uid"])
            display = render_planned(study, image, TINY.seed)
            stored = dcmread(archive / row["path"]).pixel_array.astype(np.float64)
            corr = float(np.corrcoef(display.ravel(), stored.ravel())[0, 1])
            if row["photometric"] == "MONOCHROME1":
                assert corr < -0.99
            else:
                assert corr > 0.99
            seen.add(row["photometric"])
        assert seen == {"MONOCHROME1", "MONOCHROME2"}


class TestIdentifiers:
    def test_study_and_patient_attributes_are_consistent(self, archive: Path, truth: list) -> None:
        by_study: dict[str, set] = defaultdict(set)
        by_patient: dict[str, set] = defaultdict(set)
        sops = []
        for row in truth:
            ds = dcmread(archive / row["path"], stop_before_pixels=True)
            assert ds.StudyInstanceUID == row["study_instance_uid"]
            assert ds.PatientID == row["patient_id"]
            by_study[ds.StudyInstanceUID].add(
                (ds.PatientID, ds.AccessionNumber, ds.StudyDate, ds.StudyID)
            )
            by_patient[ds.PatientID].add((str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex))
            sops.append(ds.SOPInstanceUID)
        assert all(len(v) == 1 for v in by_study.values())
        assert all(len(v) == 1 for v in by_patient.values())
        assert len(sops) == len(set(sops))

    def test_a_study_has_one_to_four_images_in_one_or_two_series(self, truth: list) -> None:
        studies: dict[str, list] = defaultdict(list)
        for row in truth:
            studies[row["study_instance_uid"]].append(row)
        assert len(studies) == TINY.studies
        for rows in studies.values():
            assert 1 <= len(rows) <= 4
            assert 1 <= len({r["series_instance_uid"] for r in rows}) <= 2
            assert len({r["label"] for r in rows}) == 1
            if rows[0]["label"] == "abnormal":
                visible = sum(int(r["abnormality_visible"]) for r in rows)
                assert visible >= max(1, len(rows) - 1)


class TestGroundTruthAndJunk:
    def test_csvs_account_for_every_file(self, archive: Path, truth: list) -> None:
        junk = _read_csv(archive / "junk.csv")
        files = {p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()}
        listed = [r["path"] for r in truth] + [r["path"] for r in junk]
        assert sorted(listed) == sorted(files)
        assert tuple(truth[0]) == GROUND_TRUTH_COLUMNS

    def test_junk_reasons(self, archive: Path) -> None:
        junk = {r["path"]: r["reason"] for r in _read_csv(archive / "junk.csv")}
        assert set(junk.values()) <= {r.value for r in Reason}
        assert junk["DICOMDIR"] == Reason.DICOMDIR.value
        names = {Path(p).name: reason for p, reason in junk.items()}
        assert names[".DS_Store"] == names["._image1.png"] == names["README.txt"] == "not_dicom"
        truncated = [p for p, reason in junk.items() if reason == Reason.TRUNCATED.value]
        assert len(truncated) == 1
        for path, reason in junk.items():
            data = (archive / path).read_bytes()
            is_dicom = data[128:132] == b"DICM"
            assert is_dicom == (reason in {"dicomdir", "truncated"})
        with pytest.raises((ValueError, EOFError, OSError)):
            dcmread(archive / truncated[0]).pixel_array  # noqa: B018

    def test_dicomdir_references_the_cd_part(self, archive: Path, truth: list) -> None:
        fileset = FileSet(dcmread(archive / "DICOMDIR"))
        referenced = {Path(i.path).relative_to(archive).as_posix() for i in fileset}
        assert referenced == {r["path"] for r in truth if r["path"].startswith("PT")}
        assert referenced, "no file goes through the DICOMDIR"
        assert all("." not in Path(p).name for p in referenced)
        assert any(r["path"].endswith(".dcm") for r in truth)

    def test_no_junk_writes_only_images_and_csvs(self, tmp_path: Path) -> None:
        config = SynthConfig(studies=3, seed=1, min_size=40, max_size=48, junk=False)
        summary = generate_archive(tmp_path / "clean", config)
        junk = _read_csv(tmp_path / "clean" / "junk.csv")
        assert {r["path"] for r in junk} == {"ground_truth.csv", "junk.csv"}
        assert not (tmp_path / "clean" / "DICOMDIR").exists()
        assert summary.images == len(_read_csv(tmp_path / "clean" / "ground_truth.csv"))

    def test_syntax_subset_is_respected(self, tmp_path: Path) -> None:
        config = SynthConfig(studies=2, seed=1, min_size=40, max_size=48, syntaxes=(Syntax.RLE,))
        generate_archive(tmp_path / "rle", config)
        rows = _read_csv(tmp_path / "rle" / "ground_truth.csv")
        assert {r["transfer_syntax"] for r in rows} == {str(Syntax.RLE.uid)}


class TestPlan:
    def test_first_seven_studies_cover_every_bone(self) -> None:
        bones = bone_sequence(20, np.random.default_rng(0))
        assert set(bones[:7]) == set(Bone) and set(bones[7:14]) == set(Bone)

    def test_abnormal_fraction_overall_and_per_bone(self) -> None:
        for n in (7, 10, 23, 100):
            rng = np.random.default_rng(n)
            flags = abnormal_flags(bone_sequence(n, rng), 0.4, rng)
            assert abs(sum(flags) - 0.4 * n) <= 2
        bones = bone_sequence(700, np.random.default_rng(0))
        flags = abnormal_flags(bones, 0.4, np.random.default_rng(1))
        for bone in Bone:
            mine = [f for b, f in zip(bones, flags, strict=True) if b is bone]
            assert abs(np.mean(mine) - 0.4) < 0.011

    def test_body_part_is_sometimes_missing_or_wrong(self) -> None:
        studies = plan_archive(
            SynthConfig(studies=600, seed=3, min_size=40, max_size=48), (Syntax.RLE,)
        )
        missing = np.mean([s.body_part is None for s in studies])
        wrong = np.mean([s.body_part not in (None, s.bone.value.upper()) for s in studies])
        assert 0.06 < missing < 0.14
        assert 0.02 < wrong < 0.08
