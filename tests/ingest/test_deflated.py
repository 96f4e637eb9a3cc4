"""Tests for batchfrac.ingest.deflated: a deflated data set read as a bounded stream."""

from __future__ import annotations

import io
import zlib

import pytest

from batchfrac.ingest.bounded_io import DeflatedStreamError, InflateLimitExceeded
from batchfrac.ingest.deflated import InflatingReader


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


DATA = bytes(range(256)) * 20_000  # 5 MB


class TestInflatingReader:
    def test_reads_and_seeks_like_the_inflated_bytes(self) -> None:
        reader = InflatingReader(io.BytesIO(raw_deflate(DATA)))
        assert reader.read(10) == DATA[:10] and reader.tell() == 10
        reader.seek(4_000_000)
        assert reader.read(300) == DATA[4_000_000:4_000_300]
        reader.seek(-100, 1)  # a short rewind, as pydicom makes
        assert reader.read(50) == DATA[4_000_200:4_000_250]
        reader.seek(len(DATA) - 5)
        assert reader.read(100) == DATA[-5:] and reader.read(10) == b""

    def test_keeps_only_a_small_window_behind_its_position(self) -> None:
        reader = InflatingReader(io.BytesIO(raw_deflate(DATA)))
        reader.seek(4_000_000)
        reader.read(1)
        assert len(reader._buffer) < 3 << 20
        with pytest.raises(OSError, match="cannot seek back"):
            reader.seek(0)

    def test_stops_past_its_limit(self) -> None:
        reader = InflatingReader(io.BytesIO(raw_deflate(DATA)), limit=1 << 20)
        with pytest.raises(InflateLimitExceeded):
            reader.seek(2 << 20)
            reader.read(1)

    def test_a_truncated_or_corrupt_stream_is_an_error(self) -> None:
        stream = raw_deflate(DATA)
        with pytest.raises(DeflatedStreamError, match="ends after"):
            InflatingReader(io.BytesIO(stream[: len(stream) // 2])).read(len(DATA))
        with pytest.raises(DeflatedStreamError, match="corrupt"):
            InflatingReader(io.BytesIO(b"\xff" * 64)).read(10)
