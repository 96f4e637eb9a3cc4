"""A labelled DICOM archive: labels CSV + files decoded by the scanner's ingest."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from batchfrac.datasets.archive import read_labeled_archive, read_labels_csv
from batchfrac.datasets.samples import (
    DatasetError,
    SourceKind,
)
from batchfrac.enums import Bone, Label
from batchfrac.ingest.preprocess import PreprocessSpec
from tests.factories import gradient_image, make_image_dataset, write_dataset


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
    from batchfrac.datasets.loader import ingest_fetcher

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
