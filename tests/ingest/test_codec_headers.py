"""Tests for batchfrac.ingest.codec_headers on streams written by the real encoders, and on lies."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from batchfrac.ingest.codec_headers import (
    RLEHeader,
    StreamHeader,
    StreamHeaderError,
    StreamMismatch,
    StreamTruncated,
    check_frame,
    read_jpeg2000_header,
    read_jpeg_header,
    read_rle_header,
    stream_header,
)
from tests.hostile import radiograph
from tests.hostile_bombs import stream_larger_than_header
from tests.more_encoders import ALL_SYNTAXES

ENCAPSULATED = [syntax for syntax in ALL_SYNTAXES if UID(syntax).is_encapsulated]
#: What the encoders write for 12-bit data where it is not 12: gdcm's lossless JPEG and
#: imagecodecs' HTJ2K declare the container's 16 bits (so compare with Bits Allocated).
PRECISION = {
    "1.2.840.10008.1.2.4.50": 8,
    "1.2.840.10008.1.2.4.57": 16,
    "1.2.840.10008.1.2.4.70": 16,
    "1.2.840.10008.1.2.4.201": 16,
}


def codec_of(syntax: str) -> str:
    """The codec family of a JPEG-type syntax, from its UID (PS3.5 A.4)."""
    number = str(syntax).removeprefix("1.2.840.10008.1.2.4.")
    return {"8": "jpeg-ls", "9": "jpeg2000", "2": "jpeg2000"}.get(number[0], "jpeg")


def first_frame(path: Path) -> bytes:
    ds = dcmread(path)
    return next(generate_frames(ds.PixelData, number_of_frames=1))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The frame of a 64 x 48 radiograph in every encapsulated syntax (real encoders)."""
    from tests.hostile import valid

    directory = tmp_path_factory.mktemp("codec-headers")
    return {str(s): first_frame(valid(directory, s).path) for s in ENCAPSULATED}


def rle_frame(pixels: np.ndarray, samples: int = 1) -> bytes:
    bits = 8 * pixels.dtype.itemsize
    rows, columns = pixels.shape[:2]
    return bytes(
        get_encoder(RLELossless).encode(
            pixels, rows=rows, columns=columns, samples_per_pixel=samples,
            bits_allocated=bits, bits_stored=bits, pixel_representation=0,
            photometric_interpretation="RGB" if samples == 3 else "MONOCHROME2",
            number_of_frames=1, planar_configuration=0,
        )
    )  # fmt: skip


class TestRealEncoders:
    @pytest.mark.parametrize("syntax", ENCAPSULATED, ids=str)
    def test_reads_the_geometry_every_encoder_writes(
        self, encoded: dict[str, bytes], syntax: UID
    ) -> None:
        header = stream_header(encoded[str(syntax)], syntax)
        if syntax == RLELossless:
            assert header == RLEHeader(2, (64, header.offsets[1]))  # type: ignore[union-attr]
            return
        assert isinstance(header, StreamHeader)
        assert (header.rows, header.columns, header.components) == (64, 48, 1)
        assert header.codec == codec_of(syntax)
        assert header.precision == PRECISION.get(str(syntax), 12)

    @pytest.mark.parametrize("syntax", ENCAPSULATED, ids=str)
    def test_check_frame_accepts_the_truth(self, encoded: dict[str, bytes], syntax: UID) -> None:
        bits = 8 if syntax == JPEGBaseline8Bit else 16
        check_frame(encoded[str(syntax)], syntax, 64, 48, 1, bits)

    def test_lossless_jpeg_is_sof3_and_jpeg_ls_is_sof55(self, encoded: dict[str, bytes]) -> None:
        assert read_jpeg_header(encoded["1.2.840.10008.1.2.4.70"]).marker == 0xC3
        assert read_jpeg_header(encoded["1.2.840.10008.1.2.4.80"]).marker == 0xF7
        assert read_jpeg_header(encoded["1.2.840.10008.1.2.4.50"]).marker == 0xC0

    def test_colour_streams_have_three_components(self) -> None:
        import imagecodecs

        rgb = np.zeros((20, 30, 3), np.uint8)
        assert read_jpeg_header(imagecodecs.jpeg8_encode(rgb)).components == 3
        assert read_jpeg_header(imagecodecs.jpegls_encode(rgb)).components == 3
        assert read_jpeg2000_header(imagecodecs.jpeg2k_encode(rgb)).samples == 20 * 30 * 3
        assert read_rle_header(rle_frame(rgb, samples=3)).segments == 3

    def test_jp2_file_wrapped_codestream(self) -> None:
        import imagecodecs

        jp2 = imagecodecs.jpeg2k_encode(np.zeros((40, 24), np.uint16), codecformat="JP2")
        assert jp2[4:8] == b"jP  "
        header = read_jpeg2000_header(jp2)
        assert (header.rows, header.columns, header.precision) == (40, 24, 16)

    def test_signed_jpeg2000(self) -> None:
        import imagecodecs

        header = read_jpeg2000_header(imagecodecs.jpeg2k_encode(np.zeros((8, 8), np.int16)))
        assert header.signed and header.precision == 16


