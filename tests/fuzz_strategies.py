"""Hypothesis strategies that mutate valid DICOM files of every transfer syntax.

Seeds (:func:`build_seeds`): one valid 64 x 48 radiograph per syntax of
``tests.more_encoders.ALL_SYNTAXES``, plus a 3-frame and an RGB file in a few, each
kept as bytes with the offsets a mutation aims at (its data set's element length fields
and its pixel data). A drawn example is a seed name and a :class:`Mutation`;
``mutation.apply(seed)`` returns the mutated file's bytes.

- :func:`header_mutations`: one to three header attributes replaced, through pydicom
  with raw values it does not validate: wrong VRs, several values, NaN/inf, huge and
  negative numbers, odd and wrong lengths, NUL bytes, nested sequences (deeply nested
  ones are spliced in as bytes in Explicit VR Little Endian seeds), a transfer syntax
  that lies about the data;
- :func:`byte_mutations`: one to four edits of the file bytes: bit flips, byte
  overwrites, truncations, inserted and removed runs, garbage in element length fields;
  positions anywhere, or inside the pixel data, or in its last 64 bytes (where RLE run
  counts and JPEG markers end a frame).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from tests.factories import gradient_image, make_image_dataset
from tests.hostile import radiograph
from tests.hostile_bytes import element, nested_sequences, set_raw
from tests.more_encoders import ALL_SYNTAXES, write_any


@dataclass(frozen=True)
class Seed:
    """A valid file and where its mutable parts are.

    ``length_fields``: file offsets of the top-level elements' value lengths, with their
    width (2 or 4 bytes); ``pixels``: (start, end) of the pixel data value in the file
    (the whole file for deflated seeds, whose offsets are in the inflated stream).
    """

    name: str
    syntax: UID
    data: bytes = field(repr=False)
    length_fields: tuple[tuple[int, int], ...] = field(repr=False)
    pixels: tuple[int, int] = field(repr=False)


def build_seeds(directory: Path) -> dict[str, Seed]:
    """The seed files, written under ``directory``, by name (``<syntax>``, ``<syntax>-3f``,
    ``<syntax>-rgb``)."""
    plan: list[tuple[str, UID, Dataset]] = [(str(s), s, _grey(s)) for s in ALL_SYNTAXES]
    frames = np.stack([gradient_image(64, 48) + 100 * i for i in range(3)])
    for syntax in (ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless):
        plan.append((f"{syntax}-3f", syntax, make_image_dataset(frames, BodyPartExamined="HAND")))
    rgb = np.stack([np.full((64, 48), v, np.uint8) for v in (30, 120, 220)], axis=-1)
    rgb[16:32] = 255
    for syntax in (ExplicitVRLittleEndian, RLELossless):
        ds = make_image_dataset(rgb, photometric="RGB", bits_stored=8, BodyPartExamined="HAND")
        plan.append((f"{syntax}-rgb", syntax, ds))
    seeds = {}
    for name, syntax, ds in plan:
        path = write_any(ds, directory / f"{name}.dcm", syntax)
        seeds[name] = _seed(name, syntax, path.read_bytes())
    return seeds


def _grey(syntax: UID) -> Dataset:
    return radiograph(bits=8 if syntax == "1.2.840.10008.1.2.4.50" else 12)


_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _seed(name: str, syntax: UID, data: bytes) -> Seed:
    if syntax.is_deflated:
        return Seed(name, syntax, data, (), (0, len(data)))
    fp = io.BytesIO(data)
    ds = dcmread(fp, defer_size=None)
    fields = []
    for tag in ds.keys():
        raw = ds.get_item(tag)
        tell = getattr(raw, "value_tell", None)
        if tell is None or tag == 0x7FE00010:
            continue
        long = syntax.is_implicit_VR or raw.VR in _LONG_VRS
        fields.append((tell - 4, 4) if long else (tell - 2, 2))
    pixel = ds.get_item(0x7FE00010)
    start = pixel.value_tell
    return Seed(name, syntax, data, tuple(fields), (start, len(data)))


# --- byte mutations -------------------------------------------------------------------


class Edit(Protocol):
    def apply(self, data: bytes, seed: Seed) -> bytes: ...


def _position(seed: Seed, data: bytes, where: str, draw: int) -> int:
    if where == "pixels":
        start, end = seed.pixels
    elif where == "tail":
        start, end = max(seed.pixels[0], len(seed.data) - 64), len(seed.data)
    else:
        start, end = 0, len(seed.data)
    end = min(end, len(data))
    start = min(start, max(end - 1, 0))
    return start + draw % max(end - start, 1)


@dataclass(frozen=True)
class Flip:
    where: str
    draw: int
    bit: int

    def apply(self, data: bytes, seed: Seed) -> bytes:
        out = bytearray(data)
        if out:
            out[_position(seed, data, self.where, self.draw)] ^= 1 << self.bit
        return bytes(out)


@dataclass(frozen=True)
class Overwrite:
    where: str
    draw: int
    value: bytes

    def apply(self, data: bytes, seed: Seed) -> bytes:
        at = _position(seed, data, self.where, self.draw)
        return data[:at] + self.value + data[at + len(self.value) :]


@dataclass(frozen=True)
class Truncate:
    where: str
    draw: int

    def apply(self, data: bytes, seed: Seed) -> bytes:
        return data[: _position(seed, data, self.where, self.draw)]


@dataclass(frozen=True)
class Insert:
    where: str
    draw: int
    value: bytes

    def apply(self, data: bytes, seed: Seed) -> bytes:
        at = _position(seed, data, self.where, self.draw)
        return data[:at] + self.value + data[at:]


@dataclass(frozen=True)
class Remove:
    where: str
    draw: int
    count: int

    def apply(self, data: bytes, seed: Seed) -> bytes:
        at = _position(seed, data, self.where, self.draw)
        return data[:at] + data[at + self.count :]


@dataclass(frozen=True)
class GarbageLength:
    """Overwrite the value length of one top-level element (the pixel data's excluded:
    :class:`Overwrite` in the pixel region covers fragment lengths)."""

    draw: int
    value: int

    def apply(self, data: bytes, seed: Seed) -> bytes:
        if not seed.length_fields:
            return data
        offset, width = seed.length_fields[self.draw % len(seed.length_fields)]
        endian = "<" if seed.syntax.is_little_endian else ">"
        packed = struct.pack(f"{endian}{'H' if width == 2 else 'L'}", self.value % (1 << 8 * width))
        return data[:offset] + packed + data[offset + width :]


@dataclass(frozen=True)
class Mutation:
    """Edits applied in order to a seed's bytes."""

    edits: tuple[Edit, ...]

    def apply(self, seed: Seed) -> bytes:
        data = seed.data
        for edit in self.edits:
            data = edit.apply(data, seed)
        return data


