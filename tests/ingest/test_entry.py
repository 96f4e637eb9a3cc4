"""Tests for batchfrac.ingest.entry: every file becomes at least one row, never an exception."""

from __future__ import annotations

import pickle
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

from batchfrac.enums import ImageFlag, Reason, Status
from batchfrac.ingest import capture
from batchfrac.ingest import entry as entry_module
from batchfrac.ingest.decode import DecodePolicy
from batchfrac.ingest.entry import IngestConfig, ingest_chunk, ingest_file
from batchfrac.ingest.preprocess import PreprocessSpec, preprocess
from tests.encoders import write_encoded
from tests.factories import gradient_image, make_image_dataset, write_dataset
from tests.hostile_bytes import set_raw

SMALL_SPEC = PreprocessSpec(image_size=32, working_size=64)
CONFIG = IngestConfig(spec=SMALL_SPEC)


def write_image(path: Path, **tags: object) -> Path:
    return write_dataset(make_image_dataset(gradient_image(64, 48), **tags), path)


def write_sr_document(path: Path) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.save_as(path, enforce_file_format=True)
    return path


class TestIngestConfig:
    def test_defaults_screen_radiographs_with_the_default_spec(self) -> None:
        config = IngestConfig()
        assert config.modalities == ("CR", "DX")
        assert config.decode == DecodePolicy() and config.spec == PreprocessSpec()

    def test_survives_pickling_for_dask_workers(self) -> None:
        config = IngestConfig(modalities=("DX",), decode=DecodePolicy(frames="first"))
        assert pickle.loads(pickle.dumps(config)) == config


