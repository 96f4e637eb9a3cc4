"""The catalogue of hostile cases (:func:`hostile_cases`) and a mixed malformed archive of
them with a few valid files (:func:`build_malformed_archive`) for end-to-end scans."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from tests import hostile, hostile_bombs
from tests.hostile import (
    HEADER_CASES,
    MISMATCH_SYNTAXES,
    NOT_OK,
    Hostile,
    HostileSizes,
    sizes_from_env,
)
from tests.more_encoders import ALL_SYNTAXES

Factory = Callable[[Path], Hostile]


def hostile_cases(sizes: HostileSizes | None = None) -> dict[str, Factory]:
    """Every hostile case of issue 10 by a stable id, each a one-argument factory."""
    sizes = sizes or sizes_from_env()
    partial = functools.partial
    cases: dict[str, Factory] = {factory.__name__: factory for factory in HEADER_CASES}
    cases |= {
        "non_finite_rescale_slope_inf": partial(hostile.non_finite_rescale_slope, value=b"-inf"),
        "non_finite_window_width_nan": partial(hostile.non_finite_window_width, value=b"NaN "),
        "tiny_1x1": partial(hostile.tiny_image, side=1),
        "tiny_8x8": partial(hostile.tiny_image, side=8),
        "dimensions_overflow": hostile.dimensions_overflow,
        "colour_cine": partial(hostile.colour_cine, frames=sizes.cine_frames),
        "colour_cine_jpeg": partial(hostile.colour_cine, frames=sizes.cine_frames, jpeg=True),
        "rle_segments_disagree": hostile.rle_segments_disagree,
        "rle_panic": hostile.rle_panic,
        "gdcm_abort": hostile.gdcm_abort,
        "gdcm_abort_jpeg": hostile.gdcm_abort_jpeg,
        "stream_larger_than_header": partial(
            hostile_bombs.stream_larger_than_header, side=sizes.stream_side
        ),
        "deflate_bomb": partial(hostile_bombs.deflate_bomb, size=sizes.deflated_element),
        "huge_private_element": partial(
            hostile_bombs.huge_private_element, size=sizes.private_element
        ),
        "surplus_pixel_data": partial(hostile_bombs.surplus_pixel_data, size=sizes.surplus),
        "many_tiny_frames": partial(hostile_bombs.many_tiny_frames, frames=sizes.tiny_frames),
    }
    for syntax in MISMATCH_SYNTAXES:
        cases[f"stream_larger_{syntax}"] = partial(hostile.stream_header_mismatch, syntax=syntax)
        cases[f"stream_transposed_{syntax}"] = partial(
            hostile.stream_header_mismatch, syntax=syntax, stream_shape=(48, 64)
        )
    cases[f"stream_larger_{RLELossless}"] = partial(
        hostile.stream_header_mismatch, syntax=RLELossless
    )
    for syntax in ALL_SYNTAXES:
        for where in ("header", "pixels"):
            cases[f"truncated_{where}_{syntax}"] = partial(
                hostile.truncated, syntax=syntax, where=where
            )
        if UID(syntax).is_encapsulated:
            cases[f"codestream_cut_{syntax}"] = partial(hostile.codestream_cut, syntax=syntax)
    return cases


#: Valid files laid out beside the hostile ones: they must come out ``ok``.
VALID_SYNTAXES = (ExplicitVRLittleEndian, RLELossless, JPEGLSLossless)


def build_malformed_archive(root: Path, sizes: HostileSizes | None = None) -> dict[str, Hostile]:
    """Lay out every hostile case (one folder each), three valid files and a text file
    under ``root``; returns each file's path relative to ``root`` with its expectation."""
    layout: dict[str, Hostile] = {}
    for name, factory in hostile_cases(sizes).items():
        case = factory(root / _folder(name))
        layout[case.path.relative_to(root).as_posix()] = case
    for syntax in VALID_SYNTAXES:
        case = hostile.valid(root / "valid", syntax)
        layout[case.path.relative_to(root).as_posix()] = case
    notes = root / "valid" / "notes.txt"
    notes.write_text("not a radiograph\n")
    layout["valid/notes.txt"] = Hostile(notes, "a text file", NOT_OK)
    return layout


def _folder(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
