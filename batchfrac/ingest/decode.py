"""The **decode** stage: the pixel data of one file -> grey frames ready for preprocessing.

:func:`decode` returns one 2-D float32 image in ``[0, 1]`` per frame, in display
orientation (rows top to bottom, columns left to right, as stored: nothing is
flipped) with bone bright. The display transforms live in :mod:`batchfrac.ingest.display`;
this module handles the file: the size cap, the transfer syntax and its plugins,
missing and truncated pixel data, and the multi-frame policy.

Decoding itself is pydicom's (``Decoder.iter_array``), which runs an installed plugin
(pylibjpeg, gdcm, pyjpegls, pillow) for the transfer syntax and converts YBR_FULL /
YBR_FULL_422 to RGB. Where the plugins differ in speed, :data:`PREFERRED_PLUGINS` names
the fastest measured on radiographs (``benchmarks/decode.py``): CharLS (pyjpegls) for
JPEG-LS, libjpeg-turbo (:mod:`batchfrac.ingest.ljpeg`) for greyscale lossless JPEG; if it is
missing or fails, pydicom's own order runs. With ``DecodePolicy.min_long_side`` set,
greyscale JPEG 2000 frames much larger than that are decoded at a reduced wavelet level
by :mod:`batchfrac.ingest.j2k` (falling back to pydicom on any failure).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import islice
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import Decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
)

from ..enums import Reason
from ..errors import FileRejected
from ..records import DicomHeader
from . import j2k
from .display import to_display
from .plugins import pixel_decoder, preferred_plugin

__all__ = ["DecodePolicy", "FramePolicy", "decode"]

# What pydicom and its plugins raise for pixel data they cannot decode (pydicom's
# own "all plugins failed" RuntimeError lists each plugin's message).
_DECODER_ERRORS = (ValueError, RuntimeError, NotImplementedError, struct.error)
# What dcmread raises for a file that turned bad after the header stage read it.
_READ_ERRORS = (InvalidDicomError, EOFError, struct.error, zlib.error, ValueError)
# The Image Pixel module attributes decoding cannot do without (PS3.3 C.7.6.3, type 1).
_REQUIRED = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
)
# (7FE0,0010) OB with undefined length, explicit VR little endian: the start of
# encapsulated (compressed) pixel data (PS3.5 A.4).
_ENCAPSULATED_PIXEL_DATA = (
    b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff",
    b"\xe0\x7f\x10\x00OW\x00\x00\xff\xff\xff\xff",
)


class FramePolicy(str, Enum):
    """Which frames of a multi-frame image are decoded.

    Every decoded frame becomes its own image row (``ImageResult.frame`` is its
    0-based index). ``all``: every frame; ``first``: frame 0 only (cheaper on
    archives that store cine-like multi-frame radiographs).
    """

    ALL = "all"
    FIRST = "first"


@dataclass(frozen=True)
class DecodePolicy:
    """Limits and choices for :func:`decode`.

    ``max_pixels`` caps Rows x Columns x decoded frames x Samples per Pixel. It is
    checked from the header before any pixel data is read, because compressed
    syntaxes allocate the whole output up front: one hostile or broken header
    (65535 x 65535 x 1000 frames) must not exhaust a worker's memory. ``frames``
    is a :class:`FramePolicy` value.

    ``min_long_side``: decoders may return a smaller image whose long side is still
    at least this many pixels (``None``: always full resolution). Only JPEG 2000 and
    HTJ2K greyscale frames use it, by dropping wavelet levels (:mod:`batchfrac.ingest.j2k`);
    every other syntax ignores it. Set it to the size preprocessing shrinks to
    anyway, so no detail it keeps is lost.
    """

    max_pixels: int = 64_000_000
    frames: str = FramePolicy.ALL
    min_long_side: int | None = None

    def __post_init__(self) -> None:
        if self.max_pixels <= 0:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.min_long_side is not None and self.min_long_side <= 0:
            raise ValueError(f"min_long_side must be positive, got {self.min_long_side}")
        try:
            frames = FramePolicy(self.frames)
        except ValueError:
            choices = ", ".join(policy.value for policy in FramePolicy)
            raise ValueError(f"frames must be one of {choices}, got {self.frames!r}") from None
        object.__setattr__(self, "frames", frames)


def decode(
    path: Path, header: DicomHeader, policy: DecodePolicy = DecodePolicy()
) -> list[np.ndarray]:
    """Decode the pixel data of ``path`` into 2-D float32 images in ``[0, 1]``, bone bright.

    One image per decoded frame (see :class:`FramePolicy`). Per frame, in order:
    the modality LUT ((0028,3000) *Modality LUT Sequence*, or (0028,1053) *Rescale
    Slope* / (0028,1052) *Rescale Intercept*); the VOI LUT ((0028,3010) *VOI LUT
    Sequence*, or the first (0028,1050) *Window Center* / (0028,1051) *Window Width*
    with (0028,1056) *VOI LUT Function*), or without either the modality output
    range onto ``[0, 1]``; MONOCHROME1 inverted after VOI; RGB, YBR_FULL,
    YBR_FULL_422 and PALETTE COLOR reduced to BT.601 luma. See
    :mod:`batchfrac.ingest.display`.

    ``header`` is the file's :func:`batchfrac.ingest.header.read_header` record: its
    dimensions are checked against ``policy.max_pixels`` before the file is opened.
    Images are Rows x Columns, except greyscale JPEG 2000 with
    ``policy.min_long_side`` set, which may come back smaller (see
    :class:`DecodePolicy`).

    Raises
    ------
    FileRejected
        ``too_large``: over ``policy.max_pixels``; ``unsupported_transfer_syntax``:
        no installed plugin decodes the syntax (the detail lists each plugin's
        missing dependency); ``no_pixel_data``: no (7FE0,0010) *Pixel Data*;
        ``truncated``: less pixel data than the header announces; ``decode_error``:
        a plugin failed, or the image attributes are missing or inconsistent;
        ``read_error``: the file cannot be read.
    """
    frame_count = header.number_of_frames
    wanted = frame_count if policy.frames is FramePolicy.ALL else 1
    _check_size(header.rows, header.columns, wanted, header.samples_per_pixel, policy)
    if not header.transfer_syntax_uid:
        raise FileRejected(Reason.DECODE_ERROR, "no Transfer Syntax UID and unknown encoding")
    decoder = _decoder(UID(header.transfer_syntax_uid))  # rejected before reading the file
    ds = _read_dataset(path, header.has_preamble)
    _set_transfer_syntax(ds, decoder.UID)
    _require_pixel_data(ds, path, decoder)
    _check_image_pixel_module(ds)
    if decoder.is_native:
        _check_native_length(ds)
    if policy.min_long_side is not None:
        reduced = _reduced_frames(ds, decoder.UID, frame_count, wanted, policy.min_long_side)
        if reduced is not None:
            photometric = str(ds.PhotometricInterpretation)
            return [to_display(arr, ds, photometric) for arr in reduced]
    indices = None if wanted == frame_count else list(range(wanted))
    return [to_display(arr, ds, photometric) for arr, photometric in _frames(decoder, ds, indices)]


def _check_size(rows: int, columns: int, frames: int, samples: int, policy: DecodePolicy) -> None:
    pixels = rows * columns * frames * samples
    if pixels > policy.max_pixels:
        raise FileRejected(
            Reason.TOO_LARGE,
            f"Rows x Columns x Frames x Samples = {rows} x {columns} x {frames} x {samples}"
            f" = {pixels:,} pixels, over the limit of {policy.max_pixels:,}",
        )


def _decoder(syntax: UID) -> Decoder:
    """pydicom's decoder for ``syntax`` if an installed plugin can run it."""
    decoder, detail = pixel_decoder(syntax)
    if decoder is None:
        raise FileRejected(Reason.UNSUPPORTED_TRANSFER_SYNTAX, detail)
    return decoder


