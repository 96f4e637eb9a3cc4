"""Memory bombs of issue 10: files that are small on disk (or sparse) but make a naive
reader allocate far more than their Rows x Columns say. Sizes come from
:class:`tests.hostile.HostileSizes`; every factory is cheap at any size (a constant
image compresses to almost nothing, zeros deflate about 1000:1, sparse files have holes).
"""

from __future__ import annotations

import copy
import zlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset as write_data_set
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGLSLossless

from tests.factories import gradient_image, make_image_dataset, write_dataset
from tests.hostile import ERROR, NOT_OK, OK_OR_ERROR, Hostile, radiograph
from tests.hostile_bytes import element, wrap_stream, write_sparse

__all__ = [
    "deflate_bomb",
    "huge_private_element",
    "many_tiny_frames",
    "stream_larger_than_header",
    "surplus_pixel_data",
]

_PRIVATE_CREATOR = 0x7FDF0010  # (7FDF,0010): a private block just before Pixel Data
_PRIVATE_ELEMENT = 0x7FDF1000
_CHUNK = 16 << 20


def stream_larger_than_header(directory: Path, side: int = 4096, header_side: int = 256) -> Hostile:
    """A constant 8-bit JPEG-LS stream of ``side`` x ``side`` (a few KB even at 24000)
    behind a ``header_side`` x ``header_side`` header: the decoder allocates side^2 bytes."""
    import imagecodecs

    # np.zeros pages are only mapped, never written: encoding 24000^2 costs ~30 MB RSS.
    stream = bytes(imagecodecs.jpegls_encode(np.zeros((side, side), np.uint8)))
    ds = make_image_dataset(
        np.zeros((header_side, header_side), np.uint8), bits_stored=8, BodyPartExamined="HAND"
    )
    path = write_dataset(wrap_stream(ds, JPEGLSLossless, [stream]), directory / f"jls-{side}.dcm")
    description = f"JPEG-LS stream of {side} x {side} behind a {header_side} x {header_side} header"
    return Hostile(path, description, frozenset({ERROR}))


def deflate_bomb(directory: Path, size: int = 48 << 20) -> Hostile:
    """A deflated data set (1.2.840.10008.1.2.1.99) whose private (7FDF,1000) OB element
    holds ``size`` zero bytes: the file is about size / 1000 bytes."""
    ds = radiograph()
    head, tail = _split_at_pixel_data(ds)
    path = directory / f"deflate-bomb-{size}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = memoryview(bytes(_CHUNK))
    with open(path, "wb") as fp:
        fp.write(_preamble_and_meta(ds, DeflatedExplicitVRLittleEndian))
        fp.write(compressor.compress(head + element(_PRIVATE_ELEMENT, "OB", b"", size)))
        for start in range(0, size, _CHUNK):
            fp.write(compressor.compress(zeros[: min(_CHUNK, size - start)]))
        fp.write(compressor.compress(tail))
        fp.write(compressor.flush())
    description = f"deflated data set with a {size:,}-byte private element"
    return Hostile(path, description, OK_OR_ERROR)


def huge_private_element(directory: Path, size: int = 48 << 20) -> Hostile:
    """A valid image with a private (7FDF,1000) OB element of ``size`` bytes (a sparse hole)."""
    ds = radiograph()
    head, tail = _split_at_pixel_data(ds)
    path = write_sparse(
        directory / f"private-element-{size}.dcm",
        _preamble_and_meta(ds, ExplicitVRLittleEndian)
        + head
        + element(_PRIVATE_ELEMENT, "OB", b"", size),
        size,
        tail,
    )
    return Hostile(path, f"a {size:,}-byte private element before Pixel Data", OK_OR_ERROR)


def surplus_pixel_data(directory: Path, size: int = 16 << 20) -> Hostile:
    """One 256 x 200 16-bit frame (102,400 bytes) followed by ``size`` more pixel bytes.

    (0028,0008) *Number of Frames* is absent (1); pydicom's default
    ``allow_excess_frames=True`` returns size / 102,400 phantom frames (4096 at 400 MiB).
    """
    ds = radiograph(256, 200)
    frame = ds.PixelData
    head, _ = _split_at_pixel_data(ds)
    pixel_element = element(0x7FE00010, "OW", b"", len(frame) + size)
    path = write_sparse(
        directory / f"surplus-pixel-data-{size}.dcm",
        _preamble_and_meta(ds, ExplicitVRLittleEndian) + head + pixel_element + frame,
        size,
    )
    description = f"single 256 x 200 frame followed by {size:,} bytes of surplus pixel data"
    return Hostile(path, description, OK_OR_ERROR, ok_rows=1)


def many_tiny_frames(directory: Path, frames: int = 2000, side: int = 8) -> Hostile:
    """``frames`` frames of ``side`` x ``side``: too small to screen, each one."""
    pixels = np.stack([gradient_image(side, side, 12) + f % 7 for f in range(frames)])
    ds = make_image_dataset(pixels, BodyPartExamined="HAND")
    path = write_dataset(ds, directory / f"tiny-frames-{frames}x{side}x{side}.dcm")
    return Hostile(path, f"{frames} frames of {side} x {side}", NOT_OK)


def _split_at_pixel_data(ds: Dataset) -> tuple[bytes, bytes]:
    """The data set's elements before (7FE0,0010) *Pixel Data* (plus a private creator
    for (7FDF,10xx)), and the Pixel Data element, both Explicit VR Little Endian."""
    body = copy.deepcopy(ds)
    del body.file_meta
    pixel_data = body.PixelData
    del body.PixelData
    body.add_new(_PRIVATE_CREATOR, "LO", "BATCHFRAC HOSTILE")
    return _encode(body), element(0x7FE00010, "OW", pixel_data)


def _encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_set(fp, ds)
    return fp.getvalue()


def _preamble_and_meta(ds: Dataset, syntax: str) -> bytes:
    meta = copy.deepcopy(ds.file_meta)
    meta.TransferSyntaxUID = syntax
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()
