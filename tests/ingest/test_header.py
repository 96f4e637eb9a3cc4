"""Tests for batchfrac.ingest.header: header-only reads, rejection reasons, decodability."""

from __future__ import annotations

import functools
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import (
    ComprehensiveSRStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    KeyObjectSelectionDocumentStorage,
    RLELossless,
    RTImageStorage,
)

from batchfrac.defaults import DEFAULT_MODALITIES
from batchfrac.enums import Reason
from batchfrac.errors import FileRejected
from batchfrac.ingest import deflated
from batchfrac.ingest import header as header_module
from batchfrac.ingest.header import check_image, read_header
from batchfrac.records import DicomHeader
from tests import hostile_bombs
from tests.factories import (
    gradient_image,
    make_dataset,
    make_header,
    make_image_dataset,
    write_dataset,
)
from tests.hostile import nested_sequence_bomb
from tests.hostile_bytes import set_raw

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(200)
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(100)


def _bundled(name: str) -> Path:
    """A pydicom test file shipped inside the wheel (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with this pydicom"
    return Path(path)


def _rejection(path: Path) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        read_header(path)
    return info.value


def _non_image_dataset(sop_class_uid: str, modality: str) -> Dataset:
    ds = make_dataset(sop_class_uid, modality)
    ds.ContentDate = "20240101"
    return ds


class TestReadHeader:
    def test_dx_image_values_are_plain_python(self, tmp_path: Path) -> None:
        ds = make_image_dataset(
            gradient_image(64, 48),
            modality="DX",
            BodyPartExamined="HAND",
            ViewPosition="PA",
            ImageLaterality="L",
        )
        header = read_header(write_dataset(ds, tmp_path / "dx.dcm"))
        assert header == DicomHeader(
            sop_class_uid=ds.SOPClassUID,
            sop_instance_uid=ds.SOPInstanceUID,
            study_instance_uid=ds.StudyInstanceUID,
            series_instance_uid=ds.SeriesInstanceUID,
            patient_id="TEST0001",
            accession_number="ACC0001",
            modality="DX",
            body_part_examined="HAND",
            view_position="PA",
            laterality="L",
            photometric_interpretation="MONOCHROME2",
            rows=64,
            columns=48,
            number_of_frames=1,
            bits_stored=12,
            samples_per_pixel=1,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            has_preamble=True,
        )
        assert type(header.sop_instance_uid) is str and type(header.transfer_syntax_uid) is str
        assert type(header.rows) is int and type(header.bits_stored) is int

    def test_cr_monochrome1(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(), modality="CR", photometric="MONOCHROME1")
        header = read_header(write_dataset(ds, tmp_path / "cr.dcm"))
        assert (header.modality, header.photometric_interpretation) == ("CR", "MONOCHROME1")
        check_image(header)

    def test_multi_frame_and_compressed_syntax(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(32, 32)] * 3)
        ds = make_image_dataset(frames, modality="DX")
        header = read_header(write_dataset(ds, tmp_path / "mf.dcm", RLELossless))
        assert header.number_of_frames == 3
        assert header.transfer_syntax_uid == RLELossless

    def test_missing_optional_tags_are_none(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(), modality="DX")
        del ds.PatientID, ds.AccessionNumber, ds.BitsStored
        header = read_header(write_dataset(ds, tmp_path / "sparse.dcm"))
        assert header.patient_id is None and header.accession_number is None
        assert header.body_part_examined is None and header.view_position is None
        assert header.laterality is None and header.bits_stored is None
        assert header.number_of_frames == 1

    @pytest.mark.parametrize(
        ("implicit_vr", "syntax"),
        [(True, ImplicitVRLittleEndian), (False, ExplicitVRLittleEndian)],
        ids=["implicit", "explicit"],
    )
    def test_legacy_file_without_preamble(
        self, tmp_path: Path, implicit_vr: bool, syntax: str
    ) -> None:
        ds = make_image_dataset(gradient_image(), modality="DX")
        del ds.file_meta
        path = tmp_path / "legacy"
        ds.save_as(path, enforce_file_format=False, implicit_vr=implicit_vr, little_endian=True)
        assert path.read_bytes()[:2] == b"\x08\x00"  # starts straight with group 0008
        header = read_header(path)
        assert header.has_preamble is False
        assert header.transfer_syntax_uid == syntax
        assert (header.modality, header.rows, header.columns) == ("DX", 64, 48)
        check_image(header)

    def test_big_endian_legacy_file_without_meta(self) -> None:
        header = read_header(_bundled("ExplVR_BigEndNoMeta.dcm"))
        assert header.has_preamble is False
        assert header.transfer_syntax_uid == ExplicitVRBigEndian
        assert header.modality == "RTPLAN"

    @pytest.mark.parametrize(
        "data",
        [b"patient,finding\n1,fracture\n", DS_STORE, APPLE_DOUBLE, PNG_SIGNATURE, b""],
        ids=["text", "ds_store", "apple_double", "png", "empty"],
    )
    def test_non_dicom_bytes_are_not_dicom(self, tmp_path: Path, data: bytes) -> None:
        path = tmp_path / "junk"
        path.write_bytes(data)
        assert _rejection(path).reason is Reason.NOT_DICOM

    def test_garbage_before_a_data_set_is_not_dicom(self) -> None:
        # pydicom's no_meta.dcm starts with a stray byte before (0008,0005).
        assert _rejection(_bundled("no_meta.dcm")).reason is Reason.NOT_DICOM

    @pytest.mark.parametrize("keep", [140, 200, 600, -10], ids=str)
    def test_truncated_file(self, tmp_path: Path, keep: int) -> None:
        source = write_dataset(make_image_dataset(gradient_image(), modality="DX"), tmp_path / "a")
        data = source.read_bytes()
        cut = tmp_path / "cut.dcm"
        cut.write_bytes(data[:keep])
        rejection = _rejection(cut)
        assert rejection.reason is Reason.TRUNCATED
        assert rejection.status.value == "error"

    @pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
    def test_pydicom_truncated_files(self, name: str) -> None:
        assert _rejection(_bundled(name)).reason is Reason.TRUNCATED

    def test_dicomdir_built_with_fileset(self, tmp_path: Path) -> None:
        ds = make_image_dataset(
            gradient_image(),
            StudyDate="20240101",
            StudyTime="120000",
            StudyID="1",
            PatientName="Test^Patient",
            SeriesNumber=1,
            InstanceNumber=1,
        )
        fileset = FileSet()
        fileset.add(ds)
        fileset.write(tmp_path / "media")
        assert _rejection(tmp_path / "media" / "DICOMDIR").reason is Reason.DICOMDIR

    def test_pydicom_dicomdir(self) -> None:
        assert _rejection(_bundled("DICOMDIR")).reason is Reason.DICOMDIR

    def test_unreadable_path_is_read_error(self, tmp_path: Path) -> None:
        assert _rejection(tmp_path).reason is Reason.READ_ERROR  # a directory
        assert _rejection(tmp_path / "vanished.dcm").reason is Reason.READ_ERROR

    @pytest.mark.parametrize(
        ("name", "modality", "syntax", "shape"),
        [
            ("CT_small.dcm", "CT", ExplicitVRLittleEndian, (128, 128)),
            ("MR_small_implicit.dcm", "MR", ImplicitVRLittleEndian, (64, 64)),
            ("JPEG2000.dcm", "NM", "1.2.840.10008.1.2.4.91", (1024, 256)),
            ("rtplan.dcm", "RTPLAN", ImplicitVRLittleEndian, (0, 0)),
        ],
    )
    def test_pydicom_bundled_files(
        self, name: str, modality: str, syntax: str, shape: tuple[int, int]
    ) -> None:
        header = read_header(_bundled(name))
        assert header.modality == modality
        assert header.transfer_syntax_uid == syntax
        assert (header.rows, header.columns) == shape
        assert header.has_preamble is True


class TestCheckImage:
    def test_default_modalities_are_cr_and_dx(self) -> None:
        assert DEFAULT_MODALITIES == ("CR", "DX")

    @pytest.mark.parametrize(
        "sop_class", [ComprehensiveSRStorage, KeyObjectSelectionDocumentStorage], ids=["SR", "KOS"]
    )
    def test_sr_and_kos_are_non_image(self, tmp_path: Path, sop_class: str) -> None:
        ds = _non_image_dataset(sop_class, "SR" if sop_class == ComprehensiveSRStorage else "KO")
        header = read_header(write_dataset(ds, tmp_path / "doc.dcm"))
        assert (header.rows, header.columns) == (0, 0)
        with pytest.raises(FileRejected) as info:
            check_image(header)
        assert info.value.reason is Reason.NON_IMAGE

    @pytest.mark.parametrize(
        "name", ["test-SR.dcm", "rtplan.dcm", "rtdose.dcm", "liver_1frame.dcm", "waveform_ecg.dcm"]
    )
    def test_pydicom_non_image_objects(self, name: str) -> None:
        # rtdose and the SEG liver_1frame have Rows/Columns: the SOP class decides.
        with pytest.raises(FileRejected) as info:
            check_image(read_header(_bundled(name)), modalities=("RTDOSE", "SEG", "SR", "ECG"))
        assert info.value.reason is Reason.NON_IMAGE

    def test_image_sop_class_without_rows_is_non_image(self) -> None:
        with pytest.raises(FileRejected) as info:
            check_image(make_header(rows=0, columns=0))
        assert info.value.reason is Reason.NON_IMAGE

    def test_mr_is_unsupported_modality(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(), modality="MR")
        with pytest.raises(FileRejected) as info:
            check_image(read_header(write_dataset(ds, tmp_path / "mr.dcm")))
        assert info.value.reason is Reason.UNSUPPORTED_MODALITY
        assert info.value.status.value == "skipped"
        assert "MR" in info.value.detail

    def test_rt_image_is_an_image_of_another_modality(self) -> None:
        header = make_header(sop_class_uid=RTImageStorage, modality="RTIMAGE")
        with pytest.raises(FileRejected) as info:
            check_image(header)
        assert info.value.reason is Reason.UNSUPPORTED_MODALITY

    def test_modality_comparison_ignores_case(self) -> None:
        check_image(make_header(modality="dx"))
        check_image(make_header(modality="CR"), modalities=("cr", "dx"))

    def test_allow_list_is_honoured(self) -> None:
        check_image(make_header(modality="MR"), modalities=("MR",))
        with pytest.raises(FileRejected):
            check_image(make_header(modality="DX"), modalities=("MR",))

    def test_missing_modality_is_unsupported(self) -> None:
        with pytest.raises(FileRejected) as info:
            check_image(make_header(modality=None))
        assert info.value.reason is Reason.UNSUPPORTED_MODALITY


def _with_raw(tmp_path: Path, values: dict[int, tuple[str, bytes]]) -> Path:
    ds = make_image_dataset(gradient_image(64, 48), BodyPartExamined="HAND")
    for tag, (vr, value) in values.items():
        set_raw(ds, tag, vr, value)
    return write_dataset(ds, tmp_path / "raw.dcm")


class TestReadHeaderHostile:
    def test_deeply_nested_sequences_are_a_read_error(self, tmp_path: Path) -> None:
        rejection = _rejection(nested_sequence_bomb(tmp_path).path)
        assert rejection.reason is Reason.READ_ERROR
        assert "nested too deeply" in rejection.detail and "RecursionError" in rejection.detail

    def test_an_integer_of_the_wrong_length_is_a_read_error_naming_it(self, tmp_path: Path) -> None:
        path = write_dataset(make_image_dataset(gradient_image(64, 48)), tmp_path / "a.dcm")
        rows = b"\x28\x00\x10\x00US\x02\x00\x40\x00"  # (0028,0010) Rows US 64
        data = path.read_bytes()
        assert data.count(rows) == 1
        path.write_bytes(data.replace(rows, b"\x28\x00\x10\x00US\x01\x00\x40"))
        rejection = _rejection(path)
        assert rejection.reason is Reason.READ_ERROR
        assert "(0028,0010) Rows: BytesLengthException" in rejection.detail

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            ({0x00280002: ("US", b"\x01\x00\x03\x00")}, "SamplesPerPixel has 2 values (1\\3)"),
            ({0x00280008: ("IS", b"ab")}, "(0028,0008) NumberOfFrames"),
        ],
    )
    def test_unusable_image_size_attributes_are_read_errors_naming_them(
        self, tmp_path: Path, values: dict[int, tuple[str, bytes]], expected: str
    ) -> None:
        rejection = _rejection(_with_raw(tmp_path, values))
        assert rejection.reason is Reason.READ_ERROR and expected in rejection.detail

    def test_control_characters_never_reach_the_record(self, tmp_path: Path) -> None:
        path = _with_raw(
            tmp_path,
            {
                0x00100020: ("LO", b"TEST\x000001 "),
                0x00080050: ("SH", b"ACC\x1b\x7f1\x00"),
            },
        )
        header = read_header(path)
        assert header.patient_id == "TEST\ufffd0001"
        assert header.accession_number == "ACC\ufffd\ufffd1"

    def test_a_large_private_element_is_never_read(self, tmp_path: Path) -> None:
        case = hostile_bombs.huge_private_element(tmp_path, size=256 << 20)
        tracemalloc.start()
        try:
            header = read_header(case.path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert header.rows == 64 and peak < 8 << 20

    def test_a_deflated_data_set_is_inflated_as_a_stream(self, tmp_path: Path) -> None:
        case = hostile_bombs.deflate_bomb(tmp_path, size=128 << 20)
        tracemalloc.start()
        try:
            header = read_header(case.path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert header.rows == 64 and header.transfer_syntax_uid == DeflatedExplicitVRLittleEndian
        assert peak < 8 << 20

    def test_a_deflated_data_set_past_the_inflate_limit_is_too_large(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        case = hostile_bombs.deflate_bomb(tmp_path, size=8 << 20)
        monkeypatch.setattr(
            header_module,
            "read_deflated_header",
            functools.partial(deflated.read_deflated_header, limit=4 << 20),
        )
        rejection = _rejection(case.path)
        assert rejection.reason is Reason.TOO_LARGE and "4,194,304" in rejection.detail
