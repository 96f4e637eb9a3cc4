"""Letterbox geometry, heatmap peaks and the pointing game: pure numpy, checked against
what :func:`batchfrac.preprocess.preprocess` really does to an image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from batchfrac.localisation import (
    BOX_COLUMNS,
    Box,
    CamGrid,
    PointingCase,
    PointingGame,
    cam_on_input,
    efficientnet_grid,
    heatmap_peak,
    pointing_rows,
    read_boxes,
)
from batchfrac.preprocess import PreprocessSpec, letterbox_geometry, preprocess

PLAIN = PreprocessSpec(channels=("image", "image", "image"))
SHAPES = [(914, 768), (768, 1014), (2500, 2048), (300, 200), (200, 300), (512, 512), (224, 100),
          (3000, 1001), (97, 1500), (513, 511)]  # fmt: skip


class TestLetterboxGeometry:
    @pytest.mark.parametrize("shape", SHAPES)
    def test_content_is_where_preprocess_puts_the_image(self, shape: tuple[int, int]) -> None:
        rows, columns = shape
        x = preprocess(np.ones(shape, np.float32), PLAIN)
        g = letterbox_geometry(rows, columns, PLAIN)
        filled = x[..., 0] > 0
        ys, xs = np.nonzero(filled)
        assert (ys.min(), ys.max() + 1) == (g.top, g.top + g.height)
        assert (xs.min(), xs.max() + 1) == (g.left, g.left + g.width)
        assert filled[g.content].all()

    @pytest.mark.parametrize("shape", SHAPES)
    def test_points_round_trip(self, shape: tuple[int, int]) -> None:
        g = letterbox_geometry(*shape, PreprocessSpec())
        rng = np.random.default_rng(0)
        x, y = rng.uniform(0, shape[1] - 1, 50), rng.uniform(0, shape[0] - 1, 50)
        back = g.to_image(*g.to_input(x, y))
        np.testing.assert_allclose(back, (x, y), atol=1e-9)
        # the image's corners land on the content's corners
        u, v = g.to_input(-0.5, -0.5)
        assert (u, v) == pytest.approx((g.left - 0.5, g.top - 0.5))
        u, v = g.to_input(shape[1] - 0.5, shape[0] - 0.5)
        assert (u, v) == pytest.approx((g.left + g.width - 0.5, g.top + g.height - 0.5))

    @pytest.mark.parametrize("shape", [(914, 768), (768, 1014), (2500, 2048), (300, 200)])
    def test_a_bright_dot_is_found_again(self, shape: tuple[int, int]) -> None:
        rows, columns = shape
        g = letterbox_geometry(rows, columns, PLAIN)
        rng = np.random.default_rng(sum(shape))
        for _ in range(5):
            x, y = rng.uniform(0.05, 0.95) * columns, rng.uniform(0.05, 0.95) * rows
            image = np.zeros(shape, np.float32)
            radius = 1.5 / g.scale_x  # a few input pixels wide after shrinking
            yy, xx = np.ogrid[:rows, :columns]
            image[:] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius**2))
            weights = preprocess(image, PLAIN)[..., 0].astype(np.float64)
            vv, uu = np.mgrid[: weights.shape[0], : weights.shape[1]]
            u, v = (weights * uu).sum() / weights.sum(), (weights * vv).sum() / weights.sum()
            found = g.to_image(u, v)
            # within a quarter of an input pixel, in stored pixels
            assert found == pytest.approx((x, y), abs=0.25 / g.scale_x), (shape, x, y)

    def test_refuses_an_empty_image(self) -> None:
        with pytest.raises(ValueError):
            letterbox_geometry(0, 10, PLAIN)


class TestCamGrid:
    def test_efficientnet_cells_sit_half_a_cell_down_and_right(self) -> None:
        assert efficientnet_grid(224) == CamGrid(32.0, 31.0)
        assert efficientnet_grid(256) == CamGrid(32.0, 31.0)
        assert efficientnet_grid(240) == CamGrid(32.0, 15.0)  # 15 px is odd at stage 5

    def test_each_cell_value_sits_at_its_centre(self) -> None:
        rng = np.random.default_rng(1)
        cam = rng.uniform(size=(7, 7)).astype(np.float32)
        up = cam_on_input(cam, 224)
        centres = (31 + 32 * np.arange(7)).astype(int)
        np.testing.assert_allclose(up[np.ix_(centres, centres)], cam, atol=1e-6)
        # a plain resize's grid is the other convention
        plain = cam_on_input(cam, 224, CamGrid(32.0, 15.5))
        np.testing.assert_allclose(
            plain, cv2.resize(cam, (224, 224), interpolation=cv2.INTER_LINEAR), atol=1e-3
        )


def _one_hot(row: int, column: int) -> np.ndarray:
    cam = np.zeros((7, 7), np.float32)
    cam[row, column] = 1.0
    return cam


class TestHeatmapPeak:
    def test_peak_is_the_hot_cells_centre_in_stored_pixels(self) -> None:
        g = letterbox_geometry(896, 672, PreprocessSpec())  # 224 x 168 content, left = 28
        for row, column in ((1, 2), (5, 3), (3, 4)):
            peak = heatmap_peak(_one_hot(row, column), g)
            expected = g.to_image(31 + 32 * column, 31 + 32 * row)
            assert peak == (round(float(expected[0])), round(float(expected[1])))

    def test_padding_is_never_the_peak(self) -> None:
        g = letterbox_geometry(448, 896, PreprocessSpec())  # rows 56..168 hold the image
        cam = _one_hot(0, 3) * 2 + _one_hot(2, 3)  # the hottest cell is in the padding
        x, y = heatmap_peak(cam, g)
        assert 0 <= y < 448 and 0 <= x < 896
        v = g.to_input(x, y)[1]
        assert g.top <= v < g.top + g.height

    def test_a_flat_border_peak_resolves_to_its_middle_not_a_corner(self) -> None:
        g = letterbox_geometry(224, 224, PreprocessSpec())
        x, y = heatmap_peak(_one_hot(0, 0), g)  # flat from the edge to the centre, 31
        assert (x, y) == (15, 15) or (x, y) == (16, 16)

    def test_zero_map_has_no_peak(self) -> None:
        assert heatmap_peak(np.zeros((7, 7)), letterbox_geometry(300, 200, PLAIN)) is None


class TestBoxesAndPointing:
    def test_box(self) -> None:
        box = Box(10, 20, 30, 60)
        assert box.area == 800
        assert box.contains(10, 20) and box.contains(29, 59)
        assert not box.contains(30, 20) and not box.contains(10, 60)
        assert box.grown(15, 70, 40) == Box(0, 5, 40, 70)
        with pytest.raises(ValueError):
            Box(5, 5, 5, 9)

    def test_read_boxes(self, tmp_path: Path) -> None:
        csv = tmp_path / "labels.csv"
        header = ",".join(["path", "bone", "label", *BOX_COLUMNS])
        csv.write_text(
            f"{header}\na\\b.dcm,hand,abnormal,1,2,3,4\nc.dcm,hand,normal,,,,\n", encoding="utf-8"
        )
        assert read_boxes(csv) == {"a/b.dcm": Box(1, 2, 3, 4)}
        csv.write_text(f"{header}\na.dcm,hand,abnormal,1,2,,\n", encoding="utf-8")
        with pytest.raises(ValueError, match="labels.csv:2"):
            read_boxes(csv)
        csv.write_text("path,bone,label\na.dcm,hand,abnormal\n", encoding="utf-8")
        assert read_boxes(csv) == {}

    def test_rows_count_hits_near_hits_and_chance(self) -> None:
        box = Box(40, 40, 60, 60)  # 400 of 10 000 pixels; grown by 10: 40 x 40 = 1600
        cases = [
            PointingCase("a", "hand", box, 100, 100, (50, 50)),  # in
            PointingCase("b", "hand", box, 100, 100, (65, 50)),  # near
            PointingCase("c", "hand", box, 100, 100, (90, 90)),  # far
            PointingCase("d", "elbow", box, 100, 100, None),  # no peak: a miss
        ]
        rows = {r["bone"]: r for r in pointing_rows(cases, 0.10, bones=("elbow", "hand"))}
        assert list(rows) == ["elbow", "hand", "overall"]
        hand, overall = rows["hand"], rows["overall"]
        assert (hand["n"], hand["hits"], hand["near_hits"]) == (3, 1, 2)
        assert hand["chance"] == pytest.approx(0.04)
        assert hand["near_chance"] == pytest.approx(0.16)
        assert (overall["n"], overall["hits"], overall["near_hits"], overall["no_peak"]) == (
            4, 1, 2, 1)  # fmt: skip
        game = PointingGame(tuple(cases), 0.10)
        assert [r["near_hit"] for r in game.image_rows()] == [True, True, False, False]
