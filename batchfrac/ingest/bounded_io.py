"""Reading a DICOM file with memory bounded by what is needed, not by what the file holds.

Three things a plain ``dcmread`` does that a hostile file turns into a memory bomb, and
what replaces them here:

- a *Deflated Explicit VR Little Endian* data set (1.2.840.10008.1.2.1.99, PS3.5 A.5) is
  inflated whole in memory (a 1.5 MB file can hold 1.5 GB of zeros):
  :func:`inflate_limited` inflates it as a stream with ``zlib.decompressobj`` and a
  ``max_length`` per call, and stops past a byte limit; :func:`read_deflated_dataset`
  reads the data set from that;
- every element value is read, however large (a 300 MB private element):
  :func:`read_deferred_header` passes ``defer_size``, so pydicom seeks past large
  values (and would read them back from the file only if asked);
- the whole (7FE0,0010) *Pixel Data* value is read, surplus bytes after the last frame
  included (pydicom then returns them as extra frames): :func:`locate_pixel_data` finds
  the value in the file and :func:`read_native_frame` / :func:`read_encapsulated_frame`
  read one frame's bytes; :func:`surplus_bytes` says how much lies past the last frame.

pydicom 3 can do the last one itself for non-deflated files: ``pydicom.pixels.
iter_pixels(path, indices=...)`` and ``pixel_array(path, index=...)`` read frames from
the file one at a time, skip non-pixel elements, and never return surplus frames (the
surplus check only runs on buffers and datasets; for those pass
``allow_excess_frames=False``). They neither read deflated files (no Pixel Data is found)
nor compare a compressed stream's size with Rows x Columns (see
:mod:`batchfrac.codec_headers`). Measurements: FINDINGS.md.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.filereader import read_dataset, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from ..errors import BatchfracError

__all__ = [
    "DEFAULT_DEFER_SIZE",
    "BoundedReadError",
    "DeflatedStreamError",
    "InflateLimitExceeded",
    "PixelDataMissing",
    "PixelDataTruncated",
    "PixelDataValue",
    "count_encapsulated_items",
    "inflate_limited",
    "locate_pixel_data",
    "native_frame_length",
    "read_deferred_header",
    "read_deflated_dataset",
    "read_encapsulated_frame",
    "read_native_frame",
    "read_file_meta",
    "read_header_and_locate",
    "stop_at_pixel_data",
    "surplus_bytes",
]

#: Element values larger than this are not read by :func:`read_deferred_header` (a header
#: value batchfrac uses is a few bytes; LUTs and overlays in the header stay under 1 MiB).
DEFAULT_DEFER_SIZE = 1 << 20
_PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UN", b"UT"})
_UNDEFINED_LENGTH = 0xFFFFFFFF
_CHUNK = 1 << 20
_MAX_ITEMS = 1 << 20  # fragments of one encapsulated value: a walk of at most a second


class BoundedReadError(BatchfracError):
    """A file cannot be read within its bounds (base class)."""


class InflateLimitExceeded(BoundedReadError):
    """A deflated data set inflates to more than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the deflated data set inflates to more than {limit:,} bytes")
        self.limit = limit


class DeflatedStreamError(BoundedReadError):
    """A deflated data set is truncated or corrupt."""


class PixelDataMissing(BoundedReadError):
    """The file has no (7FE0,0010) *Pixel Data* (or float pixel data) element."""


class PixelDataTruncated(BoundedReadError):
    """The file ends before the pixel data it declares (or before the requested frame)."""


