"""Byte-level tools for hostile test files: raw element values, hand-made encodings,
sparse files and whole-file surgery. Pydicom validates what it is given; these do not.

Everything here writes Explicit VR Little Endian (PS3.5 7.1.2) unless told otherwise.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag, TagType

__all__ = [
    "element",
    "nested_sequences",
    "pixel_data_offset",
    "relabel",
    "set_raw",
    "truncate",
    "wrap_stream",
    "write_sparse",
]

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def set_raw(ds: Dataset, tag: TagType, vr: str, value: bytes) -> None:
    """Put ``value`` into ``ds`` as it will be written, bypassing pydicom's conversion.

    pydicom writes a :class:`RawDataElement` byte for byte, so any value (a DS that is
    not a number, a US with three values, a string with NUL bytes) reaches the file.
    """
    tag = Tag(tag)
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def element(tag: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    """One Explicit VR Little Endian data element; ``length`` overrides the true length."""
    group, elem = tag >> 16, tag & 0xFFFF
    declared = len(value) if length is None else length
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHL", group, elem, vr.encode(), 0, declared) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), declared) + value


def nested_sequences(tag: int, depth: int) -> bytes:
    """``depth`` undefined-length sequences, each holding one undefined-length item
    holding the next (PS3.5 7.5.2): the innermost item is empty."""
    opening = struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, b"SQ", 0, _UNDEFINED)
    opening += struct.pack("<HHL", _ITEM >> 16, _ITEM & 0xFFFF, _UNDEFINED)
    closing = struct.pack("<HHL", _ITEM_END >> 16, _ITEM_END & 0xFFFF, 0)
    closing += struct.pack("<HHL", _SEQUENCE_END >> 16, _SEQUENCE_END & 0xFFFF, 0)
    return opening * depth + closing * depth


def wrap_stream(ds: Dataset, syntax: str, frames: list[bytes]) -> Dataset:
    """``ds`` (already labelled with the frames' Rows, Columns, bits...) holding
    ``frames`` as encapsulated pixel data in ``syntax`` (PS3.5 A.4), with a Basic
    Offset Table."""
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    return ds


def relabel(path: Path, **tags: object) -> Path:
    """Rewrite ``path`` with new header values and the same (possibly encoded) pixel data."""
    ds = dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def pixel_data_offset(path: Path) -> int:
    """Offset of the (7FE0,0010) *Pixel Data* element's tag in a non-deflated file."""
    with open(path, "rb") as fp:
        dcmread(fp, stop_before_pixels=True)
        return fp.tell()


def truncate(path: Path, keep: int) -> Path:
    """Cut ``path`` to its first ``keep`` bytes."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return path


def write_sparse(path: Path, head: bytes, hole: int, tail: bytes = b"") -> Path:
    """Write ``head``, then ``hole`` zero bytes that take no disk space, then ``tail``.

    Reading the hole returns zeros, so a 400 MB element costs nothing to create.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fp:
        fp.write(head)
        fp.seek(hole, 1)
        if tail:
            fp.write(tail)
        else:
            fp.truncate()
    return path
