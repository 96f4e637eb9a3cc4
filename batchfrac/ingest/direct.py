"""Plain greyscale frames straight from their codec, as pydicom's ``as_array`` returns them.

Most radiographs are one unsigned MONOCHROME sample of 8 or 16 bits. For those, going
through ``Decoder.as_array`` costs a copy of the frame into an encapsulated buffer, a
parse of that buffer, a copy of the codec's output into a new array and a left and a
right shift over it: 4-7 ms of a 2000 x 2500 frame, 10% of an ingest. :func:`decode_plain`
calls the preferred plugin's codec on the frame's bytes itself and returns the values
``as_array`` would (tested bit for bit, and on values with junk in their unused high
bits): the codec's samples widened to Bits Allocated, and for the syntaxes where
pydicom corrects unused bits (all but JPEG-LS and JPEG 2000) those bits cleared, which
for unsigned samples is one ``&`` with the Bits Stored mask.

It is only a shortcut: it returns ``None`` for whatever it does not take (signed or
colour samples, big endian, 1 or 32 bits, a plugin it does not call directly, a codec
output of another size) and whenever its codec raises, so that
:class:`batchfrac.ingest.frames.FrameDecoder` decodes the frame through pydicom as before,
and the frame's outcome and the error reported never depend on this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from pydicom import uid

from . import ljpeg
from .capture import FATAL, native_stderr
from .image_pixel import ImagePixel

__all__ = ["CODECS", "decode_plain", "takes"]

logger = logging.getLogger(__name__)

#: The codec call of a plugin for a transfer syntax: frame bytes and pixel module in,
#: the decoded samples (any buffer, little endian) and their bytes per sample out.
Codec = Callable[[bytes, ImagePixel], tuple[object, int]]

_NATIVE_LITTLE_ENDIAN = frozenset(
    {uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian}
)
# pydicom sets ``correct_unused_bits`` for every syntax but these (DecodeRunner.__init__).
_UNUSED_BITS_KEPT = frozenset({*uid.JPEGLSTransferSyntaxes, *uid.JPEG2000TransferSyntaxes})


def _jpeg_ls(data: bytes, pixel: ImagePixel) -> tuple[object, int]:
    import jpeg_ls

    buffer, info = jpeg_ls.decode_pixel_data(data)
    if info["components"] != 1 or (info["height"], info["width"]) != (pixel.rows, pixel.columns):
        raise ValueError(f"the JPEG-LS stream is not one {pixel.rows} x {pixel.columns} component")
    return buffer, 1 if info["bits_per_sample"] <= 8 else 2


def _lossless_jpeg(data: bytes, pixel: ImagePixel) -> tuple[object, int]:
    arr = ljpeg.decode(data, pixel.rows, pixel.columns)
    return arr, arr.dtype.itemsize


def _rle(data: bytes, pixel: ImagePixel) -> tuple[object, int]:
    from rle.utils import decode_pixel_data

    frame = decode_pixel_data(
        data,
        version=2,
        rows=pixel.rows,
        columns=pixel.columns,
        bits_allocated=pixel.bits_allocated,
        samples_per_pixel=1,
    )
    return frame, pixel.bits_allocated // 8


#: (transfer syntax, plugin name) -> the codec that plugin calls, called directly.
CODECS: dict[tuple[str, str], Codec] = {
    **{(syntax, "pyjpegls"): _jpeg_ls for syntax in uid.JPEGLSTransferSyntaxes},
    **{(syntax, ljpeg.PLUGIN): _lossless_jpeg for syntax in ljpeg.SYNTAXES},
    (uid.RLELossless, "pylibjpeg"): _rle,
}


def takes(syntax: str, plugin: str, pixel: ImagePixel) -> bool:
    """Whether :func:`decode_plain` decodes frames of this syntax, first plugin and module
    (``plugin`` is ``""`` for native syntaxes)."""
    plain = (
        pixel.samples_per_pixel == 1
        and pixel.photometric_interpretation in ("MONOCHROME1", "MONOCHROME2")
        and pixel.pixel_representation == 0
        and pixel.bits_allocated in (8, 16)
    )
    if not plain:
        return False
    return syntax in _NATIVE_LITTLE_ENDIAN if not plugin else (syntax, plugin) in CODECS


def decode_plain(data: bytes, syntax: str, plugin: str, pixel: ImagePixel) -> np.ndarray | None:
    """The (Rows, Columns) stored values of one frame, or ``None`` (decode it through
    pydicom). Call it only where :func:`takes` is true. The array may be read-only."""
    shape = (pixel.rows, pixel.columns)
    allocated = pixel.bits_allocated // 8
    dtype = np.dtype(f"<u{allocated}")
    if not plugin:  # native little endian: the bytes are the samples
        if len(data) != pixel.rows * pixel.columns * allocated:
            return None
        arr = np.frombuffer(data, dtype).reshape(shape)
    else:
        try:
            with native_stderr():
                samples, size = CODECS[(syntax, plugin)](data, pixel)
            decoded = np.frombuffer(samples, f"<u{size}")  # type: ignore[call-overload]
        except FATAL:
            raise
        except BaseException as exc:  # noqa: BLE001 - pydicom's decode reports it properly
            logger.debug("direct %s decode failed, decoding through pydicom: %s", plugin, exc)
            return None
        if size > allocated or decoded.size != pixel.rows * pixel.columns:
            return None
        arr = (decoded if size == allocated else decoded.astype(dtype)).reshape(shape)
    if pixel.bits_stored < pixel.bits_allocated and syntax not in _UNUSED_BITS_KEPT:
        mask = dtype.type((1 << pixel.bits_stored) - 1)
        if arr.flags.writeable:
            np.bitwise_and(arr, mask, out=arr)
        else:
            arr = np.bitwise_and(arr, mask)
    return arr
