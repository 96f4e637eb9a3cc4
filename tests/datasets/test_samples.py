"""Training data: the MURA-v1.1 reader, the DICOM archive + labels CSV reader, and the
split by patient."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from batchfrac.datasets.archive import read_labeled_archive, read_labels_csv
from batchfrac.datasets.samples import (
    DatasetError,
    Sample,
    SourceKind,
    class_counts,
    content_sha256,
    find_mura_root,
    head_classes,
    head_targets,
    read_mura,
    split_by_patient,
)
from batchfrac.enums import Bone, Head, Label
from batchfrac.ingest.preprocess import PreprocessSpec
from tests.factories import gradient_image, make_image_dataset, write_dataset
from tests.mura_synth import ROOT_NAME, ground_truth, synth_mura


@pytest.fixture(scope="module")
def mura_parent(tmp_path_factory) -> Path:
    return synth_mura(tmp_path_factory.mktemp("mura"))


@pytest.fixture()
def mura_copy(mura_parent, tmp_path) -> Path:
    """A private copy of the tree's root, for tests that edit it."""
    return Path(shutil.copytree(mura_parent / ROOT_NAME, tmp_path / ROOT_NAME))


class TestFindMuraRoot:
    def test_root_itself(self, mura_parent):
        assert find_mura_root(mura_parent / ROOT_NAME) == mura_parent / ROOT_NAME

    def test_parent_of_root(self, mura_parent):
        assert find_mura_root(mura_parent) == mura_parent / ROOT_NAME

    def test_not_a_mura_tree(self, tmp_path):
        (tmp_path / "something").mkdir()
        with pytest.raises(DatasetError, match="not a MURA-v1.1 tree"):
            find_mura_root(tmp_path)


class TestReadMura:
    @pytest.mark.parametrize("split", ["train", "valid"])
    def test_matches_ground_truth(self, mura_parent, split):
        truth = ground_truth(mura_parent, split)
        dataset = read_mura(mura_parent, split)
        assert dataset.kind is SourceKind.MURA and dataset.split == split
        assert {s.rel for s in dataset.samples} == set(truth)
        for s in dataset.samples:
            row = truth[s.rel]
            assert s.bone.value == row["bone"]
            assert s.patient == row["patient"]
            assert s.study + "/" == row["study"].split("/", 1)[1]
            assert s.label is (Label.ABNORMAL if row["label"] == "1" else Label.NORMAL)
            assert Path(s.path) == mura_parent / ROOT_NAME / s.rel
            assert Path(s.path).is_file()

    def test_layout_is_parsed(self, mura_parent):
        for s in read_mura(mura_parent, "train").samples:
            split, part, patient, study_folder, image = s.rel.split("/")
            assert split == "train" and image.startswith("image") and image.endswith(".png")
            assert s.bone is Bone.from_mura_part(part)
            assert s.patient == patient and s.study == f"train/{part}/{patient}/{study_folder}"

    def test_splits_are_separate(self, mura_parent):
        train = read_mura(mura_parent, "train")
        valid = read_mura(mura_parent, "valid")
        assert all(s.rel.startswith("valid/") for s in valid.samples)
        assert not {s.patient for s in train.samples} & {s.patient for s in valid.samples}

    def test_resource_forks_are_skipped(self, mura_parent):
        forks = list((mura_parent / ROOT_NAME).rglob("._*"))
        assert forks, "synth writes a ._ companion like the published zip"
        rels = {s.rel for s in read_mura(mura_parent, "train").samples}
        assert not any(Path(rel).name.startswith("._") for rel in rels)

    def test_resource_fork_listed_in_csv_is_skipped(self, mura_copy):
        listing = mura_copy / "train_image_paths.csv"
        first = listing.read_text().splitlines()[0]
        fork = first.rsplit("/", 1)[0] + "/._image1.png"
        listing.write_text(listing.read_text() + fork + "\n")
        names = [Path(s.rel).name for s in read_mura(mura_copy, "train").samples]
        assert "._image1.png" not in names

    def test_labels_agree_with_folder_names(self, mura_parent):
        samples = read_mura(mura_parent, "train").samples
        for s in samples:
            folder = s.study.rsplit("/", 1)[-1]
            expected = Label.ABNORMAL if folder.endswith("_positive") else Label.NORMAL
            assert s.label is expected
        assert {s.label for s in samples} == {Label.ABNORMAL, Label.NORMAL}

    def test_labels_come_from_the_csv(self, mura_parent):
        table = (mura_parent / ROOT_NAME / "train_labeled_studies.csv").read_text().splitlines()
        csv_labels = {
            line.split(",")[0].split("/", 1)[1].rstrip("/"): int(line.split(",")[1])
            for line in table
        }
        for s in read_mura(mura_parent, "train").samples:
            assert csv_labels[s.study] == (1 if s.label is Label.ABNORMAL else 0)

    def test_csv_contradicting_folder_is_an_error(self, mura_copy):
        table = mura_copy / "train_labeled_studies.csv"
        lines = table.read_text().splitlines()
        study, value = lines[0].rsplit(",", 1)
        lines[0] = f"{study},{1 - int(value)}"
        table.write_text("\n".join(lines) + "\n")
        with pytest.raises(DatasetError, match="folder name says"):
            read_mura(mura_copy, "train")

    def test_without_csvs_the_folders_are_walked(self, mura_parent, mura_copy):
        for name in ("train_image_paths.csv", "train_labeled_studies.csv"):
            (mura_copy / name).unlink()
        walked = read_mura(mura_copy, "train")
        listed = read_mura(mura_parent, "train")
        assert sorted((s.rel, s.label) for s in walked.samples) == sorted(
            (s.rel, s.label) for s in listed.samples
        )

    def test_missing_listed_image_is_an_error(self, mura_copy):
        first = (mura_copy / "train_image_paths.csv").read_text().splitlines()[0]
        (mura_copy / first.split("/", 1)[1]).unlink()
        with pytest.raises(DatasetError, match="missing"):
            read_mura(mura_copy, "train")

    def test_for_head(self, mura_parent):
        dataset = read_mura(mura_parent, "train")
        hand = dataset.for_head(Head.HAND)
        assert hand.samples and {s.bone for s in hand.samples} == {Bone.HAND}
        assert len(dataset.for_head(Head.ROUTER).samples) == len(dataset.samples)

    def test_content_hash(self, mura_parent):
        dataset = read_mura(mura_parent, "train")
        samples = list(dataset.samples)
        assert content_sha256(reversed(samples)) == dataset.content_sha256
        flipped = Label.NORMAL if samples[0].label is Label.ABNORMAL else Label.ABNORMAL
        changed = [replace(samples[0], label=flipped), *samples[1:]]
        assert content_sha256(changed) != dataset.content_sha256


