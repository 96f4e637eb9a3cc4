"""Tests for batchfrac.ingest.sources: one frame's bytes at a time, checked against the
header before any is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from batchfrac.enums import Reason
from batchfrac.errors import FileRejected
from batchfrac.ingest.header import read_header
from batchfrac.ingest.sources import ENCODED_FRAME_SLACK, open_pixel_source
from tests.encoders import write_encoded
from tests.factories import gradient_image, make_image_dataset, write_dataset
from tests.hostile_bytes import relabel, wrap_stream


def frames_of(path: Path, count: int | None = None) -> list[bytes]:
    syntax = UID(path_syntax(path))
    with open_pixel_source(path, True, syntax) as source:
        return list(source.frames(source.pixel.number_of_frames if count is None else count))


def path_syntax(path: Path) -> str:
    syntax = read_header(path).transfer_syntax_uid
    assert syntax is not None
    return syntax


def rejection(path: Path) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        frames_of(path)
    return caught.value


class TestNative:
    def test_each_frame_is_its_own_bytes(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(64, 48) + k for k in range(3)])
        path = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        assert frames_of(path) == [frame.tobytes() for frame in frames]

    def test_surplus_is_counted_and_never_read(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(64, 48))
        frame = ds.PixelData
        ds.PixelData = frame * 3
        path = write_dataset(ds, tmp_path / "surplus.dcm")
        with open_pixel_source(path, True, UID(ExplicitVRLittleEndian)) as source:
            assert source.surplus == 2 * len(frame)
            assert list(source.frames(1)) == [frame]

    def test_float_pixel_data_is_not_decoded(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(64, 48))
        del ds.PixelData
        ds.FloatPixelData = np.zeros(64 * 48, np.float32).tobytes()
        path = write_dataset(ds, tmp_path / "float.dcm")
        found = rejection(path)
        assert found.reason is Reason.DECODE_ERROR and "float pixel data" in found.detail


class TestEncapsulated:
    def test_each_frame_is_its_codestream(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(64, 48) + k for k in range(3)])
        path = write_encoded(make_image_dataset(frames), tmp_path / "rle.dcm", RLELossless)
        found = frames_of(path)
        assert len(found) == 3 and all(frame[:4] == b"\x02\x00\x00\x00" for frame in found)

    def test_an_encoded_frame_far_larger_than_its_image_is_too_large(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(64, 48).astype(np.uint8), bits_stored=8)
        junk = b"\xff\xd8" + bytes(ENCODED_FRAME_SLACK + 64 * 48 * 2)
        path = write_dataset(wrap_stream(ds, JPEGLSLossless, [junk]), tmp_path / "junk.dcm")
        found = rejection(path)
        assert found.reason is Reason.TOO_LARGE and "more than" in found.detail

    def test_fewer_frames_than_declared_is_a_decode_error(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(64, 48).astype(np.uint8), bits_stored=8)
        path = write_dataset(wrap_stream(ds, JPEGLSLossless, [b"a" * 10]), tmp_path / "one.dcm")
        relabel(path, NumberOfFrames=3)
        found = rejection(path)
        assert found.reason is Reason.DECODE_ERROR and "holds 1 frames" in found.detail

    def test_a_file_cut_inside_the_fragments_is_truncated_before_any_read(
        self, tmp_path: Path
    ) -> None:
        ds = make_image_dataset(gradient_image(64, 48))
        path = write_encoded(ds, tmp_path / "cut.dcm", RLELossless)
        path.write_bytes(path.read_bytes()[:-100])
        with pytest.raises(FileRejected) as caught:
            open_pixel_source(path, True, UID(RLELossless))
        assert caught.value.reason is Reason.TRUNCATED