def _read_dataset(path: Path, has_preamble: bool) -> Dataset:
    try:
        return dcmread(path, force=not has_preamble)
    except OSError as exc:
        raise FileRejected(Reason.READ_ERROR, str(exc)) from exc
    except _READ_ERRORS as exc:
        raise FileRejected(Reason.DECODE_ERROR, f"unreadable data set: {exc}") from exc


def _set_transfer_syntax(ds: Dataset, syntax: UID) -> None:
    """Give a file without File Meta Information the syntax its header was read in
    (``DicomHeader.transfer_syntax_uid``): pydicom's decoders look for it there."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if not meta.get("TransferSyntaxUID"):
        meta.TransferSyntaxUID = syntax


def _check_image_pixel_module(ds: Dataset) -> None:
    missing = [keyword for keyword in _REQUIRED if ds.get(keyword) in (None, "")]
    if missing:
        names = ", ".join(f"{Tag(k)} {k}" for k in missing)
        raise FileRejected(Reason.DECODE_ERROR, f"missing Image Pixel attributes: {names}")


def _require_pixel_data(ds: Dataset, path: Path, decoder: Decoder) -> None:
    if "PixelData" in ds:
        return
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise FileRejected(Reason.DECODE_ERROR, "float pixel data is not supported")
    if decoder.is_encapsulated and _starts_encapsulated_pixel_data(path):
        # pydicom drops the data set it was reading (with a warning) when an
        # undefined-length element runs into the end of the file.
        raise FileRejected(
            Reason.TRUNCATED, "the file ends inside the encapsulated (7FE0,0010) Pixel Data"
        )
    raise FileRejected(Reason.NO_PIXEL_DATA, "no (7FE0,0010) Pixel Data element")


def _check_native_length(ds: Dataset) -> None:
    expected, actual = get_expected_length(ds, "bytes"), len(ds.PixelData)
    if actual < expected:
        raise FileRejected(
            Reason.TRUNCATED,
            f"Pixel Data holds {actual} bytes, the image attributes need {expected}",
        )


def _starts_encapsulated_pixel_data(path: Path) -> bool:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise FileRejected(Reason.READ_ERROR, str(exc)) from exc
    return any(marker in content for marker in _ENCAPSULATED_PIXEL_DATA)


def _frames(
    decoder: Decoder, ds: Dataset, indices: Sequence[int] | None
) -> list[tuple[np.ndarray, str]]:
    """``(stored values, photometric interpretation as decoded)`` per frame: with the
    preferred plugin if there is one, else (or if it fails) in pydicom's plugin order."""
    plugin = preferred_plugin(decoder, int(ds.SamplesPerPixel))
    if plugin:
        try:
            return list(_decoded(decoder, ds, indices, plugin))
        except FileRejected:
            pass  # pydicom's order below gives the error worth reporting, if any
    return list(_decoded(decoder, ds, indices, ""))