def inflate_limited(src: BinaryIO, limit: int, *, chunk_size: int = _CHUNK) -> io.BytesIO:
    """Inflate the raw deflate stream (RFC 1951, no zlib header: PS3.5 A.5) read from
    ``src``, holding at most ``limit + chunk_size`` bytes at any time.

    Returns a file object over the inflated bytes, at position 0. Raises
    :class:`InflateLimitExceeded` as soon as more than ``limit`` bytes come out, and
    :class:`DeflatedStreamError` when the stream is corrupt or ends early.
    """
    if limit <= 0:
        raise ValueError(f"the inflate limit must be positive, got {limit}")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = io.BytesIO()
    while not inflater.eof:
        data = inflater.unconsumed_tail or src.read(chunk_size)
        if not data:
            raise DeflatedStreamError(
                f"the deflated stream ends after {out.tell():,} inflated bytes"
            )
        try:
            # max_length >= 1 here (0 would mean "no limit" to zlib).
            out.write(inflater.decompress(data, limit + 1 - out.tell()))
        except zlib.error as exc:
            raise DeflatedStreamError(f"corrupt deflated stream: {exc}") from exc
        if out.tell() > limit:
            raise InflateLimitExceeded(limit)
    out.seek(0)
    return out


def read_deflated_dataset(path: Path, limit: int, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a Deflated Explicit VR Little Endian file, inflating at most ``limit`` bytes.

    The File Meta Information (group 0002, never deflated, PS3.10 7.1) is read as it is;
    the rest is inflated by :func:`inflate_limited` and read as Explicit VR Little
    Endian. Raises what :func:`inflate_limited` raises, and ``ValueError`` for a file
    that is not in that transfer syntax.
    """
    with open(path, "rb") as fp:
        meta = read_file_meta(fp, force=False)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            syntax = meta.get("TransferSyntaxUID")
            raise ValueError(f"{path} is not deflated (Transfer Syntax UID {syntax})")
        inflated = inflate_limited(fp, limit)
    stop = stop_at_pixel_data if stop_before_pixels else None
    ds = read_dataset(inflated, is_implicit_VR=False, is_little_endian=True, stop_when=stop)
    ds.file_meta = meta
    ds.set_original_encoding(False, True)
    return ds


def read_deferred_header(
    path: Path,
    *,
    defer_size: int = DEFAULT_DEFER_SIZE,
    inflate_limit: int = 64 << 20,
    force: bool = False,
) -> Dataset:
    """The header of ``path`` (everything before the pixel data) without reading any
    value larger than ``defer_size``; a deflated file through :func:`read_deflated_dataset`
    with ``inflate_limit``. A deferred value reads as ``None`` from
    ``Dataset.get_item(tag).value`` and is read from the file on attribute access."""
    if _file_meta(path, force).get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return read_deflated_dataset(path, inflate_limit, stop_before_pixels=True)
    return dcmread(path, stop_before_pixels=True, defer_size=defer_size, force=force)


@dataclass(frozen=True, slots=True)
class PixelDataValue:
    """Where a pixel data element's value lies in a (non-deflated) file.

    ``offset``: file offset of the value's first byte (for encapsulated data, of the
    Basic Offset Table item); ``length``: the declared value length, ``None`` when
    undefined (encapsulated, PS3.5 A.4); ``tag``: (7FE0,0010), (7FE0,0008) or (7FE0,0009);
    ``vr``: the explicit VR (``"OB"``, ``"OW"``...), ``None`` in implicit VR.
    """

    offset: int
    length: int | None
    tag: int
    is_little_endian: bool
    vr: str | None = None

    @property
    def encapsulated(self) -> bool:
        return self.length is None


def locate_pixel_data(path: Path, *, force: bool = False) -> PixelDataValue:
    """Find the pixel data value of ``path`` by reading its header (large values deferred).

    Raises :class:`PixelDataMissing` when the header is followed by no pixel data element,
    :class:`PixelDataTruncated` when the file ends inside that element's header.
    """
    with open(path, "rb") as fp:
        return read_header_and_locate(fp, force=force)[1]


def read_header_and_locate(
    fp: BinaryIO, *, force: bool = False, defer_size: int = DEFAULT_DEFER_SIZE
) -> tuple[Dataset, PixelDataValue]:
    """The header of the (non-deflated) file at ``fp``, position 0, read by ``dcmread``
    with values over ``defer_size`` deferred, and where its pixel data value lies
    (see :func:`locate_pixel_data`); ``fp`` is left after the pixel data element header."""
    ds = dcmread(fp, stop_before_pixels=True, defer_size=defer_size, force=force)
    little = ds.original_encoding[1] is not False
    return ds, read_pixel_data_element(fp, little, str(getattr(fp, "name", "the file")))


class SeekableReader(Protocol):
    """What reading an element needs of a file: a real one or an inflating stream."""

    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...


def read_pixel_data_element(fp: SeekableReader, little_endian: bool, name: str) -> PixelDataValue:
    """Read the pixel data element header at the position of ``fp`` (a file, or an
    :class:`~batchfrac.ingest.deflated.InflatingReader`), which is left at its value.
    Implicit or explicit VR is decided from the bytes, as pydicom does."""
    endian = "<" if little_endian else ">"
    position = fp.tell()
    head = fp.read(8)
    if len(head) < 8:
        raise PixelDataMissing(f"no pixel data element after the header of {name}")
    group, element = struct.unpack(f"{endian}HH", head[:4])
    tag = group << 16 | element
    if tag not in _PIXEL_DATA_TAGS:
        raise PixelDataMissing(f"the header of {name} is followed by {BaseTag(tag)}, no pixels")
    vr = None
    if head[4:6] in _LONG_VRS:  # explicit VR: 2 reserved bytes, 4-byte length
        tail = fp.read(4)
        if len(tail) < 4:
            raise PixelDataTruncated("the file ends inside the pixel data element header")
        header_length, length = 12, struct.unpack(f"{endian}L", tail)[0]
        vr = head[4:6].decode("ascii")
    else:  # implicit VR: 4-byte length (pixel data VRs are all long in explicit VR)
        header_length, length = 8, struct.unpack(f"{endian}L", head[4:8])[0]
    return PixelDataValue(
        offset=position + header_length,
        length=None if length == _UNDEFINED_LENGTH else length,
        tag=tag,
        is_little_endian=little_endian,
        vr=vr,
    )


def native_frame_length(
    rows: int, columns: int, samples: int, bits_allocated: int, photometric: str = ""
) -> int:
    """Bytes per frame of native pixel data (PS3.5 8.1.1): YBR_FULL_422 stores two
    samples per pixel (PS3.3 C.7.6.3.1.2); 1-bit frames are not byte-aligned."""
    if bits_allocated % 8:
        raise ValueError(f"frames of {bits_allocated}-bit pixels are not byte-aligned")
    if photometric.strip().upper() == "YBR_FULL_422":
        samples = 2
    return rows * columns * samples * (bits_allocated // 8)


def surplus_bytes(where: PixelDataValue, frame_length: int, number_of_frames: int) -> int:
    """Bytes of native pixel data after the last declared frame (the one byte of
    padding to an even length excepted, PS3.5 7.1.1); negative when frames are missing."""
    if where.length is None:
        raise ValueError("encapsulated pixel data has no surplus bytes to count")
    expected = frame_length * number_of_frames
    surplus = where.length - expected
    return 0 if surplus == 1 and expected % 2 else surplus


def read_native_frame(
    path: Path, where: PixelDataValue, index: int, frame_length: int, number_of_frames: int
) -> bytes:
    """The bytes of frame ``index`` (0-based) of native pixel data; nothing else is read.

    Raises ``IndexError`` for an index outside ``number_of_frames`` and
    :class:`PixelDataTruncated` when the value or the file ends before the frame does.
    """
    if not 0 <= index < number_of_frames:
        raise IndexError(f"frame {index} of {number_of_frames}")
    if where.length is None:
        raise ValueError("encapsulated pixel data: use read_encapsulated_frame")
    end = (index + 1) * frame_length
    if end > where.length:
        raise PixelDataTruncated(
            f"frame {index} ends at byte {end:,} of pixel data that declares {where.length:,}"
        )
    with open(path, "rb") as fp:
        fp.seek(where.offset + index * frame_length)
        data = fp.read(frame_length)
    if len(data) < frame_length:
        raise PixelDataTruncated(f"the file ends inside frame {index}")
    return data


def read_encapsulated_frame(
    path: Path,
    where: PixelDataValue,
    index: int,
    number_of_frames: int,
    extended_offsets: tuple[bytes, bytes] | None = None,
) -> bytes:
    """The encoded bytes of frame ``index`` of encapsulated pixel data (PS3.5 A.4), read
    from the file by pydicom's ``encaps.get_frame`` (Basic or Extended Offset Table, else
    a walk over the fragment headers); only that frame's fragments are read."""
    if not 0 <= index < number_of_frames:
        raise IndexError(f"frame {index} of {number_of_frames}")
    if where.length is not None:
        raise ValueError("native pixel data: use read_native_frame")
    endianness = "<" if where.is_little_endian else ">"
    with open(path, "rb") as fp:
        fp.seek(where.offset)
        try:
            return get_frame(
                fp,
                index,
                number_of_frames=number_of_frames,
                extended_offsets=extended_offsets,
                endianness=endianness,
            )
        except (ValueError, EOFError, struct.error) as exc:
            raise PixelDataTruncated(f"frame {index}: {exc}") from exc