class TestLyingHeaders:
    @pytest.mark.parametrize("syntax", [s for s in ENCAPSULATED if s != RLELossless], ids=str)
    @pytest.mark.parametrize(
        ("rows", "columns", "samples", "larger"),
        [(32, 48, 1, True), (48, 64, 1, False), (64, 48, 3, False), (128, 96, 1, False)],
    )
    def test_geometry_that_differs_from_rows_columns_samples(
        self,
        encoded: dict[str, bytes],
        syntax: UID,
        rows: int,
        columns: int,
        samples: int,
        larger: bool,
    ) -> None:
        with pytest.raises(StreamMismatch, match=f"the DICOM header says {rows} x {columns}") as e:
            check_frame(encoded[str(syntax)], syntax, rows, columns, samples, 16)
        assert e.value.larger is larger

    def test_precision_over_bits_allocated_is_larger(self, encoded: dict[str, bytes]) -> None:
        with pytest.raises(StreamMismatch, match="at 12 bits") as e:
            check_frame(encoded["1.2.840.10008.1.2.4.80"], JPEGLSLossless, 64, 48, 1, 8)
        assert e.value.larger

    def test_the_24000_square_jpeg_ls_stream_behind_256(self, tmp_path: Path) -> None:
        case = stream_larger_than_header(tmp_path, side=24000)
        with pytest.raises(StreamMismatch, match="24000 x 24000") as e:
            check_frame(first_frame(case.path), JPEGLSLossless, 256, 256, 1, 8)
        assert e.value.larger

    def test_rle_segments_against_samples_and_bits(self) -> None:
        frame = rle_frame(np.zeros((4, 6), np.uint16))
        check_frame(frame, RLELossless, 4, 6, 1, 16)
        with pytest.raises(StreamMismatch, match="2 segments.*need 1") as e:
            check_frame(frame, RLELossless, 4, 6, 1, 8)
        assert e.value.larger
        with pytest.raises(StreamMismatch, match="need 6") as e:
            check_frame(frame, RLELossless, 4, 6, 3, 16)
        assert not e.value.larger

    def test_native_syntaxes_have_no_stream_header(self) -> None:
        assert check_frame(b"\x00" * 10, ExplicitVRLittleEndian, 64, 48, 1, 16) is None


