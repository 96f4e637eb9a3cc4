"""Hostile DICOM files of issue 10, built at test time (nothing binary is committed).

Each factory takes a directory and returns a :class:`Hostile`: the file's path, a short
description, and what a hardened batchfrac may report for it (``accept``: the statuses
its rows may have; ``ok_rows``: how many rows an ``ok`` file gives). Today's code does
not meet these expectations for many of them: see FINDINGS.md.

Memory bombs (:mod:`tests.hostile_bombs`) take their sizes from :class:`HostileSizes`;
the defaults keep CI fast, :data:`LARGE` has the issue's sizes
(``BATCHFRAC_HOSTILE_LARGE=1``, see :func:`sizes_from_env`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from tests.factories import gradient_image, make_image_dataset, write_dataset
from tests.hostile_bytes import (
    element,
    nested_sequences,
    pixel_data_offset,
    relabel,
    set_raw,
    truncate,
    wrap_stream,
)
from tests.more_encoders import write_any

OK, SKIPPED, ERROR = "ok", "skipped", "error"
NOT_OK = frozenset({SKIPPED, ERROR})
ONLY_ERROR = frozenset({ERROR})
OK_OR_ERROR = frozenset({OK, ERROR})
ONLY_OK = frozenset({OK})


@dataclass(frozen=True)
class Hostile:
    """A test file and what a hardened scan may make of it."""

    path: Path
    description: str
    accept: frozenset[str]
    ok_rows: int = 1

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class HostileSizes:
    """Sizes of the memory bombs (bytes unless said otherwise)."""

    stream_side: int = 4096  # JPEG-LS stream side behind a 256 x 256 header (issue: 24000)
    deflated_element: int = 48 << 20  # private element inside a deflated data set (1.5 GB)
    private_element: int = 48 << 20  # private element in a plain file (300 MB)
    surplus: int = 16 << 20  # pixel bytes after the only frame (400 MiB)
    tiny_frames: int = 2000  # frames of 8 x 8 (2000)
    cine_frames: int = 120  # frames of the legitimate 480 x 640 RGB cine (120)


#: The sizes measured in issue 10.
LARGE = HostileSizes(24000, 1_500_000_000, 300_000_000, 400 << 20, 2000, 120)


def sizes_from_env() -> HostileSizes:
    """:data:`LARGE` when ``BATCHFRAC_HOSTILE_LARGE=1``, else the CI defaults."""
    return LARGE if os.environ.get("BATCHFRAC_HOSTILE_LARGE") == "1" else HostileSizes()


def radiograph(rows: int = 64, columns: int = 48, bits: int = 12, **tags: object) -> Dataset:
    """A valid uncompressed DX hand radiograph with a gradient (never constant)."""
    tags.setdefault("BodyPartExamined", "HAND")
    pixels = gradient_image(rows, columns, bits)
    return make_image_dataset(
        pixels.astype(np.uint8) if bits <= 8 else pixels, bits_stored=bits, **tags
    )


def valid(directory: Path, syntax: str = "1.2.840.10008.1.2.1") -> Hostile:
    """A valid 64 x 48 radiograph in ``syntax`` (any of ``tests.more_encoders.ALL_SYNTAXES``)."""
    ds = radiograph(bits=8 if UID(syntax) == JPEGBaseline8Bit else 12)
    path = write_any(ds, directory / f"valid-{_slug(syntax)}.dcm", syntax)
    return Hostile(path, f"valid 64 x 48 radiograph, {UID(syntax).name}", ONLY_OK)


# --- header values -------------------------------------------------------------------


def _with_raw(directory: Path, name: str, values: dict[int, tuple[str, bytes]]) -> Path:
    ds = radiograph()
    for tag, (vr, value) in values.items():
        set_raw(ds, tag, vr, value)
    return write_dataset(ds, directory / f"{name}.dcm")


def window_center_not_a_number(directory: Path) -> Hostile:
    path = _with_raw(
        directory, "window-center-ab.c", {0x00281050: ("DS", b"ab.c"), 0x00281051: ("DS", b"400 ")}
    )
    return Hostile(path, "(0028,1050) Window Center 'ab.c'", OK_OR_ERROR)


def rescale_slope_two_values(directory: Path) -> Hostile:
    values = {0x00281053: ("DS", b"1\\2 "), 0x00281052: ("DS", b"0 ")}
    path = _with_raw(directory, "rescale-slope-two-values", values)
    return Hostile(path, "(0028,1053) Rescale Slope with two values '1\\2'", OK_OR_ERROR)


def samples_per_pixel_two_values(directory: Path) -> Hostile:
    values = {0x00280002: ("US", b"\x01\x00\x03\x00")}
    path = _with_raw(directory, "samples-per-pixel-two-values", values)
    return Hostile(path, "(0028,0002) Samples per Pixel with two values 1\\3", ONLY_ERROR)


def photometric_two_values(directory: Path) -> Hostile:
    values = {0x00280004: ("CS", b"MONOCHROME2\\RGB ")}
    path = _with_raw(directory, "photometric-two-values", values)
    return Hostile(path, "(0028,0004) Photometric Interpretation 'MONOCHROME2\\RGB'", ONLY_ERROR)


def non_finite_rescale_slope(directory: Path, value: bytes = b"NaN ") -> Hostile:
    values = {0x00281053: ("DS", value), 0x00281052: ("DS", b"0 ")}
    path = _with_raw(directory, f"rescale-slope-{_slug(value)}", values)
    shown = value.decode().strip()
    return Hostile(path, f"(0028,1053) Rescale Slope {shown}", ONLY_ERROR)


def non_finite_window_width(directory: Path, value: bytes = b"inf ") -> Hostile:
    values = {0x00281050: ("DS", b"2048"), 0x00281051: ("DS", value)}
    path = _with_raw(directory, f"window-width-{_slug(value)}", values)
    shown = value.decode().strip()
    return Hostile(path, f"(0028,1051) Window Width {shown}", OK_OR_ERROR)


def nul_in_strings(directory: Path) -> Hostile:
    values = {
        0x00100020: ("LO", b"TEST\x000001 "),  # Patient ID
        0x00080050: ("SH", b"ACC\x00001 "),  # Accession Number
        0x0008103E: ("LO", b"HAND\x00PA "),  # Series Description
    }
    path = _with_raw(directory, "nul-in-strings", values)
    return Hostile(path, "NUL bytes inside Patient ID and Accession Number", ONLY_OK)


def nested_sequence_bomb(directory: Path, depth: int = 250) -> Hostile:
    """``depth`` nested undefined-length sequences in (0040,0275) *Request Attributes
    Sequence*, spliced in place of a placeholder (pydicom would recurse writing them)."""
    tag = 0x00400275
    ds = radiograph()
    set_raw(ds, tag, "OB", b"PLACEHOLDER!")
    path = write_dataset(ds, directory / f"nested-sequences-{depth}.dcm")
    data = path.read_bytes()
    placeholder = element(tag, "OB", b"PLACEHOLDER!")
    assert data.count(placeholder) == 1
    path.write_bytes(data.replace(placeholder, nested_sequences(tag, depth)))
    return Hostile(path, f"{depth} nested undefined-length sequences", OK_OR_ERROR)


# --- image geometry --------------------------------------------------------------------


def tiny_image(directory: Path, side: int = 1) -> Hostile:
    ds = make_image_dataset(gradient_image(side, side, 12) + 7, BodyPartExamined="HAND")
    path = write_dataset(ds, directory / f"tiny-{side}x{side}.dcm")
    return Hostile(path, f"a {side} x {side} 'radiograph'", NOT_OK)


def dimensions_overflow(directory: Path) -> Hostile:
    """Rows x Columns x Frames x Samples x 2 bytes = 5.5e19, past a signed 64-bit integer."""
    ds = radiograph()
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 2**31 - 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    path = write_dataset(ds, directory / "dimensions-overflow.dcm")
    return Hostile(path, "65535 x 65535 x (2^31 - 1) frames x 3 samples", ONLY_ERROR)


def colour_cine(
    directory: Path, frames: int = 120, rows: int = 480, columns: int = 640, *, jpeg: bool = False
) -> Hostile:
    """A legitimate colour cine: every frame is ok. Uncompressed RGB (110 MB at 120 x 480 x
    640), or with ``jpeg`` JPEG Baseline YBR_FULL_422 frames (4:2:2, a few MB)."""
    y = np.linspace(0, 255, rows, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, columns, dtype=np.float32)[None, :]
    first = np.stack([y + 0 * x, x + 0 * y, (x + y) / 2], axis=-1).astype(np.uint8)
    ds = make_image_dataset(first, photometric="RGB", bits_stored=8, BodyPartExamined="HAND")
    moving = [np.roll(first, 3 * f, axis=1) for f in range(frames)]
    name = f"colour-cine-{frames}x{rows}x{columns}"
    if jpeg:
        import imagecodecs

        streams = [bytes(imagecodecs.jpeg8_encode(f, level=90, subsampling="422")) for f in moving]
        ds.PhotometricInterpretation = "YBR_FULL_422"
        path = write_dataset(
            wrap_stream(ds, JPEGBaseline8Bit, streams), directory / f"{name}-jpeg.dcm"
        )
    else:
        ds.NumberOfFrames = frames
        ds.PixelData = b"".join(frame.tobytes() for frame in moving)
        path = write_dataset(ds, directory / f"{name}.dcm")
    kind = "JPEG YBR_FULL_422" if jpeg else "RGB"
    description = f"legitimate {frames}-frame {rows} x {columns} {kind} cine"
    return Hostile(path, description, ONLY_OK, ok_rows=frames)


# --- compressed streams ----------------------------------------------------------------


def stream_header_mismatch(
    directory: Path, syntax: str, stream_shape: tuple[int, int] = (128, 96)
) -> Hostile:
    """A frame encoded at ``stream_shape`` in ``syntax``, labelled 64 x 48 in the header."""
    ds = radiograph(*stream_shape, bits=8 if UID(syntax) == JPEGBaseline8Bit else 12)
    shape = "x".join(map(str, stream_shape))
    path = write_any(ds, directory / f"stream-{shape}-header-64x48-{_slug(syntax)}.dcm", syntax)
    relabel(path, Rows=64, Columns=48)
    description = f"{UID(syntax).name} stream of {stream_shape[0]} x {stream_shape[1]}"
    return Hostile(path, f"{description} behind a 64 x 48 header", ONLY_ERROR)


def rle_segments_disagree(directory: Path) -> Hostile:
    """A 16-bit RLE frame (two segments) labelled 8-bit (one segment expected)."""
    path = write_any(radiograph(), directory / "rle-two-segments-header-8-bit.dcm", RLELossless)
    relabel(path, BitsAllocated=8, BitsStored=8, HighBit=7)
    return Hostile(path, "RLE frame with 2 segments, header says 8-bit (1 segment)", ONLY_ERROR)


def rle_panic(directory: Path) -> Hostile:
    """A 96 x 192 16-bit RLE frame whose last run is one bit longer than the frame.

    The last byte pair of the frame is the replicate run (0xC1: 64 copies) ending the LSB
    segment; bit 6 flipped makes it 0x81 (128 copies). pydicom's own RLE plugin rejects
    it (ValueError); pylibjpeg-rle's Rust decoder checks ``idx + n <= len`` but writes
    every 2nd byte, and panics: 'index out of bounds: the len is 36864 but the index is
    36864' (pyo3 ``PanicException``, a ``BaseException``).
    """
    pixels = np.full((96, 192), 0x0305, np.uint16)
    ds = make_image_dataset(pixels, bits_stored=16, BodyPartExamined="HAND")
    path = write_any(ds, directory / "rle-panic.dcm", RLELossless)
    data = bytearray(path.read_bytes())
    end = len(data) - 8  # the frame's last byte pair precedes the Sequence Delimitation Item
    assert data[end - 2 : end] == b"\xc1\x05", "pydicom's RLE encoder changed its output"
    data[end - 2] ^= 0x40
    path.write_bytes(bytes(data))
    return Hostile(path, "mutated RLE frame that makes pylibjpeg-rle panic", ONLY_ERROR)


def gdcm_abort(directory: Path) -> Hostile:
    """A JPEG 2000 (lossy) frame with 8 bytes changed that makes python-gdcm abort the process.

    Found by the fuzz tests: 8 bytes overwritten 59 bytes into the codestream. gdcm is
    pydicom's first JPEG 2000 plugin; it ends in ``terminate called after throwing an
    instance of 'std::string'`` (SIGABRT, exit 134), which no ``except`` can catch.
    pylibjpeg-openjpeg and Pillow reject the same frame with an exception.
    """
    path = valid(directory, JPEG2000).path
    path = path.rename(path.with_name("gdcm-abort.dcm"))
    data = bytearray(path.read_bytes())
    at = pixel_data_offset(path) + 12 + 59  # after the element header, 59 bytes in
    assert data[at : at + 4] == b"\x00\x00\x01\x0b", "the JPEG 2000 encoder changed its output"
    data[at : at + 8] = b"\xf6\xb48lR^&\x19"
    path.write_bytes(bytes(data))
    return Hostile(path, "mutated JPEG 2000 frame that makes python-gdcm abort", ONLY_ERROR)


def gdcm_abort_jpeg(directory: Path) -> Hostile:
    """A baseline JPEG frame with one bit flipped that makes python-gdcm abort the process.

    Found by the slow fuzz tests in CI: bit 0 of the byte 112 bytes into the pixel data
    (``Corrupt JPEG data`` from libjpeg, then ``terminate called after throwing an
    instance of 'gdcm::Exception'``, SIGABRT). gdcm was pydicom's first plugin for the
    syntax; now it is the last resort for every syntax. pylibjpeg decodes the frame
    (a flipped bit in entropy-coded data is damage, not an error).
    """
    path = valid(directory, JPEGBaseline8Bit).path
    path = path.rename(path.with_name("gdcm-abort-jpeg.dcm"))
    data = bytearray(path.read_bytes())
    data[pixel_data_offset(path) + 112] ^= 1
    path.write_bytes(bytes(data))
    what = "baseline JPEG frame with a flipped bit that makes gdcm abort"
    return Hostile(path, what, OK_OR_ERROR)


def truncated(directory: Path, syntax: str, where: str = "pixels") -> Hostile:
    """A valid file in ``syntax`` cut inside its ``where`` (``header`` or ``pixels``)."""
    path = valid(directory, syntax).path
    path = path.rename(path.with_name(f"truncated-{where}-{path.name}"))
    size = path.stat().st_size
    if UID(syntax).is_deflated:
        keep = size // 4 if where == "header" else size - 16
    else:
        start = pixel_data_offset(path)
        keep = start // 2 if where == "header" else start + (size - start) // 2
    truncate(path, keep)
    name = UID(syntax).name
    return Hostile(path, f"{name} cut inside the {where} ({keep} of {size} bytes)", NOT_OK)


def codestream_cut(directory: Path, syntax: str) -> Hostile:
    """A well-formed file in an encapsulated ``syntax`` whose frame's codestream is cut in
    half: every length in the file is right, only the stream stops early. libjpeg-turbo
    and libjpeg fill the missing rows of a cut JPEG stream and report success."""
    from pydicom import dcmread
    from pydicom.encaps import encapsulate, generate_frames

    path = valid(directory, syntax).path
    path = path.rename(path.with_name(f"codestream-cut-{path.name}"))
    ds = dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    ds.save_as(path)
    name = UID(syntax).name
    return Hostile(
        path, f"{name} codestream cut to {len(frame) // 2} of {len(frame)} bytes", ONLY_ERROR
    )


def _slug(value: object) -> str:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return "".join(c if c.isalnum() or c == "." else "-" for c in text.strip()).strip("-")


#: The factories that need no argument but the directory (the header-value ones).
HEADER_CASES: tuple[Callable[[Path], Hostile], ...] = (
    window_center_not_a_number,
    rescale_slope_two_values,
    samples_per_pixel_two_values,
    photometric_two_values,
    non_finite_rescale_slope,
    non_finite_window_width,
    nul_in_strings,
    nested_sequence_bomb,
)
#: Syntaxes whose stream header names the frame size (RLE's does not, its segments do).
MISMATCH_SYNTAXES = (JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless)