def count_encapsulated_items(fp: BinaryIO, where: PixelDataValue, size: int) -> int:
    """Walk encapsulated pixel data (PS3.5 A.4) item by item, reading only their 8-byte
    headers, up to its Sequence Delimitation Item; the number of items (Basic Offset
    Table included). Raises :class:`PixelDataTruncated` when an item or the file ends
    before the delimiter, ``ValueError`` for an item that is neither an Item nor the
    delimiter (a sequence a decoder would misread)."""
    endian = "<" if where.is_little_endian else ">"
    position, items = where.offset, 0
    while True:
        fp.seek(position)
        head = fp.read(8)
        if len(head) < 8:
            raise PixelDataTruncated(
                f"the file ends inside the encapsulated pixel data, after {items} items"
            )
        group, element, length = struct.unpack(f"{endian}HHL", head)
        tag = group << 16 | element
        if tag == 0xFFFEE0DD:
            return items
        if tag != 0xFFFEE000 or length == _UNDEFINED_LENGTH:
            raise ValueError(f"item {items} of the encapsulated pixel data is {BaseTag(tag)}")
        position += 8 + length
        if items >= _MAX_ITEMS:
            raise ValueError(f"encapsulated pixel data of more than {_MAX_ITEMS:,} items")
        if position > size:
            raise PixelDataTruncated(
                f"item {items} of the encapsulated pixel data ends at byte {position:,} "
                f"of a {size:,}-byte file"
            )
        items += 1


def _file_meta(path: Path, force: bool) -> FileMetaDataset:
    with open(path, "rb") as fp:
        return read_file_meta(fp, force=force)


def read_file_meta(fp: BinaryIO, *, force: bool) -> FileMetaDataset:
    """The File Meta Information group (0002,xxxx), always Explicit VR Little Endian
    (PS3.10 7.1); empty when absent. Leaves ``fp`` at the first data set element."""
    read_preamble(fp, force=force)
    start = fp.tell()
    if fp.read(2) != b"\x02\x00":
        fp.seek(start)
        return FileMetaDataset()
    fp.seek(start)
    group = read_dataset(fp, is_implicit_VR=False, is_little_endian=True, stop_when=_past_meta)
    return FileMetaDataset(group)


def _past_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group != 0x0002


def stop_at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    """``stop_when`` for pydicom's ``read_dataset``: stop at a pixel data element."""
    return int(tag) in _PIXEL_DATA_TAGS
