"""What a compressed frame says about itself, read from its stream header without decoding.

A codec allocates its output from the sizes in the *stream*, not from the DICOM header:
a 24000 x 24000 JPEG-LS stream behind (0028,0010) *Rows* = (0028,0011) *Columns* = 256
makes the decoder allocate 576 MB before anything compares the two. :func:`check_frame`
makes that comparison first, for the encapsulated syntaxes of PS3.5 A.4:

- JPEG (ISO/IEC 10918-1 B.2.2): the frame header of the first SOFn marker (SOF0-3,
  5-7, 9-11, 13-15) gives sample precision P, lines Y, samples per line X, components Nf;
- JPEG-LS (ISO/IEC 14495-1 C.2.2): the same fields in its SOF55 (0xFFF7) marker;
- JPEG 2000 and HTJ2K (ISO/IEC 15444-1 A.5.1, 15444-15): the SIZ marker segment of the
  codestream, also inside a JP2 file's contiguous codestream box (15444-1 I.5.4);
- RLE (PS3.5 G.3.1): the 64-byte header, number of segments and their offsets.

Only headers are read (a few hundred bytes at most before the first SOF/SIZ), so the
check costs nothing beside a decode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import BatchfracError

__all__ = [
    "RLEHeader",
    "StreamHeader",
    "StreamHeaderError",
    "StreamMismatch",
    "StreamTruncated",
    "check_frame",
    "read_jpeg2000_header",
    "read_jpeg_header",
    "read_rle_header",
    "stream_header",
]

_JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
        "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 and 4)
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    }
)
_JPEG2000_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component Lossless Only
        "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless Only
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
        "1.2.840.10008.1.2.4.203",  # HTJ2K
    }
)
_RLE_SYNTAX = "1.2.840.10008.1.2.5"

# Start Of Frame markers: 10918-1 table B.1 (0xC4 DHT, 0xC8 JPG, 0xCC DAC are not), 14495-1 SOF55.
_SOF_MARKERS = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC)})
_SOF_MARKERS |= {*range(0xCD, 0xD0), 0xF7}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_J2K_SOC, _J2K_SIZ = b"\xff\x4f", b"\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
# A JPEG/JPEG-LS stream ends with EOI, which its entropy-coded data cannot hold (JPEG
# stuffs 0x00 after 0xFF, JPEG-LS a byte under 0x80); fragments may be padded after it
# (PS3.5 A.4: one 0x00, and some encoders pad more), so it is looked for near the end.
_EOI_MARKER = b"\xff\xd9"
_EOI_WINDOW = 64
_RLE_HEADER_LENGTH = 64
_RLE_MAX_SEGMENTS = 15


class StreamHeaderError(BatchfracError, ValueError):
    """A frame's stream header is missing, malformed, or inconsistent in itself."""


class StreamTruncated(StreamHeaderError):
    """A JPEG or JPEG-LS codestream ends without its EOI marker: it was cut short. Some
    decoders (libjpeg-turbo, libjpeg) fill the missing rows and report success."""