def _decoded(
    decoder: Decoder, ds: Dataset, indices: Sequence[int] | None, plugin: str
) -> Iterator[tuple[np.ndarray, str]]:
    frames = decoder.iter_array(ds, indices=indices, as_rgb=True, decoding_plugin=plugin)
    while True:
        try:
            arr, properties = next(frames)
        except StopIteration:
            return
        except _DECODER_ERRORS as exc:
            raise FileRejected(
                Reason.DECODE_ERROR, f"{decoder.UID.name}: {exc}".replace("\n", " ")
            ) from exc
        yield arr, str(properties["photometric_interpretation"])


def _reduced_frames(
    ds: Dataset, syntax: UID, frame_count: int, count: int, min_long_side: int
) -> list[np.ndarray] | None:
    """The first ``count`` of ``frame_count`` frames' stored values at a reduced JPEG
    2000 level, or ``None`` when the file does not qualify or any frame fails (then
    the caller decodes it in full)."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    if (
        -(-max(rows, columns) // 2) < min_long_side  # not even one level can be dropped
        or not j2k.can_reduce(syntax)
        or int(ds.SamplesPerPixel) != 1
        or str(ds.PhotometricInterpretation).strip() not in ("MONOCHROME1", "MONOCHROME2")
    ):
        return None
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    signed = int(ds.PixelRepresentation) == 1
    frames = generate_frames(ds.PixelData, number_of_frames=frame_count, extended_offsets=offsets)
    out = []
    try:
        for codestream in islice(frames, count):
            arr = j2k.decode_reduced(
                codestream,
                min_long_side,
                rows=rows,
                columns=columns,
                bits_stored=int(ds.BitsStored),
                signed=signed,
            )
            if arr is None:
                return None
            out.append(arr)
    except (ValueError, struct.error):  # fragments pydicom cannot split into frames
        return None
    return out if len(out) == count else None