class TestMalformedStreams:
    def test_rle_offsets_outside_the_frame(self) -> None:
        frame = bytearray(rle_frame(np.zeros((4, 6), np.uint16)))
        struct.pack_into("<L", frame, 8, len(frame) + 10)
        with pytest.raises(StreamHeaderError, match="segment 1 spans bytes 64 to"):
            read_rle_header(bytes(frame))

    @pytest.mark.parametrize(
        ("header", "message"),
        [
            ((0,) + (0,) * 15, "0 segments"),
            ((16,) + (64,) + (0,) * 14, "16 segments"),
            ((1, 60) + (0,) * 14, "starts at byte 60"),
            ((2, 64, 64) + (0,) * 13, "segment 1 spans bytes 64 to 64"),
            ((1, 64, 70) + (0,) * 13, "not zero"),
        ],
    )
    def test_rle_header_rules(self, header: tuple[int, ...], message: str) -> None:
        with pytest.raises(StreamHeaderError, match=message):
            read_rle_header(struct.pack("<16L", *header) + b"\x00" * 16)

    def test_short_rle_frame(self) -> None:
        with pytest.raises(StreamHeaderError, match="shorter than its header"):
            read_rle_header(b"\x01\x00\x00\x00")

    def test_jpeg_cut_before_sof(self, encoded: dict[str, bytes]) -> None:
        stream = encoded["1.2.840.10008.1.2.4.50"]
        sof = stream.index(b"\xff\xc0")
        for cut in (1, 3, sof, sof + 5):
            with pytest.raises(StreamHeaderError):
                read_jpeg_header(stream[:cut])

    def test_jpeg_sos_before_sof_and_dnl_height(self) -> None:
        with pytest.raises(StreamHeaderError, match="0xFFDA before a SOF"):
            read_jpeg_header(b"\xff\xd8\xff\xda\x00\x02")
        sof = b"\xff\xc0\x00\x0b\x08\x00\x00\x00\x30\x01\x01\x11\x00"
        with pytest.raises(StreamHeaderError, match="DNL"):
            read_jpeg_header(b"\xff\xd8" + sof)

    def test_jpeg_fill_bytes_and_app_segments_are_skipped(self) -> None:
        sof = b"\xff\xc1\x00\x0b\x0c\x00\x20\x00\x30\x01\x01\x11\x00"
        app = b"\xff\xe0\x00\x04ab"
        header = read_jpeg_header(b"\xff\xd8" + app + b"\xff\xff" + sof)
        assert header == StreamHeader("jpeg", 32, 48, 1, 12, 0xC1)

    def test_jpeg_segment_longer_than_the_stream(self) -> None:
        with pytest.raises(StreamHeaderError, match="declares 65535 bytes"):
            read_jpeg_header(b"\xff\xd8\xff\xe0\xff\xff")

    def test_not_a_jpeg(self) -> None:
        with pytest.raises(StreamHeaderError, match="SOI"):
            check_frame(b"\x00" * 64, JPEGBaseline8Bit, 8, 8, 1, 8)

    def test_jpeg2000_malformed_siz(self, encoded: dict[str, bytes]) -> None:
        stream = encoded["1.2.840.10008.1.2.4.90"]
        with pytest.raises(StreamHeaderError, match="ends inside SIZ"):
            read_jpeg2000_header(stream[:20])
        with pytest.raises(StreamHeaderError, match="SOC, SIZ"):
            read_jpeg2000_header(b"\xff\xd8" + stream[2:])
        lying = bytearray(stream)
        struct.pack_into(">H", lying, 40, 0)  # Csiz = 0
        with pytest.raises(StreamHeaderError, match="0 components"):
            read_jpeg2000_header(bytes(lying))
        empty = bytearray(stream)
        struct.pack_into(">L", empty, 16, 5000)  # XOsiz past Xsiz
        with pytest.raises(StreamHeaderError, match="image area"):
            read_jpeg2000_header(bytes(empty))

    def test_jp2_without_codestream_box(self) -> None:
        signature = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
        with pytest.raises(StreamHeaderError, match="jp2c"):
            read_jpeg2000_header(signature + b"\x00\x00\x00\x08free")
        with pytest.raises(StreamHeaderError, match="declares 3 bytes"):
            read_jpeg2000_header(signature + b"\x00\x00\x00\x03jp2c")


JPEG_FAMILY = [s for s in ENCAPSULATED if s != RLELossless and codec_of(s) != "jpeg2000"]


class TestEndMarker:
    """A JPEG or JPEG-LS stream must end with EOI: cut ones decode "successfully" in
    libjpeg-turbo and libjpeg, their missing rows filled in."""

    @staticmethod
    def check(frame: bytes, syntax: str) -> StreamHeader | RLEHeader | None:
        return check_frame(frame, syntax, 64, 48, 1, 16 if PRECISION.get(syntax) != 8 else 8)

    @pytest.mark.parametrize("syntax", JPEG_FAMILY, ids=lambda s: UID(s).name)
    def test_a_stream_cut_anywhere_after_its_header_is_truncated(
        self, encoded: dict[str, bytes], syntax: str
    ) -> None:
        stream = encoded[syntax].rstrip(b"\x00")  # without the even-length padding
        assert self.check(stream, syntax) is not None  # whole: accepted
        start = stream.index(b"\xff\xda")  # the first scan
        for cut in (start + 12, (start + len(stream)) // 2, len(stream) - 2, len(stream) - 1):
            with pytest.raises(StreamTruncated, match="ends without its EOI marker"):
                self.check(stream[:cut], syntax)

    @pytest.mark.parametrize("syntax", JPEG_FAMILY, ids=lambda s: UID(s).name)
    def test_padding_after_eoi_is_accepted(self, encoded: dict[str, bytes], syntax: str) -> None:
        stream = encoded[syntax].rstrip(b"\x00")
        for padding in (b"\x00", b"\x00" * 30):
            assert self.check(stream + padding, syntax) is not None

    def test_jpeg_2000_is_left_to_its_decoder(self, encoded: dict[str, bytes]) -> None:
        stream = encoded[str(JPEG2000Lossless)]
        cut = stream[: len(stream) // 2]  # openjpeg refuses it: decode_error
        assert isinstance(self.check(cut, JPEG2000Lossless), StreamHeader)


def test_radiograph_factory_is_what_the_expectations_assume() -> None:
    ds = radiograph()
    assert (ds.Rows, ds.Columns, ds.BitsStored) == (64, 48, 12)
