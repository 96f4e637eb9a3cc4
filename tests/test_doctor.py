"""Tests for `batchfrac doctor`: the survey counters, its JSON document and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    BasicTextSRStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)
from typer.testing import CliRunner

import batchfrac.doctor as doctor_module
from batchfrac.cli import app
from batchfrac.doctor import survey
from tests.factories import gradient_image, make_image_dataset, write_dataset

FAKE_SYNTAX = "1.2.826.0.1.3680043.9999.1"


def _sr_dataset() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.Modality = "SR"
    return ds


@pytest.fixture
def clean_archive(tmp_path: Path) -> Path:
    """Three decodable radiographs in three syntaxes, plus files the scan skips."""
    root = tmp_path / "archive"
    image = gradient_image()  # 64 x 48: big enough for the JPEG 2000 encoder
    write_dataset(make_image_dataset(image, modality="DX"), root / "p1" / "dx_native.dcm")
    write_dataset(
        make_image_dataset(image, modality="CR", photometric="MONOCHROME1"),
        root / "p1" / "cr_rle",
        RLELossless,
    )
    write_dataset(
        make_image_dataset(image, modality="DX"), root / "p2" / "dx.j2k", JPEG2000Lossless
    )
    write_dataset(make_image_dataset(image, modality="MR"), root / "p2" / "mr.dcm")
    write_dataset(_sr_dataset(), root / "p2" / "report.dcm")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (root / "notes.txt").write_text("not an image\n")
    return root


@pytest.fixture
def broken_archive(clean_archive: Path) -> Path:
    """The clean archive plus one truncated radiograph."""
    data = (clean_archive / "p1" / "dx_native.dcm").read_bytes()
    (clean_archive / "p3").mkdir()
    (clean_archive / "p3" / "cut.dcm").write_bytes(data[: len(data) // 2])
    return clean_archive


def _invoke(*args: str) -> tuple[int, str]:
    """``doctor`` without its forecast (tested in ``tests/scan/test_forecast.py``)."""
    result = CliRunner().invoke(app, ["doctor", *args, "--no-forecast"])
    return result.exit_code, result.stdout


class TestSurvey:
    def test_counts_of_a_clean_archive(self, clean_archive: Path) -> None:
        seen: list[Path] = []
        report = survey(clean_archive, ("CR", "DX"), on_file=seen.append)
        assert report.files == len(seen) == 7
        assert dict(report.by_status) == {"ok": 3, "skipped": 4}
        assert dict(report.by_reason) == {"not_dicom": 2, "non_image": 1, "unsupported_modality": 1}
        assert dict(report.by_modality) == {"CR": 1, "DX": 2, "MR": 1, "SR": 1}
        assert dict(report.by_photometric) == {"MONOCHROME1": 1, "MONOCHROME2": 2}
        syntaxes = {s.uid: (s.files, s.candidates, s.decodable) for s in report.syntaxes}
        assert syntaxes == {
            ExplicitVRLittleEndian: (3, 1, True),
            JPEG2000Lossless: (1, 1, True),
            RLELossless: (1, 1, True),
        }
        assert report.would_fail == 0

    def test_modalities_widen_the_candidates(self, clean_archive: Path) -> None:
        report = survey(clean_archive, ("cr", "dx", "mr"))
        assert report.by_status["ok"] == 4
        assert "unsupported_modality" not in report.by_reason

    def test_header_only_decode_checks_are_predicted(self, clean_archive: Path) -> None:
        write_dataset(make_image_dataset(gradient_image(8, 8), modality="DX"), clean_archive / "t")
        frames = make_image_dataset(np.zeros((300, 32, 32), np.uint16), modality="DX")
        write_dataset(frames, clean_archive / "long-cine.dcm")
        report = survey(clean_archive, ("CR", "DX"))
        assert report.by_reason["too_small"] == 1 and report.by_reason["too_large"] == 1
        assert report.by_status["ok"] == 3

    @pytest.mark.parametrize("exc", [RecursionError("deep"), MemoryError(), KeyboardInterrupt])
    def test_a_header_that_blows_up_is_a_read_error_like_in_the_scan(
        self, clean_archive: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
    ) -> None:
        real = doctor_module.read_header

        def read_header(path: Path) -> object:
            if path.name == "dx_native.dcm":
                raise exc
            return real(path)

        monkeypatch.setattr(doctor_module, "read_header", read_header)
        if exc is KeyboardInterrupt:
            with pytest.raises(KeyboardInterrupt):
                survey(clean_archive, ("CR", "DX"))
            return
        report = survey(clean_archive, ("CR", "DX"))
        assert report.files == 7 and report.by_reason["read_error"] == 1
        assert dict(report.by_status) == {"ok": 2, "skipped": 4, "error": 1}


class TestDoctorCommand:
    def test_json_counts_and_exit_zero(self, clean_archive: Path) -> None:
        code, out = _invoke(str(clean_archive), "--json")
        assert code == 0
        doc = json.loads(out)
        assert doc["files"] == 7
        assert doc["by_status"] == {"ok": 3, "skipped": 4, "error": 0}
        assert doc["by_reason"] == {"non_image": 1, "not_dicom": 2, "unsupported_modality": 1}
        assert doc["by_modality"] == {"CR": 1, "DX": 2, "MR": 1, "SR": 1}
        assert doc["by_photometric_interpretation"] == {"MONOCHROME1": 1, "MONOCHROME2": 2}
        assert [(s["uid"], s["files"], s["candidates"]) for s in doc["transfer_syntaxes"]] == [
            (ExplicitVRLittleEndian, 3, 1),
            (JPEG2000Lossless, 1, 1),
            (RLELossless, 1, 1),
        ]
        assert doc["transfer_syntaxes"][0]["name"] == "Explicit VR Little Endian"
        assert doc["undecodable_transfer_syntaxes"] == []
        assert doc["would_fail"] == 0
        assert doc["modalities"] == ["CR", "DX"]

    def test_truncated_file_exits_3(self, broken_archive: Path) -> None:
        code, out = _invoke(str(broken_archive), "--json")
        assert code == 3
        doc = json.loads(out)
        assert doc["files"] == 8
        assert doc["by_status"] == {"ok": 3, "skipped": 4, "error": 1}
        assert doc["by_reason"]["truncated"] == 1
        assert doc["would_fail"] == 1

    def test_undecodable_syntax_exits_3(
        self, clean_archive: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def without_jpeg2000(uid: str | None) -> tuple[bool, str]:
            if uid == JPEG2000Lossless:
                return False, "pylibjpeg: requires pylibjpeg-openjpeg"
            return True, "native"

        monkeypatch.setattr(doctor_module, "decodable", without_jpeg2000)
        code, out = _invoke(str(clean_archive), "--json")
        assert code == 3
        doc = json.loads(out)
        assert doc["by_status"] == {"ok": 2, "skipped": 4, "error": 1}
        assert doc["by_reason"]["unsupported_transfer_syntax"] == 1
        assert doc["undecodable_transfer_syntaxes"] == [JPEG2000Lossless]

    def test_unknown_syntax_is_named_in_tables(self, clean_archive: Path) -> None:
        ds = make_image_dataset(gradient_image(), modality="DX")
        ds.file_meta.TransferSyntaxUID = FAKE_SYNTAX
        ds.save_as(
            clean_archive / "odd.dcm",
            enforce_file_format=True,
            implicit_vr=False,
            little_endian=True,
        )
        code, out = _invoke(str(clean_archive))
        assert code == 3
        assert "cannot decode" in out and FAKE_SYNTAX in out
        assert "1 file(s) would fail" in out

    def test_tables_of_a_clean_archive(self, clean_archive: Path) -> None:
        code, out = _invoke(str(clean_archive), "--modalities", "cr, dx")
        assert code == 0
        for text in ("MONOCHROME1", "RLE Lossless", "unsupported_modality", "No file would fail"):
            assert text in out

    def test_missing_archive_is_a_usage_error(self, tmp_path: Path) -> None:
        code, _ = _invoke(str(tmp_path / "nope"))
        assert code == 2

    def test_empty_modality_list_is_a_usage_error(self, clean_archive: Path) -> None:
        code, _ = _invoke(str(clean_archive), "--modalities", " , ")
        assert code == 2
