"""Reduced-resolution JPEG 2000 decoding: stop the inverse wavelet before the finest levels.

A JPEG 2000 codestream (PS3.5 A.4.4, ISO/IEC 15444-1) holds the image as a wavelet
pyramid of ``levels`` decomposition levels. A decoder asked to discard ``r`` of them
outputs the low-pass band of level ``r``: an image of ``ceil(Rows / 2**r)`` x
``ceil(Columns / 2**r)`` whose values are low-pass (LeGall 5/3 or CDF 9/7) averages of
the stored values, on the same value scale, and it never entropy-decodes the ``r``
finest levels (3/4 of the coefficients each). A 2000 x 2500 radiograph that
preprocessing shrinks to 512 px anyway decodes at ``r = 2`` (500 x 625) about 15
times faster than at full resolution.

Of the installed decoders only Pillow's openjpeg binding exposes openjpeg's reduce
factor (pylibjpeg-openjpeg 2.6 and gdcm do not); Pillow is imported on first use, and
without it (or without its openjpeg) :func:`can_reduce` is false. This module takes
codestream bytes and returns stored values; it never opens a file. Only
single-component (greyscale) codestreams without image offset or subsampling are
reduced; for anything else :func:`decode_reduced` returns ``None`` and the caller
decodes at full resolution.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from functools import cache
from io import BytesIO

import numpy as np
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
)

__all__ = ["Codestream", "can_reduce", "decode_reduced", "read_codestream", "reduction_level"]

logger = logging.getLogger(__name__)

_J2K_SYNTAXES = frozenset({JPEG2000Lossless, JPEG2000})
# High-Throughput JPEG 2000 (PS3.5 A.4.11): openjpeg decodes it from version 2.5.0.
_HTJ2K_SYNTAXES = frozenset({HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K})
_SOC, _SIZ, _COD, _COC, _SOT, _EOC = 0xFF4F, 0xFF51, 0xFF52, 0xFF53, 0xFF90, 0xFFD9
# What Pillow and openjpeg raise for a codestream they cannot decode at a reduced level
# (Image.DecompressionBombError is an Exception: it is caught where Pillow is imported).
_PILLOW_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


@dataclass(frozen=True)
class Codestream:
    """The main-header values of a JPEG 2000 codestream that reduced decoding depends on.

    From the SIZ marker: ``rows``/``columns`` (Ysiz - YOsiz, Xsiz - XOsiz),
    ``has_offset`` (XOsiz or YOsiz non-zero), ``components`` (Csiz), ``precision``
    and ``signed`` (of the first component's Ssiz), ``subsampled`` (any XRsiz/YRsiz
    other than 1); from COD (and any COC): ``levels``, the fewest decomposition
    levels of any component.
    """

    rows: int
    columns: int
    has_offset: bool
    components: int
    precision: int
    signed: bool
    subsampled: bool
    levels: int


@cache
def can_reduce(syntax: str) -> bool:
    """Whether ``syntax`` is JPEG 2000 (or HTJ2K) and Pillow's openjpeg can decode it."""
    if syntax not in _J2K_SYNTAXES and syntax not in _HTJ2K_SYNTAXES:
        return False
    try:
        from PIL import features
    except ImportError:  # Pillow is optional: without it everything decodes in full
        return False
    if not features.check_codec("jpg_2000"):
        return False
    if UID(syntax) in _HTJ2K_SYNTAXES:
        version = features.version_codec("jpg_2000") or "0"
        return tuple(int(part) for part in version.split(".")[:2]) >= (2, 5)
    return True