_WHERE = st.sampled_from(["anywhere", "pixels", "pixels", "tail"])
_DRAW = st.integers(0, 2**31)
_INTERESTING_LENGTHS = [0, 1, 2, 3, 7, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]
_EDITS: st.SearchStrategy[Edit] = st.one_of(
    st.builds(Flip, _WHERE, _DRAW, st.integers(0, 7)),
    st.builds(Overwrite, _WHERE, _DRAW, st.binary(min_size=1, max_size=8)),
    st.builds(Truncate, _WHERE, _DRAW),
    st.builds(Insert, _WHERE, _DRAW, st.binary(min_size=1, max_size=16)),
    st.builds(Remove, _WHERE, _DRAW, st.integers(1, 16)),
    st.builds(
        GarbageLength, _DRAW, st.one_of(st.sampled_from(_INTERESTING_LENGTHS), st.integers(0))
    ),
)


def byte_mutations() -> st.SearchStrategy[Mutation]:
    """One to four byte edits (see the module docstring)."""
    return st.builds(Mutation, st.lists(_EDITS, min_size=1, max_size=4).map(tuple))


# --- header mutations -----------------------------------------------------------------

#: (tag, VR) of the attributes batchfrac reads: the Image Pixel module, the modality
#: and VOI LUT modules, and the identifiers that reach the report.
HEADER_TAGS: tuple[tuple[int, str], ...] = (
    (0x00280010, "US"),  # Rows
    (0x00280011, "US"),  # Columns
    (0x00280100, "US"),  # Bits Allocated
    (0x00280101, "US"),  # Bits Stored
    (0x00280102, "US"),  # High Bit
    (0x00280103, "US"),  # Pixel Representation
    (0x00280002, "US"),  # Samples per Pixel
    (0x00280006, "US"),  # Planar Configuration
    (0x00280004, "CS"),  # Photometric Interpretation
    (0x00280008, "IS"),  # Number of Frames
    (0x00281053, "DS"),  # Rescale Slope
    (0x00281052, "DS"),  # Rescale Intercept
    (0x00281050, "DS"),  # Window Center
    (0x00281051, "DS"),  # Window Width
    (0x00281056, "CS"),  # VOI LUT Function
    (0x00080060, "CS"),  # Modality
    (0x00180015, "CS"),  # Body Part Examined
    (0x00080016, "UI"),  # SOP Class UID
    (0x00100020, "LO"),  # Patient ID
    (0x0020000D, "UI"),  # Study Instance UID
    (0x00283000, "SQ"),  # Modality LUT Sequence
    (0x00283010, "SQ"),  # VOI LUT Sequence
)
_NUMBER_TEXTS = [
    "NaN", "nan", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e-320", "0", "-0", "-1",
    "ab.c", "", " ", "1\\2", "1\\2\\3\\4", "99999999999999999999", "-2147483649", "0x10",
    "1,5", "+", ".", "1e", "65536", "4294967296",
]  # fmt: skip
_TEXTS = [
    "MONOCHROME2\\RGB", "MONOCHROME1", "RGB", "YBR_FULL_422", "PALETTE COLOR", "YBR_RCT",
    "", "\x00", "HAND\x00", "A" * 70, "\\\\\\", "DX", "CT", "é", "SIGMOID", "LINEAR_EXACT",
]  # fmt: skip


def _even(value: bytes, pad: bytes = b" ") -> bytes:
    return value + pad if len(value) % 2 else value