class StreamMismatch(StreamHeaderError):
    """A frame's stream declares another image than the DICOM header.

    ``larger`` is true when the stream would decode to more samples than Rows x Columns x
    Samples per Pixel allow (a memory bomb rather than a mere inconsistency).
    """

    def __init__(self, message: str, *, larger: bool) -> None:
        super().__init__(message)
        self.larger = larger


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The image a JPEG, JPEG-LS or JPEG 2000 codestream declares.

    ``codec``: ``"jpeg"``, ``"jpeg-ls"`` or ``"jpeg2000"``; ``marker``: the JPEG SOF
    marker (e.g. ``0xC3`` lossless) or ``0x51`` (J2K SIZ); ``precision``: bits per sample
    (the largest over the components for JPEG 2000); ``signed``: JPEG 2000 only.
    """

    codec: str
    rows: int
    columns: int
    components: int
    precision: int
    marker: int
    signed: bool = False

    @property
    def samples(self) -> int:
        """Samples the frame decodes to: rows x columns x components."""
        return self.rows * self.columns * self.components


@dataclass(frozen=True, slots=True)
class RLEHeader:
    """The PS3.5 G.5 header of one RLE frame: segment count and their start offsets."""

    segments: int
    offsets: tuple[int, ...]


def read_jpeg_header(frame: bytes) -> StreamHeader:
    """The first SOFn (or JPEG-LS SOF55) frame header of a JPEG/JPEG-LS stream.

    Walks the marker segments from SOI (10918-1 B.1.1.2: 0xFF fill bytes allowed
    before a marker) until a SOF; raises :class:`StreamHeaderError` when the stream does
    not start with SOI, ends, or reaches SOS/EOI first, or when the frame header has a
    zero dimension (a height set later by a DNL marker is not accepted).
    """
    if frame[:2] != b"\xff\xd8":
        raise StreamHeaderError(f"JPEG stream does not start with SOI: {frame[:2].hex()}")
    pos = 2
    while True:
        if pos >= len(frame) or frame[pos] != 0xFF:
            raise StreamHeaderError(f"JPEG stream: no marker at byte {pos} before a SOF")
        while pos < len(frame) and frame[pos] == 0xFF:
            pos += 1
        if pos >= len(frame):
            raise StreamHeaderError("JPEG stream ends before a SOF marker")
        marker = frame[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (_SOS, _EOI, _SOI):
            raise StreamHeaderError(f"JPEG stream reaches marker 0xFF{marker:02X} before a SOF")
        if pos + 2 > len(frame):
            raise StreamHeaderError("JPEG stream ends inside a marker segment length")
        (length,) = struct.unpack_from(">H", frame, pos)
        if length < 2 or pos + length > len(frame):
            raise StreamHeaderError(
                f"JPEG marker 0xFF{marker:02X} declares {length} bytes, {len(frame) - pos} remain"
            )
        if marker in _SOF_MARKERS:
            return _jpeg_frame_header(marker, frame[pos : pos + length])
        pos += length


def _jpeg_frame_header(marker: int, segment: bytes) -> StreamHeader:
    if len(segment) < 8:
        raise StreamHeaderError(f"SOF 0xFF{marker:02X} segment of {len(segment)} bytes, need 8")
    _, precision, rows, columns, components = struct.unpack_from(">HBHHB", segment)
    if rows == 0 or columns == 0 or components == 0:
        raise StreamHeaderError(
            f"SOF 0xFF{marker:02X} declares {rows} lines x {columns} samples x {components} "
            "components (a height from a DNL marker is not supported)"
        )
    codec = "jpeg-ls" if marker == 0xF7 else "jpeg"
    return StreamHeader(codec, rows, columns, components, precision, marker)


def read_jpeg2000_header(frame: bytes) -> StreamHeader:
    """The SIZ marker segment of a JPEG 2000 / HTJ2K codestream (or of the first
    contiguous codestream box of a JP2 file).

    Image size is Xsiz - XOsiz by Ysiz - YOsiz (15444-1 B.2); precision is
    (Ssiz & 0x7F) + 1 of the deepest component.
    """
    if frame.startswith(_JP2_SIGNATURE):
        frame = _jp2_codestream(frame)
    if frame[:2] != _J2K_SOC or frame[2:4] != _J2K_SIZ:
        raise StreamHeaderError(
            f"JPEG 2000 codestream does not start with SOC, SIZ: {frame[:4].hex()}"
        )
    if len(frame) < 4 + 38:
        raise StreamHeaderError(f"JPEG 2000 codestream of {len(frame)} bytes ends inside SIZ")
    length, _, xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">HHLLLL", frame, 4)
    (components,) = struct.unpack_from(">H", frame, 4 + 36)
    if components == 0 or length != 38 + 3 * components or len(frame) < 4 + length:
        raise StreamHeaderError(f"JPEG 2000 SIZ declares {components} components in {length} bytes")
    if xsiz <= xosiz or ysiz <= yosiz:
        raise StreamHeaderError(
            f"JPEG 2000 SIZ: image area {xsiz} x {ysiz} starts at {xosiz}, {yosiz}"
        )
    sizes = frame[4 + 38 : 4 + 38 + 3 * components : 3]
    precision = max((ssiz & 0x7F) + 1 for ssiz in sizes)
    signed = any(ssiz & 0x80 for ssiz in sizes)
    return StreamHeader("jpeg2000", ysiz - yosiz, xsiz - xosiz, components, precision, 0x51, signed)


def _jp2_codestream(data: bytes) -> bytes:
    """The content of the first ``jp2c`` box of a JP2 file (15444-1 I.4: LBox, TBox,
    XLBox when LBox is 1, to the end of the file when LBox is 0)."""
    pos = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">L4s", data, pos)
        header = 8
        if length == 1:
            if pos + 16 > len(data):
                break
            (length,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif length == 0:
            length = len(data) - pos
        if length < header:
            raise StreamHeaderError(f"JP2 box {kind!r} at byte {pos} declares {length} bytes")
        if kind == b"jp2c":
            return data[pos + header : pos + length]
        pos += length
    raise StreamHeaderError("JP2 file without a contiguous codestream (jp2c) box")


def read_rle_header(frame: bytes) -> RLEHeader:
    """The RLE header (PS3.5 G.5): segments in 1..15, the first at offset 64, the
    others increasing and inside the frame, the unused ones zero."""
    if len(frame) < _RLE_HEADER_LENGTH:
        raise StreamHeaderError(f"RLE frame of {len(frame)} bytes is shorter than its header")
    segments, *offsets = struct.unpack_from("<16L", frame)
    if not 1 <= segments <= _RLE_MAX_SEGMENTS:
        raise StreamHeaderError(f"RLE header declares {segments} segments, expected 1 to 15")
    used, unused = offsets[:segments], offsets[segments:]
    if used[0] != _RLE_HEADER_LENGTH:
        raise StreamHeaderError(f"RLE segment 1 starts at byte {used[0]}, expected 64")
    ends = [*used[1:], len(frame)]
    for number, (start, end) in enumerate(zip(used, ends, strict=True), start=1):
        if not start < end <= len(frame):
            raise StreamHeaderError(
                f"RLE segment {number} spans bytes {start} to {end} of a {len(frame)}-byte frame"
            )
    if any(unused):
        raise StreamHeaderError(f"RLE header: offsets past segment {segments} are not zero")
    return RLEHeader(segments, tuple(used))


def stream_header(frame: bytes, transfer_syntax_uid: str) -> StreamHeader | RLEHeader | None:
    """The stream header of one encapsulated frame; ``None`` for a syntax without one
    that is read here (native syntaxes, MPEG, deflated image frames...)."""
    syntax = str(transfer_syntax_uid)
    if syntax in _JPEG_SYNTAXES:
        return read_jpeg_header(frame)
    if syntax in _JPEG2000_SYNTAXES:
        return read_jpeg2000_header(frame)
    if syntax == _RLE_SYNTAX:
        return read_rle_header(frame)
    return None


def check_frame(
    frame: bytes,
    transfer_syntax_uid: str,
    rows: int,
    columns: int,
    samples: int,
    bits_allocated: int,
) -> StreamHeader | RLEHeader | None:
    """Compare one encapsulated frame's stream header with the DICOM header, before decoding.

    ``rows``, ``columns``, ``samples``, ``bits_allocated``: (0028,0010) *Rows*,
    (0028,0011) *Columns*, (0028,0002) *Samples per Pixel*, (0028,0100) *Bits Allocated*.
    JPEG family and JPEG 2000: the stream's rows, columns and components must equal
    them, and its precision must fit in Bits Allocated; a JPEG or JPEG-LS stream must end
    with its EOI marker (:class:`StreamTruncated` otherwise). RLE: the segment count must be
    Samples per Pixel x bytes per sample (PS3.5 G.2). Returns the stream header
    (``None`` where :func:`stream_header` reads none).

    Raises :class:`StreamMismatch` (``larger`` when the stream would decode to more
    samples than the DICOM header allows) or :class:`StreamHeaderError`.
    """
    header = stream_header(frame, transfer_syntax_uid)
    if isinstance(header, RLEHeader):
        expected = samples * -(-bits_allocated // 8)
        if header.segments != expected:
            raise StreamMismatch(
                f"RLE frame has {header.segments} segments, Samples per Pixel {samples} x "
                f"Bits Allocated {bits_allocated} need {expected}",
                larger=header.segments > expected,
            )
    elif header is not None:
        if header.codec != "jpeg2000" and _EOI_MARKER not in frame[-_EOI_WINDOW:]:
            raise StreamTruncated(
                f"{header.codec} stream of {len(frame):,} bytes ends without its EOI marker "
                "(FFD9): it was cut short"
            )
        declared = (header.rows, header.columns, header.components)
        if declared != (rows, columns, samples) or header.precision > bits_allocated:
            raise StreamMismatch(
                f"{header.codec} stream declares {header.rows} x {header.columns} x "
                f"{header.components} components at {header.precision} bits; the DICOM header "
                f"says {rows} x {columns} x {samples} in {bits_allocated}-bit samples",
                larger=header.samples > rows * columns * samples
                or header.precision > bits_allocated,
            )
    return header
