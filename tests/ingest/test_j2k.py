"""Tests for batchfrac.ingest.j2k: the codestream main header, the level choice, and
reduced decoding of raw codestreams (the DICOM side is in test_decode.py)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from openjpeg.utils import encode_array
from pydicom.uid import HTJ2K, JPEG2000, JPEG2000Lossless, JPEGLSLossless, RLELossless

from batchfrac.ingest.j2k import can_reduce, decode_reduced, read_codestream, reduction_level
from tests.factories import gradient_image


def main_header(
    rows: int = 300,
    columns: int = 200,
    *,
    ssiz: int = 11,
    components: int = 1,
    cod_levels: int = 5,
    coc_levels: int | None = None,
) -> bytes:
    """SOC, SIZ, COD (and a COC for component 0), SOT: a main header without data."""
    siz = struct.pack(">HIIIIIIIIH", 0, columns, rows, 0, 0, columns, rows, 0, 0, components)
    siz += bytes([ssiz, 1, 1]) * components
    cod = bytes([0, 0, 0, 1, 0, cod_levels, 4, 4, 0, 0])
    out = b"\xff\x4f" + b"\xff\x51" + struct.pack(">H", len(siz) + 2) + siz
    out += b"\xff\x52" + struct.pack(">H", len(cod) + 2) + cod
    if coc_levels is not None:
        coc = bytes([0, 0, coc_levels, 4, 4, 0, 0])
        out += b"\xff\x53" + struct.pack(">H", len(coc) + 2) + coc
    return out + b"\xff\x90\x00\x0a" + bytes(8)


class TestReadCodestream:
    def test_reads_size_precision_sign_and_levels(self) -> None:
        stream = read_codestream(main_header(300, 200, ssiz=0x80 | 11, cod_levels=4))
        assert (stream.rows, stream.columns, stream.components) == (300, 200, 1)
        assert (stream.precision, stream.signed, stream.levels) == (12, True, 4)
        assert not stream.has_offset and not stream.subsampled

    def test_a_component_with_fewer_levels_caps_them(self) -> None:
        assert read_codestream(main_header(cod_levels=5, coc_levels=2)).levels == 2

    def test_an_encoded_codestream_matches_its_image(self) -> None:
        stream = read_codestream(encode_array(gradient_image(70, 50), bits_stored=12))
        assert (stream.rows, stream.columns, stream.precision, stream.signed) == (70, 50, 12, False)
        assert stream.levels >= 1

    @pytest.mark.parametrize(
        "data",
        [b"", b"\x00\x00\x00\x0cjP  \r\n\x87\n", main_header()[:30], main_header()[:45]],
        ids=["empty", "jp2-wrapper", "cut-in-siz", "no-cod"],
    )
    def test_anything_else_is_a_value_error(self, data: bytes) -> None:
        with pytest.raises(ValueError):
            read_codestream(data)


class TestReductionLevel:
    @pytest.mark.parametrize(
        ("rows", "columns", "levels", "min_long_side", "expected"),
        [
            (2500, 2000, 5, 512, 2),  # 625 >= 512 > 313
            (2048, 1536, 5, 512, 2),  # exactly 512
            (2045, 1536, 5, 512, 2),  # sides round up: ceil(2045 / 4) = 512
            (2044, 1536, 5, 512, 1),  # 2044 / 4 = 511 < 512
            (1000, 3000, 5, 512, 2),  # the long side is the columns
            (4096, 4096, 1, 64, 1),  # capped by the codestream's levels
            (1000, 800, 5, 600, 0),
        ],
    )
    def test_largest_level_whose_long_side_stays_at_or_over_the_minimum(
        self, rows: int, columns: int, levels: int, min_long_side: int, expected: int
    ) -> None:
        assert reduction_level(rows, columns, levels, min_long_side) == expected


class TestCanReduce:
    def test_only_jpeg_2000_syntaxes(self) -> None:
        assert can_reduce(JPEG2000Lossless) and can_reduce(JPEG2000) and can_reduce(HTJ2K)
        assert not can_reduce(RLELossless) and not can_reduce(JPEGLSLossless)


class TestDecodeReduced:
    def test_stored_values_come_back_on_their_own_scale(self) -> None:
        image = np.full((64, 48), 3000, dtype=np.uint16)
        data = encode_array(image, bits_stored=12)
        arr = decode_reduced(data, 16, rows=64, columns=48, bits_stored=12, signed=False)
        assert arr is not None and arr.shape == (16, 12) and arr.dtype == np.uint16
        assert (arr == 3000).all()

    def test_signed_values_keep_their_sign(self) -> None:
        image = np.full((64, 48), -1000, dtype=np.int16)
        data = encode_array(image, bits_stored=12)
        arr = decode_reduced(data, 16, rows=64, columns=48, bits_stored=12, signed=True)
        assert arr is not None and arr.dtype == np.int16 and (arr == -1000).all()

    @pytest.mark.parametrize(
        "mismatch",
        [{"rows": 65}, {"bits_stored": 16}, {"signed": True}],
        ids=["rows", "bits-stored", "pixel-representation"],
    )
    def test_a_codestream_disagreeing_with_the_data_set_is_left_to_the_full_decoder(
        self, mismatch: dict[str, object]
    ) -> None:
        data = encode_array(gradient_image(64, 48), bits_stored=12)
        attributes: dict[str, Any] = {"rows": 64, "columns": 48, "bits_stored": 12, "signed": False}
        assert decode_reduced(data, 16, **{**attributes, **mismatch}) is None

    def test_no_level_to_drop_is_left_to_the_full_decoder(self) -> None:
        data = encode_array(gradient_image(64, 48), bits_stored=12)
        assert decode_reduced(data, 33, rows=64, columns=48, bits_stored=12, signed=False) is None
