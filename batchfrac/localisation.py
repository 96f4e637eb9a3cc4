"""Where a heatmap points, against where the abnormality is: boxes, peaks, the pointing game.

Pure numpy/OpenCV (no Keras): a class-activation map over the model input (e.g.
Grad-CAM's 7 x 7 grid at 224 px, :mod:`batchfrac.models.gradcam`) is brought back to
stored-image pixels through the preprocessing's :class:`~batchfrac.preprocess.LetterboxGeometry`.

The pointing game (Zhang et al., "Top-down neural attention by excitation backprop",
2016) counts a hit when the heatmap's peak falls inside the annotated box. Its chance
level is the share of the image a box covers: a uniformly random point lands in the box
with probability box area / image area.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .preprocess import LetterboxGeometry

#: Columns of a labels CSV that hold an image's abnormality box (``batchfrac synth``'s).
BOX_COLUMNS = ("abnormality_x0", "abnormality_y0", "abnormality_x1", "abnormality_y1")
#: Default growth of a box for the "or near" count: this share of the image's long side.
NEAR_MARGIN = 0.10
#: The pooled row of :func:`pointing_rows`.
OVERALL = "overall"
#: Relative tolerance of a tie for the maximum (interpolation rounds in float32).
_TIE = 1e-5


@dataclass(frozen=True)
class Box:
    """A box in stored-image pixels: columns ``x0 <= x < x1``, rows ``y0 <= y < y1``."""

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError(f"empty box {self}")

    @property
    def area(self) -> int:
        """Pixels inside."""
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def contains(self, x: int, y: int) -> bool:
        """Whether pixel ``(x, y)`` (column, row) lies inside."""
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def grown(self, margin: int, rows: int, columns: int) -> Box:
        """This box grown by ``margin`` pixels on every side, cut to the image."""
        return Box(
            max(self.x0 - margin, 0),
            max(self.y0 - margin, 0),
            min(self.x1 + margin, columns),
            min(self.y1 + margin, rows),
        )


def read_boxes(labels_csv: Path) -> dict[str, Box]:
    """``path`` -> abnormality box from a labels CSV with ``path`` and :data:`BOX_COLUMNS`.

    Rows with empty box cells have no box; a CSV without the columns gives ``{}``.
    Raises ``ValueError`` naming the line of a partly filled or malformed box.
    """
    boxes: dict[str, Box] = {}
    with open(labels_csv, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "path" not in columns or not all(c in columns for c in BOX_COLUMNS):
            return {}
        for n, record in enumerate(reader, start=2):
            cells = [(record[columns[c]] or "").strip() for c in BOX_COLUMNS]
            if not any(cells):
                continue
            try:
                box = Box(*(int(c) for c in cells))
            except ValueError as exc:
                raise ValueError(f"{labels_csv}:{n}: bad abnormality box {cells}: {exc}") from None
            boxes[(record[columns["path"]] or "").strip().replace("\\", "/")] = box
    return boxes


@dataclass(frozen=True)
class CamGrid:
    """Where a coarse map's cells sit in the model input: cell ``(i, j)`` is centred on
    input pixel ``(offset + stride * j, offset + stride * i)`` (column, row)."""

    stride: float
    offset: float


def efficientnet_grid(image_size: int, stages: int = 5) -> CamGrid:
    """The cells of EfficientNet-B0's ``top_activation`` in a square ``image_size`` input.

    B0 halves the resolution ``stages`` times, each time with a stride-2 convolution after
    Keras' ``correct_pad``: on an even size it pads one pixel less before than after, so
    output pixel ``j`` is centred on input pixel ``2j + 1``, not ``2j + 0.5``. Over five
    stages that moves every cell half a cell down and right: at 224 px cell ``j`` is
    centred on pixel ``32 j + 31``, where a plain resize of the map would put ``32 j + 15.5``.
    """
    stride, offset, size = 1.0, 0.0, image_size
    for _ in range(stages):
        offset += stride * (1 if size % 2 == 0 else 0)
        stride *= 2.0
        size = -(-size // 2)
    return CamGrid(stride, offset)


def cam_on_input(cam: np.ndarray, image_size: int, grid: CamGrid | None = None) -> np.ndarray:
    """A coarse map (h, w) resampled bilinearly onto the ``image_size``-square model
    input, each cell's value at its centre (``grid``, default :func:`efficientnet_grid`),
    the outer cells' values carried on to the edges."""
    cam = np.ascontiguousarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"expected one 2-D map, got shape {cam.shape}")
    grid = grid or efficientnet_grid(image_size)
    inverse = np.array(  # input pixel -> cell coordinates
        [[1 / grid.stride, 0.0, -grid.offset / grid.stride],
         [0.0, 1 / grid.stride, -grid.offset / grid.stride]]
    )  # fmt: skip
    return cv2.warpAffine(
        cam,
        inverse,
        (image_size, image_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def cam_on_image(
    cam: np.ndarray,
    geometry: LetterboxGeometry,
    shape: tuple[int, int],
    grid: CamGrid | None = None,
) -> np.ndarray:
    """The map over the image alone (padding cut away), resized to ``shape`` (rows, columns):
    any picture of the same field, e.g. a display image shrunk for a report."""
    content = cam_on_input(cam, geometry.image_size, grid)[geometry.content]
    rows, columns = shape
    return cv2.resize(
        np.ascontiguousarray(content), (columns, rows), interpolation=cv2.INTER_LINEAR
    )


def heatmap_peak(
    cam: np.ndarray, geometry: LetterboxGeometry, grid: CamGrid | None = None
) -> tuple[int, int] | None:
    """The stored-image pixel ``(x, y)`` (column, row) where the map peaks.

    The map is upsampled to the model input (bilinear, :func:`cam_on_input`) and searched
    inside the image's part of it only (never the letterbox padding); the peak input
    pixel is mapped back with ``geometry`` and rounded. ``None`` when the map is zero
    there (no peak); tied maxima resolve to the middle of the tied pixels.
    """
    content = cam_on_input(cam, geometry.image_size, grid)[geometry.content]
    top = float(content.max())
    if not top > 0.0:
        return None
    # Beyond the outer cells' centres the map is flat (carried on to the edge), so the
    # maximum may be a plateau: take its middle, not its first pixel (an image corner).
    vs, us = np.nonzero(content >= top * (1.0 - _TIE))
    k = int(np.argmin((vs - vs.mean()) ** 2 + (us - us.mean()) ** 2))
    x, y = geometry.to_image(us[k] + geometry.left, vs[k] + geometry.top)
    column = min(max(int(np.floor(x + 0.5)), 0), geometry.columns - 1)
    row = min(max(int(np.floor(y + 0.5)), 0), geometry.rows - 1)
    return column, row


@dataclass(frozen=True)
class PointingCase:
    """One abnormal image in the pointing game: its box, its image size and its peak."""

    key: str
    bone: str
    box: Box
    rows: int
    columns: int
    peak: tuple[int, int] | None

    def margin(self, share: float = NEAR_MARGIN) -> int:
        """The "near" margin in pixels: ``share`` of the image's long side."""
        return int(round(share * max(self.rows, self.columns)))

    def near_box(self, share: float = NEAR_MARGIN) -> Box:
        """The box grown by :meth:`margin`, cut to the image."""
        return self.box.grown(self.margin(share), self.rows, self.columns)

    def hit(self, share: float | None = None) -> bool:
        """Peak inside the box (``share`` None) or inside the box grown by ``share``."""
        if self.peak is None:
            return False
        box = self.box if share is None else self.near_box(share)
        return box.contains(*self.peak)

    def chance(self, share: float | None = None) -> float:
        """Probability that a uniformly random pixel of the image lands in the (grown) box."""
        box = self.box if share is None else self.near_box(share)
        return box.area / (self.rows * self.columns)


#: Columns of :func:`pointing_rows` (and of ``pointing.csv``).
POINTING_COLUMNS = (
    "bone",
    "n",
    "hits",
    "hit_rate",
    "chance",
    "near_hits",
    "near_hit_rate",
    "near_chance",
    "near_margin",
    "no_peak",
)


def _row(bone: str, cases: Sequence[PointingCase], share: float) -> dict[str, object]:
    n = len(cases)
    hits = sum(c.hit() for c in cases)
    near = sum(c.hit(share) for c in cases)
    return {
        "bone": bone,
        "n": n,
        "hits": hits,
        "hit_rate": hits / n,
        "chance": float(np.mean([c.chance() for c in cases])),
        "near_hits": near,
        "near_hit_rate": near / n,
        "near_chance": float(np.mean([c.chance(share) for c in cases])),
        "near_margin": share,
        "no_peak": sum(c.peak is None for c in cases),
    }


@dataclass(frozen=True)
class PointingGame:
    """The cases of one pointing game and the "near" margin it is reported with."""

    cases: tuple[PointingCase, ...]
    margin: float = NEAR_MARGIN

    def rows(self, bones: Sequence[str] = ()) -> list[dict[str, object]]:
        """Per bone and overall, see :func:`pointing_rows`."""
        return pointing_rows(self.cases, self.margin, bones)

    def image_rows(self) -> list[dict[str, object]]:
        """One JSON-ready record per image: its box, peak and verdicts."""
        return [
            {
                "path": c.key,
                "bone": c.bone,
                "rows": c.rows,
                "columns": c.columns,
                "box": [c.box.x0, c.box.y0, c.box.x1, c.box.y1],
                "peak": None if c.peak is None else list(c.peak),
                "hit": c.hit(),
                "near_hit": c.hit(self.margin),
            }
            for c in self.cases
        ]


def pointing_rows(
    cases: Iterable[PointingCase], share: float = NEAR_MARGIN, bones: Sequence[str] = ()
) -> list[dict[str, object]]:
    """Per bone (in ``bones`` order, then any other in sorted order) and ``overall``
    (pooled): hits inside the box and inside the box grown by ``share`` of the image's
    long side, each beside its chance level (mean box area / image area)."""
    if not 0.0 <= share or math.isnan(share):
        raise ValueError(f"margin share must be >= 0, got {share}")
    cases = list(cases)
    present = {c.bone for c in cases}
    order = [b for b in bones if b in present] + sorted(present - set(bones))
    rows = [_row(b, [c for c in cases if c.bone == b], share) for b in order]
    if cases:
        rows.append(_row(OVERALL, cases, share))
    return rows