class TestIngestFile:
    def test_ok_image_is_one_row_with_the_preprocessed_pixels(self, tmp_path: Path) -> None:
        path = write_encoded(
            make_image_dataset(gradient_image(64, 48)), tmp_path / "a.dcm", RLELossless
        )
        (row,) = ingest_file(path, CONFIG)
        assert row.status is Status.OK and row.reason is None and row.detail == ""
        assert row.file.path == str(path) and row.file.size == path.stat().st_size
        assert row.header is not None and row.header.modality == "DX"
        assert row.frame == 0 and row.flags == () and row.decode_ms > 0
        assert row.pixels is not None and row.pixels.shape == (32, 32, 3)
        expected = preprocess(gradient_image(64, 48) / np.float32(4095), SMALL_SPEC)
        np.testing.assert_allclose(row.pixels, expected, atol=1e-5)

    def test_junk_text_file_is_skipped_as_not_dicom(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.txt"
        path.write_text("not an image\n" * 20)
        (row,) = ingest_file(path, CONFIG)
        assert (row.status, row.reason) == (Status.SKIPPED, Reason.NOT_DICOM)
        assert row.header is None and row.pixels is None and row.detail

    def test_structured_report_is_skipped_as_non_image_with_its_header(
        self, tmp_path: Path
    ) -> None:
        (row,) = ingest_file(write_sr_document(tmp_path / "sr.dcm"), CONFIG)
        assert (row.status, row.reason) == (Status.SKIPPED, Reason.NON_IMAGE)
        assert row.header is not None and row.header.modality == "SR"

    def test_multi_frame_file_gives_one_row_per_frame(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(64, 48) // (k + 1) for k in range(3)])
        path = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        rows = ingest_file(path, CONFIG)
        assert [row.frame for row in rows] == [0, 1, 2]
        assert all(row.status is Status.OK and row.file == rows[0].file for row in rows)
        assert rows[0].pixels is not None and rows[2].pixels is not None
        assert not np.array_equal(rows[0].pixels, rows[2].pixels)

    def test_first_frame_policy_gives_one_flagged_row(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(64, 48)] * 3)
        path = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        config = IngestConfig(decode=DecodePolicy(frames="first"), spec=SMALL_SPEC)
        (row,) = ingest_file(path, config)
        assert row.status is Status.OK and row.flags == ("first_frame_only",)

    def test_other_modality_is_skipped_with_its_header(self, tmp_path: Path) -> None:
        (row,) = ingest_file(write_image(tmp_path / "ct.dcm", modality="CT"), CONFIG)
        assert (row.status, row.reason) == (Status.SKIPPED, Reason.UNSUPPORTED_MODALITY)
        assert row.header is not None and row.header.modality == "CT"

    def test_allowed_modalities_come_from_the_config(self, tmp_path: Path) -> None:
        path = write_image(tmp_path / "ct.dcm", modality="CT")
        (row,) = ingest_file(path, IngestConfig(modalities=("CT",), spec=SMALL_SPEC))
        assert row.status is Status.OK

    def test_image_over_the_pixel_cap_is_an_error_row(self, tmp_path: Path) -> None:
        config = IngestConfig(decode=DecodePolicy(max_frame_pixels=100), spec=SMALL_SPEC)
        (row,) = ingest_file(write_image(tmp_path / "big.dcm"), config)
        assert (row.status, row.reason) == (Status.ERROR, Reason.TOO_LARGE)
        assert row.header is not None and "over the limit of 100" in row.detail

    @pytest.mark.filterwarnings("ignore:End of file reached before delimiter:UserWarning")
    def test_file_cut_inside_compressed_pixel_data_is_a_truncated_row(self, tmp_path: Path) -> None:
        path = write_encoded(
            make_image_dataset(gradient_image(64, 48)), tmp_path / "cut.dcm", RLELossless
        )
        path.write_bytes(path.read_bytes()[:-100])
        (row,) = ingest_file(path, CONFIG)
        assert (row.status, row.reason) == (Status.ERROR, Reason.TRUNCATED)
        assert row.header is not None and row.file.size == path.stat().st_size

    def test_missing_file_is_a_read_error_with_size_minus_one(self, tmp_path: Path) -> None:
        (row,) = ingest_file(tmp_path / "vanished.dcm", CONFIG)
        assert (row.status, row.reason) == (Status.ERROR, Reason.READ_ERROR)
        assert row.file.size == -1 and row.file.path == str(tmp_path / "vanished.dcm")

    def test_file_without_preamble_is_flagged(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(64, 48))
        del ds.file_meta
        ds.save_as(tmp_path / "raw.dcm", implicit_vr=True, little_endian=True)
        (row,) = ingest_file(tmp_path / "raw.dcm", CONFIG)
        assert row.status is Status.OK and row.flags == ("no_preamble",)

    def test_colour_image_is_flagged(self, tmp_path: Path) -> None:
        rgb = np.zeros((64, 48, 3), dtype=np.uint8)
        path = write_dataset(
            make_image_dataset(rgb, photometric="RGB", bits_stored=8), tmp_path / "c.dcm"
        )
        (row,) = ingest_file(path, CONFIG)
        assert row.status is Status.OK and row.flags == ("colour_to_grey",)


def smooth_image(rows: int, columns: int) -> np.ndarray:
    """A 12-bit blob with gentle slopes (steepest ~0.013 of full scale per pixel)."""
    r = np.linspace(-1.0, 1.0, rows)[:, None]
    c = np.linspace(-1.0, 1.0, columns)[None, :]
    return np.rint(500 + 3000 * np.exp(-((c / 0.5) ** 2) - (r / 0.7) ** 2)).astype(np.uint16)


class TestIngestReducedResolution:
    """Scanning decodes JPEG 2000 no larger than preprocessing's working size needs.

    The spec uses the plain ``image`` channel so the comparison is not amplified by
    CLAHE: what is compared is the working-size image, letterboxed.
    """

    SPEC = PreprocessSpec(image_size=32, working_size=64, channels=("image", "image", "image"))

    def write_j2k(self, path: Path, pixels: np.ndarray, **tags: object) -> Path:
        return write_encoded(make_image_dataset(pixels, **tags), path, JPEG2000Lossless)

    def test_policy_asks_for_the_working_size_unless_disabled_or_set(self) -> None:
        spec = PreprocessSpec(working_size=300)
        assert IngestConfig(spec=spec).decode_policy == DecodePolicy(min_long_side=300)
        disabled = IngestConfig(spec=spec, reduce_resolution=False)
        assert disabled.decode_policy == DecodePolicy()
        explicit = IngestConfig(spec=spec, decode=DecodePolicy(min_long_side=700))
        assert explicit.decode_policy.min_long_side == 700

    def test_j2k_gives_the_same_pixels_as_a_full_resolution_decode_and_is_flagged(
        self, tmp_path: Path
    ) -> None:
        path = self.write_j2k(tmp_path / "j2k.dcm", smooth_image(256, 192))
        (reduced,) = ingest_file(path, IngestConfig(spec=self.SPEC))
        (full,) = ingest_file(path, IngestConfig(spec=self.SPEC, reduce_resolution=False))
        assert reduced.status is Status.OK and reduced.flags == (ImageFlag.REDUCED_RESOLUTION,)
        assert full.status is Status.OK and full.flags == ()
        assert reduced.pixels is not None and full.pixels is not None
        # The level-2 wavelet low-pass band vs INTER_AREA (see TestDecodeReducedResolution
        # in test_decode.py): within 4 full-resolution pixels of the steepest slope
        # (0.013 here), and averaging to the output size does not increase it.
        error = np.abs(reduced.pixels - full.pixels)
        assert error.max() < 4 * 0.013 and error.mean() < 0.01

    def test_monochrome1_j2k_matches_monochrome2(self, tmp_path: Path) -> None:
        anatomy = smooth_image(256, 192)
        mono2 = self.write_j2k(tmp_path / "mono2.dcm", anatomy)
        mono1 = self.write_j2k(tmp_path / "mono1.dcm", 4095 - anatomy, photometric="MONOCHROME1")
        config = IngestConfig(spec=self.SPEC)
        (row2,), (row1,) = ingest_file(mono2, config), ingest_file(mono1, config)
        assert row1.flags == row2.flags == (ImageFlag.REDUCED_RESOLUTION,)
        assert row1.pixels is not None and row2.pixels is not None
        # The 5/3 lifting rounds down, so inverted stored values give a low-pass band
        # inverted only to within a few stored units.
        np.testing.assert_allclose(row1.pixels, row2.pixels, atol=8 / 4095)

    def test_other_syntaxes_and_small_j2k_are_decoded_in_full_and_not_flagged(
        self, tmp_path: Path
    ) -> None:
        rle = write_encoded(
            make_image_dataset(smooth_image(256, 192)), tmp_path / "rle.dcm", RLELossless
        )
        small = self.write_j2k(tmp_path / "small.dcm", smooth_image(100, 80))
        for path in (rle, small):
            (row,) = ingest_file(path, IngestConfig(spec=self.SPEC))
            (full,) = ingest_file(path, IngestConfig(spec=self.SPEC, reduce_resolution=False))
            assert row.status is Status.OK and row.flags == ()
            assert row.pixels is not None and full.pixels is not None
            np.testing.assert_array_equal(row.pixels, full.pixels)


class TestIngestChunk:
    def test_rows_follow_the_path_order_and_account_for_every_file(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.bin"
        junk.write_bytes(b"\x00" * 10)
        frames = np.stack([gradient_image(64, 48)] * 2)
        multi = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        paths = [str(write_image(tmp_path / "a.dcm")), str(junk), str(multi)]
        rows = ingest_chunk(paths, CONFIG)
        assert [(row.file.path, row.frame) for row in rows] == [
            (paths[0], 0),
            (paths[1], 0),
            (paths[2], 0),
            (paths[2], 1),
        ]
        assert [row.status for row in rows] == [Status.OK, Status.SKIPPED, Status.OK, Status.OK]

    def test_empty_chunk(self) -> None:
        assert ingest_chunk([], CONFIG) == []


class PanicLike(BaseException):
    """What pyo3 raises for a Rust panic: a BaseException, past every ``except Exception``."""


class TestIngestNeverRaises:
    @pytest.mark.parametrize(
        "exc", [PanicLike("index out of bounds"), RecursionError("too deep"), MemoryError()]
    )
    def test_anything_raised_while_decoding_is_one_decode_error_row(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
    ) -> None:
        def broken(*args: object) -> None:
            raise exc

        monkeypatch.setattr(entry_module, "decode", broken)
        (row,) = ingest_file(write_image(tmp_path / "a.dcm"), CONFIG)
        assert (row.status, row.reason) == (Status.ERROR, Reason.DECODE_ERROR)
        assert row.detail == capture.describe(exc) and row.header is not None
        assert len(row.log) == 1 and "in broken" in row.log[0]

    def test_anything_raised_before_the_header_is_one_read_error_row(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(path: Path) -> None:
            raise PanicLike("header parser panicked")

        monkeypatch.setattr(entry_module, "read_header", broken)
        (row,) = ingest_file(write_image(tmp_path / "a.dcm"), CONFIG)
        assert (row.status, row.reason) == (Status.ERROR, Reason.READ_ERROR)
        assert row.detail == "PanicLike: header parser panicked" and row.header is None
        assert row.file.size > 0

    @pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
    def test_the_user_can_still_stop_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: type[BaseException]
    ) -> None:
        def stop(*args: object) -> None:
            raise exc

        monkeypatch.setattr(entry_module, "decode", stop)
        with pytest.raises(exc):
            ingest_file(write_image(tmp_path / "a.dcm"), CONFIG)

    def test_library_warnings_go_to_the_first_rows_log_not_stderr(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        ds = make_image_dataset(np.stack([gradient_image(64, 48)] * 2))
        set_raw(ds, 0x00080018, "UI", b"1.2.3.abc")  # SOP Instance UID: pydicom warns
        rows = ingest_file(write_dataset(ds, tmp_path / "warns.dcm"), CONFIG)
        assert [row.status for row in rows] == [Status.OK, Status.OK]
        (entry,) = rows[0].log  # pydicom both logs and warns it: kept once
        assert "Invalid value for VR UI: '1.2.3.abc'" in entry
        assert rows[1].log == ()
        assert "Invalid value" not in capfd.readouterr().err

    def test_a_frame_that_fails_makes_the_whole_file_one_row(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(64, 48)] * 3)
        ds = make_image_dataset(frames)
        path = write_encoded(ds, tmp_path / "multi.dcm", JPEG2000Lossless)
        data = bytearray(path.read_bytes())
        last = data.rindex(b"\xff\x4f\xff\x51")  # the last frame's SOC and SIZ
        data[last + 4 : last + 40] = b"\x00" * 36
        path.write_bytes(bytes(data))
        (row,) = ingest_file(path, CONFIG)
        assert (row.status, row.reason) == (Status.ERROR, Reason.DECODE_ERROR)
        assert "frame 2" in row.detail

    def test_too_small_images_are_skipped(self, tmp_path: Path) -> None:
        path = write_dataset(make_image_dataset(gradient_image(8, 8)), tmp_path / "tiny.dcm")
        (row,) = ingest_file(path, CONFIG)
        assert (row.status, row.reason) == (Status.SKIPPED, Reason.TOO_SMALL)

    def test_surplus_pixel_data_is_flagged_not_framed(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(64, 48))
        ds.PixelData = ds.PixelData * 5
        path = write_dataset(ds, tmp_path / "surplus.dcm")
        (row,) = ingest_file(path, CONFIG)
        assert row.status is Status.OK and row.flags == ("surplus_pixel_data",)

    def test_decode_time_is_shared_between_frames(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(64, 48)] * 3)
        path = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        rows = ingest_file(path, CONFIG)
        assert [row.frame for row in rows] == [0, 1, 2]
        assert all(row.decode_ms > 0 for row in rows)
