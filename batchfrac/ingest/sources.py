"""Where one file's frames come from: the bytes of one frame at a time, nothing else.

:func:`open_pixel_source` reads the header again (values over the defer size left in
the file; a deflated data set inflated as a stream, :mod:`batchfrac.ingest.deflated`),
finds the (7FE0,0010) *Pixel Data* element after it, validates the Image Pixel module
(:mod:`batchfrac.ingest.image_pixel`) and checks the value against it:

- native pixel data must hold Number of Frames frames; bytes past the last one are
  counted (:attr:`PixelSource.surplus`) and never read, so they cannot become frames;
- encapsulated pixel data must reach its Sequence Delimitation Item inside the file
  (only the 8-byte item headers are read for that).

:meth:`PixelSource.frames` then yields each wanted frame's bytes in order: a native
frame read at its offset, an encapsulated frame's fragments joined by pydicom's
``generate_frames`` from the open file, at most :data:`ENCODED_FRAME_SLACK` bytes more
than twice its decoded size (a codestream larger than that is no image).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from ..enums import Reason
from ..errors import FileRejected
from .bounded_io import (
    DeflatedStreamError,
    InflateLimitExceeded,
    PixelDataMissing,
    PixelDataTruncated,
    PixelDataValue,
    count_encapsulated_items,
    read_header_and_locate,
    read_pixel_data_element,
)
from .capture import describe
from .deflated import InflatingReader, read_deflated_header
from .image_pixel import ImagePixel, attribute_value, read_image_pixel

__all__ = ["ENCODED_FRAME_SLACK", "PixelSource", "open_pixel_source"]

#: An encoded frame may hold twice its decoded size plus this many bytes.
ENCODED_FRAME_SLACK = 1 << 20
_FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)
# What pydicom raises reading a data set that turned bad after the header stage read it.
_READ_ERRORS = (
    InvalidDicomError,
    EOFError,
    struct.error,
    ValueError,
    KeyError,
    TypeError,
    BytesLengthException,
    RecursionError,
)


class _FrameTooLarge(Exception):
    pass


class PixelSource:
    """One open file's pixel data, read frame by frame (close it when done).

    ``dataset``: the header (everything before the pixel data), for the display
    attributes; ``pixel``: its validated Image Pixel module; ``where``: the pixel data
    value; ``surplus``: native bytes past the last declared frame (0 when none).
    """

    def __init__(
        self,
        dataset: Dataset,
        pixel: ImagePixel,
        where: PixelDataValue,
        syntax: UID,
        reader: Any,
        file: BinaryIO,
    ) -> None:
        self.dataset = dataset
        self.pixel = pixel
        self.where = where
        self.syntax = syntax
        self.surplus = 0
        self._reader = reader  # the open file, or an InflatingReader over it
        self._file = file

    def frames(self, count: int) -> Iterator[bytes]:
        """The bytes of frames ``0 .. count - 1`` in order (a native frame exactly
        :func:`native_frame_length` bytes, an encapsulated one its codestream)."""
        if self.syntax.is_encapsulated:
            return self._encapsulated_frames(count)
        return self._native_frames(count)

    def close(self) -> None:
        """Close the file (and drop an inflating stream's buffer)."""
        if isinstance(self._reader, InflatingReader):
            self._reader.close()
        self._file.close()

    def __enter__(self) -> PixelSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _native_frames(self, count: int) -> Iterator[bytes]:
        length = native_frame_length(self.pixel)
        for index in range(count):
            try:
                self._reader.seek(self.where.offset + index * length)
                data = self._reader.read(length)
            except DeflatedStreamError as exc:
                raise FileRejected(Reason.TRUNCATED, f"frame {index}: {exc}") from exc
            except InflateLimitExceeded as exc:
                raise FileRejected(Reason.TOO_LARGE, f"frame {index}: {exc}") from exc
            except OSError as exc:
                raise FileRejected(Reason.READ_ERROR, f"frame {index}: {describe(exc)}") from exc
            if len(data) < length:
                raise FileRejected(Reason.TRUNCATED, f"the file ends inside frame {index}")
            yield data

    def _encapsulated_frames(self, count: int) -> Iterator[bytes]:
        budget = 2 * self.pixel.frame_bytes + ENCODED_FRAME_SLACK
        reader = _BudgetReader(self._reader, self.where, budget)
        frames = generate_frames(
            reader,  # read/seek/tell are all it calls
            number_of_frames=self.pixel.number_of_frames,
            extended_offsets=_extended_offsets(self.dataset, self.pixel.number_of_frames),
            endianness="<" if self.where.is_little_endian else ">",
        )
        for index in range(count):
            reader.used = 0
            try:
                frame = next(frames, None)
            except _FrameTooLarge as exc:
                raise FileRejected(Reason.TOO_LARGE, f"frame {index}: {exc}") from exc
            except OSError as exc:
                raise FileRejected(Reason.READ_ERROR, f"frame {index}: {describe(exc)}") from exc
            except (ValueError, struct.error, EOFError) as exc:
                detail = f"encapsulated frame {index}: {describe(exc)}"
                raise FileRejected(Reason.DECODE_ERROR, detail) from exc
            if frame is None:
                raise FileRejected(
                    Reason.DECODE_ERROR,
                    f"the encapsulated pixel data holds {index} frames, "
                    f"(0028,0008) Number of Frames says {self.pixel.number_of_frames}",
                )
            yield frame


def open_pixel_source(path: Path, has_preamble: bool, syntax: UID) -> PixelSource:
    """Open ``path`` and check its pixel data against its Image Pixel module, reading no
    frame. ``syntax``: the transfer syntax the header stage found. The file stays open
    for :meth:`PixelSource.frames`: use the source as a context manager.

    Raises ``FileRejected``: ``no_pixel_data``, ``truncated`` (the value or the file ends
    before the frames it must hold), ``too_large`` (a deflated data set past its inflate
    limit), ``read_error`` (``OSError``), ``decode_error`` (an unreadable data set, float
    pixel data, an Image Pixel module :func:`read_image_pixel` rejects).
    """
    try:
        fp = open(path, "rb")
    except OSError as exc:
        raise FileRejected(Reason.READ_ERROR, describe(exc)) from exc
    try:
        return _checked(_read(fp, path.name, has_preamble, syntax), fp)
    except BaseException:
        fp.close()
        raise


def native_frame_length(pixel: ImagePixel) -> int:
    """Bytes per native frame (PS3.5 8.1.1): YBR_FULL_422 stores two samples a pixel
    (PS3.3 C.7.6.3.1.2); 1-bit frames are packed, so only whole bytes are framed."""
    samples = 2 if pixel.photometric_interpretation == "YBR_FULL_422" else pixel.samples_per_pixel
    bits = pixel.rows * pixel.columns * samples * pixel.bits_allocated
    if bits % 8 and pixel.number_of_frames > 1:
        raise FileRejected(
            Reason.DECODE_ERROR, "1-bit frames that do not end on a byte are not supported"
        )
    return -(-bits // 8)


def _read(fp: BinaryIO, name: str, has_preamble: bool, syntax: UID) -> PixelSource:
    try:
        if syntax == DeflatedExplicitVRLittleEndian:
            ds, stream = read_deflated_header(fp, force=not has_preamble)
            where = read_pixel_data_element(stream, True, name)
            reader: Any = stream
        else:
            ds, where = read_header_and_locate(fp, force=not has_preamble)
            reader = fp
    except PixelDataMissing as exc:
        raise FileRejected(Reason.NO_PIXEL_DATA, "no (7FE0,0010) Pixel Data element") from exc
    except (PixelDataTruncated, DeflatedStreamError) as exc:
        raise FileRejected(Reason.TRUNCATED, str(exc)) from exc
    except InflateLimitExceeded as exc:
        raise FileRejected(Reason.TOO_LARGE, str(exc)) from exc
    except OSError as exc:
        raise FileRejected(Reason.READ_ERROR, describe(exc)) from exc
    except _READ_ERRORS as exc:
        raise FileRejected(Reason.DECODE_ERROR, f"unreadable data set: {describe(exc)}") from exc
    if where.tag in _FLOAT_PIXEL_DATA:
        raise FileRejected(Reason.DECODE_ERROR, "float pixel data is not supported")
    pixel = read_image_pixel(ds)
    return PixelSource(ds, pixel, where, syntax, reader, fp)


def _checked(source: PixelSource, fp: BinaryIO) -> PixelSource:
    """``source`` with its surplus counted, once its value is known to hold its frames."""
    where, pixel = source.where, source.pixel
    if source.syntax.is_encapsulated:
        try:
            count_encapsulated_items(fp, where, os.fstat(fp.fileno()).st_size)
        except PixelDataTruncated as exc:
            raise FileRejected(Reason.TRUNCATED, str(exc)) from exc
        except ValueError as exc:
            raise FileRejected(Reason.DECODE_ERROR, str(exc)) from exc
        return source
    if where.length is None:
        raise FileRejected(Reason.DECODE_ERROR, "native pixel data of undefined length")
    expected = native_frame_length(pixel) * pixel.number_of_frames
    if where.length < expected:
        raise FileRejected(
            Reason.TRUNCATED,
            f"Pixel Data holds {where.length} bytes, the image attributes need {expected}",
        )
    surplus = where.length - expected
    source.surplus = 0 if surplus == 1 and expected % 2 else surplus  # padding (PS3.5 7.1.1)
    return source


def _extended_offsets(ds: Dataset, frames: int) -> tuple[bytes, bytes] | None:
    """(7FE0,0001) *Extended Offset Table* and (7FE0,0002) its lengths, when both hold
    one 8-byte value per frame (pydicom would otherwise seek by garbage)."""
    try:
        offsets = attribute_value(ds, "ExtendedOffsetTable")
        lengths = attribute_value(ds, "ExtendedOffsetTableLengths")
    except FileRejected:
        return None
    if not isinstance(offsets, bytes) or not isinstance(lengths, bytes):
        return None
    return (offsets, lengths) if len(offsets) == len(lengths) == 8 * frames else None


class _BudgetReader:
    """The encapsulated value as a file for pydicom's frame generator: reads stop at
    the end of a defined-length value, and at most ``budget`` bytes are read between
    two resets of :attr:`used` (one frame's worth)."""

    def __init__(self, fp: Any, where: PixelDataValue, budget: int) -> None:
        self._fp = fp
        self._end = None if where.length is None else where.offset + where.length
        self._budget = budget
        self.used = 0
        fp.seek(where.offset)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ValueError("an encapsulated frame is read in items of known length")
        if self._end is not None:
            size = max(min(size, self._end - self._fp.tell()), 0)
        if self.used + size > self._budget:
            raise _FrameTooLarge(f"the encoded frame holds more than {self._budget:,} bytes")
        data: bytes = self._fp.read(size)
        self.used += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position: int = self._fp.seek(offset, whence)
        return position

    def tell(self) -> int:
        position: int = self._fp.tell()
        return position
