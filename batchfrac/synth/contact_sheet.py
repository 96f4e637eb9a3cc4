"""A labelled contact sheet of synthetic radiographs: one row per bone, normal and abnormal."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..enums import Bone
from .abnormal import Abnormality
from .anatomy import VIEWS
from .plan import stream
from .render import render_radiograph

#: Columns of the sheet: (title, abnormality).
COLUMNS: tuple[tuple[str, Abnormality | None], ...] = (
    ("normal", None),
    ("fracture", Abnormality.FRACTURE),
    ("hardware", Abnormality.HARDWARE),
)


def _label(tile: np.ndarray, text: str) -> None:
    scale = tile.shape[0] / 560.0
    thick = max(1, round(scale * 1.6))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(tile, (0, 0), (tw + 8, th + base + 8), 0, -1)
    cv2.putText(tile, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)


def render_contact_sheet(seed: int = 0, tile: int = 320) -> np.ndarray:
    """uint8 grid: rows = the seven bones, columns = normal, fracture, hardware.

    The three images of a row share one random state, so they show the same anatomy
    and differ only by the abnormality.
    """
    rows = []
    for b, bone in enumerate(Bone):
        cells = []
        for title, kind in COLUMNS:
            img = render_radiograph(
                bone, stream(seed, 7, b), (tile, tile), None if kind is None else kind.value,
                VIEWS[bone][0].value,
            )  # fmt: skip
            cell = np.rint(img * 255).astype(np.uint8)
            _label(cell, f"{bone.value} {VIEWS[bone][0].value} - {title}")
            cells.append(np.pad(cell, 2))
        rows.append(np.hstack(cells))
    return np.vstack(rows)


def write_contact_sheet(path: Path, seed: int = 0, tile: int = 320) -> Path:
    """Render the contact sheet and save it as a PNG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", render_contact_sheet(seed, tile))
    if not ok:
        raise RuntimeError("OpenCV could not encode the contact sheet")
    path.write_bytes(buf.tobytes())
    return path
