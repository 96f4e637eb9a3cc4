"""``batchfrac preview``: a labelled panel of every preprocessing filter on one image.

Like figures 7 and 9 of Patel et al.: the decoded image next to CLAHE, Sobel,
Prewitt, Roberts, Canny, Laplacian sharpening (x1.5 and x3.0) and the final model
input, so a site can check what the network sees before scanning an archive.
:func:`render_panel` is pure (array in, array out); the file helpers below it read
one input file and write the panel atomically inside the output folder.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .enums import Reason
from .errors import FileRejected
from .ingest.filters import canny, clahe, laplacian_sharpen, letterbox, prewitt, roberts, sobel
from .ingest.preprocess import PreprocessSpec, preprocess, to_working_size

__all__ = [
    "TILE_SIZE",
    "LABEL_HEIGHT",
    "GAP",
    "COLUMNS",
    "PICTURE_SUFFIXES",
    "panel_tiles",
    "render_panel",
    "read_picture",
    "read_frames",
    "preview_path",
    "write_png",
]

#: Side of one square tile of the panel, in pixels.
TILE_SIZE = 320
#: Height of the black label band above each tile.
LABEL_HEIGHT = 24
#: Grey margin around and between tiles.
GAP = 4
#: Tiles per panel row.
COLUMNS = 3
#: Suffixes read as ordinary pictures (MURA PNGs); everything else is read as DICOM.
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})

_BACKGROUND = 48
_LAPLACIAN_FACTORS = (1.5, 3.0)  # the two factors the paper shows
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_STEM = 100


def panel_tiles(image: np.ndarray, spec: PreprocessSpec) -> list[tuple[str, np.ndarray]]:
    """The labelled tiles of the panel, in order, as float32 images in ``[0, 1]``.

    Filters run on the working-size image with ``spec``'s parameters, exactly as
    :func:`batchfrac.ingest.preprocess.preprocess` would; the last tile is the model
    input itself, ``(S, S, 3)`` in the model's RGB channel order.
    """
    working = to_working_size(image, spec)
    tiles = [
        ("original", working),
        (f"CLAHE clip {spec.clahe_clip:g}", clahe(working, spec.clahe_clip, spec.clahe_tiles)),
        ("Sobel", sobel(working)),
        ("Prewitt", prewitt(working)),
        ("Roberts", roberts(working)),
        (
            f"Canny {spec.canny_low:g}-{spec.canny_high:g}",
            canny(working, spec.canny_low, spec.canny_high),
        ),
    ]
    for factor in _LAPLACIAN_FACTORS:
        tiles.append((f"Laplacian x{factor:.1f}", laplacian_sharpen(working, factor)))
    tiles.append(("input " + "/".join(spec.channels), preprocess(image, spec)))
    return tiles


def _to_bgr_tile(picture: np.ndarray, tile: int) -> np.ndarray:
    u8 = cv2.convertScaleAbs(picture, alpha=255.0)
    bgr = cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR) if u8.ndim == 2 else u8[..., ::-1]
    return letterbox(np.ascontiguousarray(bgr), tile)


def render_panel(image: np.ndarray, spec: PreprocessSpec, *, tile: int = TILE_SIZE) -> np.ndarray:
    """Render :func:`panel_tiles` of a 2-D float32 ``[0, 1]`` image as one uint8 picture.

    Tiles are letterboxed to ``tile x tile`` under a ``LABEL_HEIGHT`` label band,
    ``COLUMNS`` per row, ``GAP`` pixels apart and from the border. The result is
    ``(H, W, 3)`` uint8 in OpenCV's BGR order, ready for ``cv2.imwrite``.
    """
    tiles = panel_tiles(image, spec)
    rows = math.ceil(len(tiles) / COLUMNS)
    height = rows * (LABEL_HEIGHT + tile) + (rows + 1) * GAP
    width = COLUMNS * tile + (COLUMNS + 1) * GAP
    panel = np.full((height, width, 3), _BACKGROUND, dtype=np.uint8)
    for i, (label, picture) in enumerate(tiles):
        y = GAP + (i // COLUMNS) * (LABEL_HEIGHT + tile + GAP)
        x = GAP + (i % COLUMNS) * (tile + GAP)
        panel[y : y + LABEL_HEIGHT, x : x + tile] = 0
        cv2.putText(
            panel,
            label,
            (x + 4, y + LABEL_HEIGHT - 8),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        panel[y + LABEL_HEIGHT : y + LABEL_HEIGHT + tile, x : x + tile] = _to_bgr_tile(
            picture, tile
        )
    return panel


def read_picture(path: Path) -> np.ndarray:
    """Read a PNG/JPEG (8 or 16 bit, colour converted to grey) as float32 in ``[0, 1]``.

    Raises :class:`FileRejected`: ``read_error`` when the file cannot be read,
    ``decode_error`` when OpenCV cannot decode it.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise FileRejected(Reason.READ_ERROR, f"{path.name}: {exc.strerror or exc}") from exc
    grey = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH) if data.size else None
    if grey is None or grey.dtype not in (np.uint8, np.uint16):
        raise FileRejected(Reason.DECODE_ERROR, f"not a readable 8/16-bit picture: {path.name}")
    out = grey.astype(np.float32)
    out *= np.float32(1.0 / (255 if grey.dtype == np.uint8 else 65535))
    return out


def read_frames(path: Path) -> list[np.ndarray]:
    """The display-ready frames of one file: PNG/JPEG by suffix, DICOM otherwise.

    DICOM goes through :func:`batchfrac.ingest.header.read_header` and
    :func:`batchfrac.ingest.decode.decode` with the default policy, exactly as a scan
    would; their :class:`FileRejected` errors propagate.
    """
    if path.suffix.lower() in PICTURE_SUFFIXES:
        return [read_picture(path)]
    from .ingest.decode import DecodePolicy, decode
    from .ingest.header import read_header

    return list(decode(path, read_header(path), DecodePolicy()))


def _safe_stem(name: str) -> str:
    stem = _UNSAFE_CHARS.sub("_", name).lstrip(".-_")[:_MAX_STEM]
    return stem or "image"


def preview_path(out_dir: Path, source: Path) -> Path:
    """``out_dir/<stem>_preview.png`` with ``source``'s stem reduced to ``[A-Za-z0-9_.-]``.

    The stem never starts with a dot or dash and is at most 100 characters, so the
    result is always a plain file directly inside ``out_dir``.
    """
    target = out_dir / f"{_safe_stem(source.stem)}_preview.png"
    if target.parent != out_dir or target.name in {".", ".."}:
        raise ValueError(f"refusing preview path outside {out_dir}: {target}")
    return target


def write_png(picture: np.ndarray, target: Path) -> Path:
    """Write ``picture`` (uint8, BGR or grey) to ``target`` atomically (temp file + rename)."""
    ok, encoded = cv2.imencode(".png", picture)
    if not ok:
        raise ValueError(f"OpenCV could not encode a PNG of shape {picture.shape}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(encoded.tobytes())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