def read_codestream(data: bytes) -> Codestream:
    """Parse the main header (SOC up to the first SOT) of a raw JPEG 2000 codestream.

    Raises ``ValueError`` for data that does not start with SOC and SIZ (a JP2 file
    wrapper included) or whose main header is cut short or lacks a COD marker.
    """
    if len(data) < 4 or struct.unpack_from(">HH", data) != (_SOC, _SIZ):
        raise ValueError("not a JPEG 2000 codestream (no SOC and SIZ marker)")
    position, siz, levels = 2, b"", None
    try:
        while True:
            marker, length = struct.unpack_from(">HH", data, position)
            segment = data[position + 4 : position + 2 + length]
            if marker in (_SOT, _EOC) or len(segment) != length - 2:
                break
            if marker == _SIZ:
                siz = segment
            elif marker == _COD:
                levels = segment[5] if levels is None else min(levels, segment[5])
            elif marker == _COC and siz:
                # Ccoc is 1 byte with fewer than 257 components, else 2 (ISO 15444-1 A.6.2).
                offset = 1 if struct.unpack_from(">H", siz, 34)[0] < 257 else 2
                coc_levels = segment[offset + 1]
                levels = coc_levels if levels is None else min(levels, coc_levels)
            position += 2 + length
    except (struct.error, IndexError):
        raise ValueError("the JPEG 2000 main header is cut short") from None
    if len(siz) < 39 or levels is None:
        raise ValueError("the JPEG 2000 main header has no complete SIZ and COD markers")
    _, xsiz, ysiz, xosiz, yosiz, _, _, _, _, csiz = struct.unpack_from(">HIIIIIIIIH", siz)
    # Per component: Ssiz (sign bit, precision - 1), XRsiz, YRsiz.
    per_component = [siz[36 + 3 * k : 39 + 3 * k] for k in range(csiz)]
    ssiz = siz[36]
    return Codestream(
        rows=ysiz - yosiz,
        columns=xsiz - xosiz,
        has_offset=bool(xosiz or yosiz),
        components=csiz,
        precision=(ssiz & 0x7F) + 1,
        signed=bool(ssiz & 0x80),
        subsampled=any(component[1:] != b"\x01\x01" for component in per_component),
        levels=levels,
    )


def reduction_level(rows: int, columns: int, levels: int, min_long_side: int) -> int:
    """The largest ``r <= levels`` with ``ceil(max(rows, columns) / 2**r) >= min_long_side``.

    0 when even one level would bring the long side under ``min_long_side``.
    """
    long_side, level = max(rows, columns), 0
    while level < levels and -(-long_side // (2 << level)) >= min_long_side:
        level += 1
    return level


def decode_reduced(
    data: bytes,
    min_long_side: int,
    *,
    rows: int,
    columns: int,
    bits_stored: int,
    signed: bool,
) -> np.ndarray | None:
    """Decode one greyscale codestream at the coarsest level whose long side is still
    at least ``min_long_side``; return its stored values, or ``None`` to mean "decode
    it at full resolution instead".

    The result is ``(ceil(rows / 2**r), ceil(columns / 2**r))`` integers (uint8/16,
    int8/16 when ``signed``) on the scale of the stored values. ``None`` when no level
    can be dropped, when the codestream disagrees with the data set's ``rows``,
    ``columns``, (0028,0101) *Bits Stored* or (0028,0103) *Pixel Representation*
    (``signed``), when it is not one unsubsampled component without image offset, or
    when Pillow fails on it (logged at debug level).
    """
    try:
        stream = read_codestream(data)
    except ValueError as exc:
        logger.debug("full-resolution JPEG 2000 decode: %s", exc)
        return None
    level = reduction_level(rows, columns, stream.levels, min_long_side)
    if (
        level == 0
        or (stream.rows, stream.columns) != (rows, columns)
        or (stream.precision, stream.signed) != (bits_stored, signed)
        or stream.components != 1
        or stream.has_offset
        or stream.subsampled
        or stream.precision > 16
    ):
        return None
    from PIL import Image

    try:
        return _pillow_decode(data, level, stream)
    except (*_PILLOW_ERRORS, Image.DecompressionBombError) as exc:
        logger.debug("reduced JPEG 2000 decode failed, decoding at full resolution: %s", exc)
        return None


def _pillow_decode(data: bytes, level: int, stream: Codestream) -> np.ndarray:
    from PIL import Image

    power = 1 << level
    shape = (-(-stream.rows // power), -(-stream.columns // power))
    with Image.open(BytesIO(data), formats=("JPEG2000",)) as image:
        image.reduce = level
        # Pillow sizes a reduced image round(size / 2**r) but openjpeg fills
        # ceil(size / 2**r) (ISO 15444-1 B.5), and Pillow rejects a tile larger than
        # its image ("broken data stream") for the sizes where the two differ:
        # announcing a multiple of 2**r makes Pillow's rounding land on openjpeg's size.
        image._size = (shape[1] * power, shape[0] * power)
        image.load()
        stored = np.array(image)
    if stored.shape != shape:
        raise ValueError(f"Pillow decoded {stored.shape} at level {level}, expected {shape}")
    # Pillow widens N-bit samples to its 8- or 16-bit mode: v -> (v + offset) << shift,
    # offset 2**(N-1) for signed samples (Pillow's Jpeg2KDecode.c, j2ku_gray_*).
    shift = stored.dtype.itemsize * 8 - stream.precision
    if shift:
        stored >>= shift
    if not stream.signed:
        return stored
    signed = stored.astype(np.int32) - (1 << (stream.precision - 1))
    return signed.astype(np.int8 if stored.dtype.itemsize == 1 else np.int16)