def _samples(n_patients: int, seed: int = 0) -> list[Sample]:
    """Patients with 1-5 images each, a third of them abnormal."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_patients):
        label = Label.ABNORMAL if p % 3 == 0 else Label.NORMAL
        for i in range(int(rng.integers(1, 6))):
            rel = f"train/XR_HAND/patient{p:05d}/study1/image{i}.png"
            out.append(Sample(rel, rel, Bone.HAND, label, f"patient{p:05d}", rel[:-11]))
    return out


class TestSplitByPatient:
    def test_no_patient_on_both_sides(self):
        train, val = split_by_patient(_samples(100), Head.HAND, 0.2, seed=1)
        assert not {s.patient for s in train} & {s.patient for s in val}
        assert len(train) + len(val) == len(_samples(100))

    def test_about_the_requested_fraction(self):
        samples = _samples(200)
        train, val = split_by_patient(samples, Head.HAND, 0.2, seed=3)
        patients = len({s.patient for s in samples})
        assert len({s.patient for s in val}) / patients == pytest.approx(0.2, abs=0.02)
        assert len(val) / len(samples) == pytest.approx(0.2, abs=0.06)

    def test_both_classes_are_held_out(self):
        _, val = split_by_patient(_samples(30), Head.HAND, 0.2, seed=0)
        assert {s.label for s in val} == {Label.NORMAL, Label.ABNORMAL}

    def test_seeded(self):
        samples = _samples(60)
        first = split_by_patient(samples, Head.HAND, 0.2, seed=7)
        assert split_by_patient(samples, Head.HAND, 0.2, seed=7) == first
        assert split_by_patient(samples, Head.HAND, 0.2, seed=8) != first

    def test_router_split_of_a_mura_tree(self, mura_parent):
        samples = read_mura(mura_parent, "train").samples
        train, val = split_by_patient(samples, Head.ROUTER, 0.2, seed=0)
        assert not {s.patient for s in train} & {s.patient for s in val}
        assert {s.bone for s in train} == set(Bone)
        patients = len({s.patient for s in samples})
        # One patient at least per bone stratum: about a fifth, a little more on tiny data.
        assert 0.15 <= len({s.patient for s in val}) / patients <= 0.35

    def test_one_patient_cannot_be_split(self):
        with pytest.raises(DatasetError, match="cannot hold out"):
            split_by_patient(_samples(1), Head.HAND, 0.2)

    @pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
    def test_fraction_out_of_range(self, fraction):
        with pytest.raises(DatasetError, match="between 0 and 1"):
            split_by_patient(_samples(10), Head.HAND, fraction)


class TestTargets:
    def test_router_targets_are_bones_in_order(self, mura_parent):
        samples = read_mura(mura_parent, "train").samples
        targets = head_targets(samples, Head.ROUTER)
        assert [head_classes(Head.ROUTER)[t] for t in targets] == [s.bone.value for s in samples]

    def test_bone_targets_are_labels(self):
        samples = _samples(9)
        targets = head_targets(samples, Head.HAND)
        assert head_classes(Head.HAND) == ("normal", "abnormal")
        assert list(targets) == [int(s.label is Label.ABNORMAL) for s in samples]
        counts = class_counts(samples, Head.HAND)
        assert counts == {"normal": int((targets == 0).sum()), "abnormal": int(targets.sum())}


# --------------------------------------------------------------------------- DICOM


def _write_study(archive: Path, name: str, patient: str, n_images: int) -> str:
    study_uid = generate_uid()
    for i in range(n_images):
        ds = make_image_dataset(
            gradient_image(40, 32), StudyInstanceUID=study_uid, PatientID=patient
        )
        write_dataset(ds, archive / name / f"img{i}.dcm")
    return study_uid


@pytest.fixture()
def archive(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "archive"
    uids = {
        "s1": _write_study(root, "s1", "P1", 2),
        "s2": _write_study(root, "s2", "P2", 1),
    }
    (root / "notes.txt").write_text("not a DICOM file")
    return root, uids


def _ingest_fetch(size: int = 32):
    from batchfrac.train.batches import ingest_fetcher

    return ingest_fetcher(PreprocessSpec(image_size=size))


class TestLabelledArchive:
    def test_by_path(self, archive, tmp_path):
        root, _ = archive
        labels = tmp_path / "labels.csv"
        labels.write_text("path,bone,label\ns1/img0.dcm,hand,abnormal\ns2/img0.dcm,WRIST,0\n")
        kept = {}
        dataset = read_labeled_archive(root, labels, _ingest_fetch(), keep=kept.__setitem__)
        assert dataset.kind is SourceKind.DICOM
        by_rel = {s.rel: s for s in dataset.samples}
        assert set(by_rel) == {"s1/img0.dcm", "s2/img0.dcm"}
        assert by_rel["s1/img0.dcm"].bone is Bone.HAND
        assert by_rel["s1/img0.dcm"].label is Label.ABNORMAL
        assert by_rel["s2/img0.dcm"].bone is Bone.WRIST
        assert by_rel["s2/img0.dcm"].label is Label.NORMAL
        assert by_rel["s1/img0.dcm"].patient == "P1"
        assert all(pixels.shape == (32, 32, 3) for pixels in kept.values())
        assert len(kept) == 2

    def test_by_study_uid(self, archive, tmp_path):
        root, uids = archive
        labels = tmp_path / "labels.csv"
        labels.write_text(f"study_instance_uid,bone,label\n{uids['s1']},elbow,normal\n")
        dataset = read_labeled_archive(root, labels, _ingest_fetch())
        assert sorted(s.rel for s in dataset.samples) == ["s1/img0.dcm", "s1/img1.dcm"]
        assert {s.study for s in dataset.samples} == {uids["s1"]}
        assert {s.bone for s in dataset.samples} == {Bone.ELBOW}

    def test_undecodable_labelled_file_is_skipped(self, archive, tmp_path):
        root, _ = archive
        labels = tmp_path / "labels.csv"
        labels.write_text("path,bone,label\ns1/img0.dcm,hand,1\nnotes.txt,hand,0\n")
        dataset = read_labeled_archive(root, labels, _ingest_fetch())
        assert [s.rel for s in dataset.samples] == ["s1/img0.dcm"]
        assert [rel for rel, _ in dataset.skipped] == ["notes.txt"]
        assert "not_dicom" in dataset.skipped[0][1]

    def test_missing_listed_file(self, archive, tmp_path):
        root, _ = archive
        labels = tmp_path / "labels.csv"
        labels.write_text("path,bone,label\nnope.dcm,hand,1\n")
        with pytest.raises(DatasetError, match="file not found"):
            read_labeled_archive(root, labels, _ingest_fetch())

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("file,bone,label\na,hand,1\n", "needs a header"),
            ("path,bone,label\na,knee,1\n", "unknown bone"),
            ("path,bone,label\na,hand,maybe\n", "unknown label"),
            ("path,bone,label\n", "no rows"),
        ],
    )
    def test_bad_labels_csv(self, tmp_path, text, message):
        labels = tmp_path / "labels.csv"
        labels.write_text(text)
        with pytest.raises(DatasetError, match=message):
            read_labels_csv(labels)
