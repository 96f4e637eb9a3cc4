"""Tests for batchfrac.ingest.bounded_io and the pydicom 3 behaviour a bounded decode relies on.

Memory is measured with tracemalloc (every buffer here is a Python object: bytes,
bytearray, BytesIO, numpy arrays), or as the peak RSS of a child process where a codec
allocates in C.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.pixels import iter_pixels, pixel_array
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

from batchfrac.ingest.bounded_io import (
    DeflatedStreamError,
    InflateLimitExceeded,
    PixelDataMissing,
    PixelDataTruncated,
    PixelDataValue,
    inflate_limited,
    locate_pixel_data,
    native_frame_length,
    read_deferred_header,
    read_deflated_dataset,
    read_encapsulated_frame,
    read_native_frame,
    surplus_bytes,
)
from tests.factories import gradient_image, make_image_dataset, write_dataset
from tests.hostile import radiograph, truncated, valid
from tests.hostile_bombs import (
    deflate_bomb,
    huge_private_element,
    stream_larger_than_header,
    surplus_pixel_data,
)
from tests.more_encoders import write_any

MB = 1 << 20
PRIVATE = 0x7FDF1000


def peak_traced(work: Callable[[], Any]) -> tuple[Any, int]:
    """``work()``'s result (or exception) and the peak of Python allocations during it."""
    tracemalloc.start()
    try:
        try:
            result: Any = work()
        except Exception as exc:  # noqa: BLE001 - returned for the caller to assert on
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def zeros_deflated(size: int) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = bytes(MB)
    body = b"".join(compressor.compress(chunk) for _ in range(size // MB))
    return body + compressor.flush()


class TestInflateLimited:
    def test_round_trip(self) -> None:
        data = bytes(range(256)) * 1000
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        stream = compressor.compress(data) + compressor.flush()
        assert inflate_limited(io.BytesIO(stream), len(data), chunk_size=100).read() == data

    def test_a_bomb_stops_at_the_limit_without_inflating_the_rest(self) -> None:
        stream = zeros_deflated(256 * MB)  # 256 MB of zeros in about 250 KB
        assert len(stream) < 2 * MB
        error, peak = peak_traced(lambda: inflate_limited(io.BytesIO(stream), 4 * MB))
        assert isinstance(error, InflateLimitExceeded) and error.limit == 4 * MB
        assert peak < 12 * MB

    def test_exactly_the_limit_is_allowed(self) -> None:
        stream = zeros_deflated(2 * MB)
        assert len(inflate_limited(io.BytesIO(stream), 2 * MB).getvalue()) == 2 * MB
        with pytest.raises(InflateLimitExceeded):
            inflate_limited(io.BytesIO(stream), 2 * MB - 1)

    def test_truncated_and_corrupt_streams(self) -> None:
        stream = zeros_deflated(2 * MB)
        with pytest.raises(DeflatedStreamError, match="ends after"):
            inflate_limited(io.BytesIO(stream[: len(stream) // 2]), 4 * MB)
        with pytest.raises(DeflatedStreamError, match="corrupt"):
            inflate_limited(io.BytesIO(b"\xff" * 64), 4 * MB)

    def test_rejects_a_limit_of_zero(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            inflate_limited(io.BytesIO(b""), 0)


class TestReadDeflatedDataset:
    def test_reads_what_pydicom_reads(self, tmp_path: Path) -> None:
        path = valid(tmp_path, DeflatedExplicitVRLittleEndian).path
        ours, theirs = read_deflated_dataset(path, 4 * MB), dcmread(path)
        assert ours.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
        assert (ours.Rows, ours.Columns, ours.PatientID) == (64, 48, theirs.PatientID)
        assert ours.PixelData == theirs.PixelData
        assert np.array_equal(next(iter_pixels(ours)), theirs.pixel_array)

    def test_stop_before_pixels(self, tmp_path: Path) -> None:
        path = valid(tmp_path, DeflatedExplicitVRLittleEndian).path
        assert "PixelData" not in read_deflated_dataset(path, MB, stop_before_pixels=True)

    def test_deflate_bomb_is_refused_within_its_limit(self, tmp_path: Path) -> None:
        path = deflate_bomb(tmp_path, size=128 * MB).path
        assert path.stat().st_size < MB
        error, peak = peak_traced(lambda: read_deflated_dataset(path, 8 * MB))
        assert isinstance(error, InflateLimitExceeded), error
        assert peak < 20 * MB

    def test_truncated_deflated_file(self, tmp_path: Path) -> None:
        path = truncated(tmp_path, DeflatedExplicitVRLittleEndian, "header").path
        with pytest.raises(DeflatedStreamError):
            read_deflated_dataset(path, 4 * MB)

    def test_refuses_a_file_that_is_not_deflated(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="not deflated"):
            read_deflated_dataset(valid(tmp_path).path, MB)


class TestReadDeferredHeader:
    def test_huge_private_element_is_not_read(self, tmp_path: Path) -> None:
        path = huge_private_element(tmp_path, size=64 * MB).path
        ds, peak = peak_traced(lambda: read_deferred_header(path))
        assert ds.get_item(PRIVATE, keep_deferred=True).value is None  # still in the file
        assert (ds.Rows, ds.Columns, ds.BodyPartExamined) == (64, 48, "HAND")
        assert peak < 4 * MB

    def test_pydicom_without_defer_size_reads_it(self, tmp_path: Path) -> None:
        path = huge_private_element(tmp_path, size=64 * MB).path
        ds, peak = peak_traced(lambda: dcmread(path, stop_before_pixels=True))
        assert len(ds.get_item(PRIVATE).value) == 64 * MB
        assert peak > 64 * MB

    def test_deflated_header_goes_through_the_limit(self, tmp_path: Path) -> None:
        path = deflate_bomb(tmp_path, size=128 * MB).path
        with pytest.raises(InflateLimitExceeded):
            read_deferred_header(path, inflate_limit=16 * MB)
        assert read_deferred_header(path, inflate_limit=256 * MB).Rows == 64

    def test_a_small_value_is_read(self, tmp_path: Path) -> None:
        ds = read_deferred_header(valid(tmp_path).path, defer_size=16)
        assert ds.get_item(0x00100020).value is not None  # Patient ID


class TestLocateAndReadFrames:
    @pytest.mark.parametrize(
        "syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian, "1.2.840.10008.1.2.1"], ids=str
    )
    def test_native_frame_of_every_native_syntax(self, tmp_path: Path, syntax: str) -> None:
        path = valid(tmp_path, syntax).path
        where = locate_pixel_data(path)
        assert where.length == 64 * 48 * 2 and not where.encapsulated
        frame = read_native_frame(path, where, 0, native_frame_length(64, 48, 1, 16), 1)
        assert frame == dcmread(path).PixelData

    def test_surplus_pixel_data_is_counted_and_never_read(self, tmp_path: Path) -> None:
        case = surplus_pixel_data(tmp_path, size=64 * MB)
        where = locate_pixel_data(case.path)
        length = native_frame_length(256, 200, 1, 16)
        assert surplus_bytes(where, length, 1) == 64 * MB
        frame, peak = peak_traced(lambda: read_native_frame(case.path, where, 0, length, 1))
        assert frame == radiograph(256, 200).PixelData
        assert peak < 2 * length + MB
        with pytest.raises(IndexError):
            read_native_frame(case.path, where, 1, length, 1)

    def test_odd_length_padding_is_not_surplus(self) -> None:
        where = PixelDataValue(offset=0, length=10, tag=0x7FE00010, is_little_endian=True)
        assert surplus_bytes(where, 3, 3) == 0
        assert surplus_bytes(where, 3, 4) == -2

    def test_truncated_native_frame(self, tmp_path: Path) -> None:
        path = truncated(tmp_path, "1.2.840.10008.1.2.1", "pixels").path
        where = locate_pixel_data(path)
        with pytest.raises(PixelDataTruncated, match="the file ends inside frame 0"):
            read_native_frame(path, where, 0, 64 * 48 * 2, 1)
        with pytest.raises(PixelDataTruncated, match="declares"):
            read_native_frame(path, where, 1, 64 * 48 * 2, 2)

    def test_encapsulated_frames_one_by_one(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(32, 24) + i for i in range(3)])
        path = write_any(make_image_dataset(frames), tmp_path / "rle.dcm", RLELossless)
        where = locate_pixel_data(path)
        assert where.encapsulated
        expected = list(generate_frames(dcmread(path).PixelData, number_of_frames=3))
        assert [read_encapsulated_frame(path, where, i, 3) for i in range(3)] == expected

    def test_no_pixel_data(self, tmp_path: Path) -> None:
        ds = radiograph()
        del ds.PixelData
        with pytest.raises(PixelDataMissing):
            locate_pixel_data(write_dataset(ds, tmp_path / "none.dcm"))

    def test_frame_lengths(self) -> None:
        assert native_frame_length(480, 640, 3, 8) == 480 * 640 * 3
        assert native_frame_length(480, 640, 3, 8, "YBR_FULL_422") == 480 * 640 * 2
        with pytest.raises(ValueError, match="byte-aligned"):
            native_frame_length(8, 8, 1, 1)


# --- what pydicom 3 offers (FINDINGS.md, "frame by frame"): these hold today -----------


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    directory = tmp_path_factory.mktemp("pydicom-bounds")
    yield {
        "surplus": surplus_pixel_data(directory, size=32 * MB).path,
        "private": huge_private_element(directory, size=64 * MB).path,
        "deflated": deflate_bomb(directory, size=32 * MB).path,
    }


class TestPydicomFrameByFrame:
    def test_reading_from_the_path_never_returns_surplus_frames(
        self, bombs: dict[str, Path]
    ) -> None:
        frames, peak = peak_traced(lambda: list(iter_pixels(bombs["surplus"])))
        assert [f.shape for f in frames] == [(256, 200)]
        assert peak < 2 * MB
        assert pixel_array(bombs["surplus"], index=0).shape == (256, 200)

    def test_a_dataset_returns_surplus_frames_unless_told_not_to(
        self, bombs: dict[str, Path]
    ) -> None:
        ds = dcmread(bombs["surplus"])
        with pytest.warns(UserWarning, match="sufficient to contain 328 frames"):
            assert sum(1 for _ in iter_pixels(ds)) == 328  # 1 + 32 MiB // 102,400
        assert sum(1 for _ in iter_pixels(ds, allow_excess_frames=False)) == 1

    def test_reading_from_the_path_skips_non_pixel_elements(self, bombs: dict[str, Path]) -> None:
        frame, peak = peak_traced(lambda: pixel_array(bombs["private"], index=0))
        assert frame.shape == (64, 48) and peak < 2 * MB

    def test_reading_from_the_path_does_not_handle_deflated_files(
        self, bombs: dict[str, Path]
    ) -> None:
        with pytest.raises(AttributeError, match="no 'Pixel Data'"):
            pixel_array(bombs["deflated"], index=0)

    def test_an_oversized_stream_is_decoded_before_anything_checks_it(self, tmp_path: Path) -> None:
        """pydicom decodes a 6000^2 JPEG-LS stream behind a 256^2 header into 36 MB and
        silently returns its first 256 x 256 pixels: check_frame must come first."""
        path = stream_larger_than_header(tmp_path, side=6000).path
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent.
        code = (
            "import json, sys; from pydicom.pixels import pixel_array\n"
            "def hwm():\n"
            "    return int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
            "base = hwm(); a = pixel_array(sys.argv[1], index=0)\n"
            "print(json.dumps([list(a.shape), (hwm() - base) // 1024]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
        )
        shape, grown_mb = json.loads(done.stdout.strip().splitlines()[-1])
        assert shape == [256, 256]
        assert grown_mb >= 30, f"expected the 36 MB decode buffer, RSS grew {grown_mb} MB"
        assert JPEGLSLossless == dcmread(path).file_meta.TransferSyntaxUID
