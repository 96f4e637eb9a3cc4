"""The MURA-v1.1 reader."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from batchfrac.datasets.mura import find_mura_root, read_mura
from batchfrac.datasets.samples import (
    DatasetError,
    SourceKind,
    content_sha256,
)
from batchfrac.enums import Bone, Head, Label
from tests.mura_synth import ROOT_NAME, ground_truth


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