_TEXT_VALUES = st.one_of(
    st.sampled_from(_NUMBER_TEXTS),
    st.sampled_from(_TEXTS),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f)[:16]),
    st.integers(-(2**70), 2**70).map(lambda i: str(i)[:16]),
    st.text(max_size=24),
).map(lambda text: _even(text.encode("utf-8", "surrogateescape")))
_BINARY_VALUES = st.one_of(
    st.lists(st.integers(0, 0xFFFF), min_size=0, max_size=4).map(
        lambda values: struct.pack(f"<{len(values)}H", *values)
    ),
    st.sampled_from([b"\x00\x00", b"\xff\xff", b"\x00\x80", b"\x01", b"\x01\x00\x03"]),
    st.binary(max_size=9),
)


@dataclass(frozen=True)
class SetValue:
    """Replace (or add) one attribute with raw ``value`` bytes written under ``vr``."""

    tag: int
    vr: str
    value: bytes

    def apply_to(self, ds: Dataset) -> None:
        set_raw(ds, self.tag, self.vr, self.value)


@dataclass(frozen=True)
class Nest:
    """Put ``depth`` nested single-item sequences in a sequence attribute (pydicom-built)."""

    tag: int
    depth: int

    def apply_to(self, ds: Dataset) -> None:
        inner = Dataset()
        for _ in range(self.depth):
            outer = Dataset()
            outer.add_new(self.tag, "SQ", DicomSequence([inner]))
            inner = outer
        ds.add_new(self.tag, "SQ", inner[self.tag].value)


@dataclass(frozen=True)
class LieAboutSyntax:
    """Relabel the data with another transfer syntax (the pixel data unchanged)."""

    syntax: str

    def apply_to(self, ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = self.syntax


@dataclass(frozen=True)
class HeaderMutation:
    """Attribute changes made through pydicom, then an optional splice of ``deep``
    nested undefined-length sequences (Explicit VR Little Endian seeds only)."""

    changes: tuple[SetValue | Nest | LieAboutSyntax, ...]
    deep: int = 0

    def apply(self, seed: Seed) -> bytes:
        ds = dcmread(io.BytesIO(seed.data))
        splice = self.deep and ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        data = _written(ds)
        assert data is not None, f"seed {seed.name} cannot be written back"
        for change in self.changes:
            # pydicom converts some raw values while writing (UIDs, sequences) and gives
            # up on others: such a change is dropped, the others are kept.
            trial = dcmread(io.BytesIO(data))
            try:
                change.apply_to(trial)
            except Exception:  # noqa: BLE001 - pydicom parses an earlier forged value here
                continue
            data = _written(trial) or data
        if splice:
            trial = dcmread(io.BytesIO(data))
            set_raw(trial, 0x00400275, "OB", b"PLACEHOLDER!")
            placeholder = element(0x00400275, "OB", b"PLACEHOLDER!")
            data = (_written(trial) or data).replace(
                placeholder, nested_sequences(0x00400275, self.deep)
            )
        return data


def _written(ds: Dataset) -> bytes | None:
    """``ds`` as a file, or ``None`` when pydicom refuses to write it."""
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception:  # noqa: BLE001 - pydicom's own validation, on values we forged
        return None
    return out.getvalue()


def _change() -> st.SearchStrategy[SetValue | Nest | LieAboutSyntax]:
    def value_for(tag_vr: tuple[int, str]) -> st.SearchStrategy[SetValue | Nest]:
        tag, vr = tag_vr
        wrong_vr = st.sampled_from(["US", "SS", "UL", "DS", "IS", "CS", "LO", "OB", "UN", "FD"])
        as_text = st.builds(SetValue, st.just(tag), st.just(vr), _TEXT_VALUES)
        as_binary = st.builds(SetValue, st.just(tag), st.just(vr), _BINARY_VALUES)
        any_value = st.one_of(_TEXT_VALUES, _BINARY_VALUES)
        any_vr = st.builds(SetValue, st.just(tag), wrong_vr, any_value)
        nested = st.builds(Nest, st.just(tag), st.integers(1, 40))
        if vr == "SQ":
            return st.one_of(nested, any_vr)
        natural = as_binary if vr in ("US", "SS", "UL") else as_text
        return st.one_of(natural, natural, any_vr)

    lie = st.builds(LieAboutSyntax, st.sampled_from([str(s) for s in ALL_SYNTAXES]))
    return st.one_of(st.sampled_from(HEADER_TAGS).flatmap(value_for), lie)


def header_mutations() -> st.SearchStrategy[HeaderMutation]:
    """One to three attribute changes, and sometimes deeply nested sequences."""
    deep = st.one_of(st.just(0), st.just(0), st.integers(50, 400))
    return st.builds(HeaderMutation, st.lists(_change(), min_size=1, max_size=3).map(tuple), deep)


def seed_names(seeds: Sequence[str], syntax: str) -> list[str]:
    """The seeds of one syntax (its single-frame grey seed first)."""
    return sorted((name for name in seeds if name.split("-")[0] == str(syntax)), key=len)
