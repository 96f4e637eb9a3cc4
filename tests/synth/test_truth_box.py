"""The abnormality box of synth's ground truth: it bounds what the renderer really drew.

Hardware: the image minus the same view rendered without it (same random streams) is
the metal; its strong pixels must lie in the box. Fractures move a whole fragment, so
that difference covers the fragment; the break itself is where the fractured bone
differs both from the intact bone and from the intact bone moved as the fragment was.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from batchfrac.datasets.archive import BOX_COLUMNS
from batchfrac.enums import Bone
from batchfrac.synth import SynthConfig, generate_archive, generate_mura
from batchfrac.synth.abnormal import (
    Abnormality,
    Injury,
    fracture,
    fracture_extent,
    fragment_motion,
)
from batchfrac.synth.anatomy import VIEWS, View
from batchfrac.synth.raster import piece_attenuation, texture_field
from batchfrac.synth.render import PixelBox, render_view_with_box
from batchfrac.synth.shapes import long_bone, similarity

#: Stored sizes larger than the 640 px drawing canvas, so the box goes through the resize.
SIZES = ((1200, 900), (700, 1100))


def _pair(
    bone: Bone, view: View, kind: Abnormality, seed: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, PixelBox | None]:
    """(without, with the abnormality, its box): same anatomy, noise and collimation."""

    def draw(injury: Injury | None) -> tuple[np.ndarray, PixelBox | None]:
        anatomy, image = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
        return render_view_with_box(bone, view, size, anatomy, image, injury, "R")

    plain, no_box = draw(None)
    assert no_box is None
    injured, box = draw(Injury.draw(kind, np.random.default_rng([seed, 3])))
    return plain, injured, box


def _inside(box: PixelBox, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


@pytest.mark.parametrize("bone", list(Bone))
def test_hardware_pixels_lie_in_a_tight_box(bone: Bone) -> None:
    for seed, size in enumerate(SIZES):
        view = VIEWS[bone][seed % len(VIEWS[bone])]
        plain, injured, box = _pair(bone, view, Abnormality.HARDWARE, seed, size)
        assert box is not None
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= size[1] and 0 <= y0 < y1 <= size[0]
        diff = np.abs(injured - plain)
        ys, xs = np.nonzero(diff > 0.5 * diff.max())
        assert _inside(box, ys, xs).all(), (bone, view, box)
        # tight: the bounding box of the visible metal (over bone it changes the image
        # less than over air, hence the lower threshold) fills the box
        ys, xs = np.nonzero(diff > 0.25 * diff.max())
        metal_area = (xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min())
        assert metal_area >= 0.9 * (x1 - x0) * (y1 - y0), (bone, view, box)


def test_fracture_break_lies_in_the_extent_box() -> None:
    shape = (400, 300)
    for seed in range(25):
        rng = np.random.default_rng([seed, 0])
        place = similarity(rng.uniform(-40, 40), 400 * rng.uniform(0.5, 0.9), (150.0, 200.0))
        piece = long_bone("shaft", [[0.0, -0.4], [0.0, 0.4]], (0.07, 0.05, 0.07))
        piece = piece.transformed(place)
        texture = texture_field(shape, rng, grain=0.8)
        intact = piece_attenuation(piece, shape, 20.0, texture)
        injury = Injury.draw(Abnormality.FRACTURE, np.random.default_rng([seed, 9]))
        broken = fracture(intact, piece, injury, shape[0])
        motion = fragment_motion(piece, injury, shape, shape[0])
        displaced = cv2.warpAffine(intact, motion, (shape[1], shape[0]), flags=cv2.INTER_LINEAR)
        eps = 0.05 * float(intact.max())
        ys, xs = np.nonzero((np.abs(broken - intact) > eps) & (np.abs(broken - displaced) > eps))
        assert xs.size > 20  # there is a break to find
        ey, ex = np.nonzero(fracture_extent(intact, piece, injury, shape[0]))
        box = (int(ex.min()), int(ey.min()), int(ex.max()) + 1, int(ey.max()) + 1)
        assert _inside(box, ys, xs).all(), seed
        # a fracture line, not the bone: small next to the bone's footprint
        assert (box[2] - box[0]) * (box[3] - box[1]) < 0.25 * (intact > 0).sum()


@pytest.mark.parametrize("bone", list(Bone))
def test_rendered_fracture_box_is_where_the_image_changed(bone: Bone) -> None:
    for seed, size in enumerate(SIZES):
        view = VIEWS[bone][seed % len(VIEWS[bone])]
        plain, injured, box = _pair(bone, view, Abnormality.FRACTURE, seed, size)
        assert box is not None
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= size[1] and 0 <= y0 < y1 <= size[0]
        assert (x1 - x0) * (y1 - y0) < 0.05 * size[0] * size[1]
        changed = np.abs(injured - plain) > 0.05
        # the box sits on the break: most of it changed, far more than of the image
        # (where the moved fragment and the swelling changed too)
        inside = float(changed[y0:y1, x0:x1].mean())
        assert inside >= 0.5 and inside >= 3 * float(changed.mean()), (bone, view, box)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _check_truth_boxes(rows: list[dict[str, str]], sizes: dict[str, tuple[int, int]]) -> int:
    boxes = 0
    for row in rows:
        values = [row[c] for c in BOX_COLUMNS]
        if row["abnormality_visible"] == "0":
            assert values == ["", "", "", ""], row["path"]
            continue
        x0, y0, x1, y1 = map(int, values)
        rows_, cols = sizes[row["path"]]
        assert 0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows_, row["path"]
        boxes += 1
    return boxes


def test_archive_truth_has_a_box_exactly_where_the_abnormality_is_visible(
    tmp_path: Path,
) -> None:
    generate_archive(tmp_path, SynthConfig(studies=7, seed=3, min_size=96, max_size=128))
    rows = _rows(tmp_path / "ground_truth.csv")
    sizes = {r["path"]: (int(r["rows"]), int(r["columns"])) for r in rows}
    assert _check_truth_boxes(rows, sizes) == sum(r["abnormality_visible"] == "1" for r in rows)
    assert any(r["abnormality_visible"] == "1" for r in rows)


def test_mura_truth_boxes_are_in_png_pixels(tmp_path: Path) -> None:
    config = SynthConfig(studies=7, seed=3, mura_sides=(96, 128))
    generate_mura(tmp_path, config)
    rows = _rows(tmp_path / "ground_truth.csv")
    sizes = {}
    for row in rows:
        png = cv2.imread(str(tmp_path / row["path"]), cv2.IMREAD_UNCHANGED)
        sizes[row["path"]] = png.shape[:2]
    assert _check_truth_boxes(rows, sizes) == sum(r["abnormality_visible"] == "1" for r in rows)
