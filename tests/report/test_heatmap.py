"""Heatmaps on radiographs: the B0 cell grid, peaks in stored pixels, thumbnails and overlays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from batchfrac.ingest.preprocess import PreprocessSpec, letterbox_geometry
from batchfrac.report.heatmap import (
    CamGrid,
    cam_on_input,
    efficientnet_grid,
    heatmap_peak,
    png_bytes,
    render_overlay,
    render_thumbnail,
)

PLAIN = PreprocessSpec(channels=("image", "image", "image"))
SHAPES = [(914, 768), (768, 1014), (2500, 2048), (300, 200), (200, 300), (512, 512), (224, 100),
          (3000, 1001), (97, 1500), (513, 511)]  # fmt: skip


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


def _ramp(rows: int, columns: int) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, columns, dtype=np.float32), (rows, 1))


class TestThumbnail:
    @pytest.mark.parametrize(("shape", "expected"), [((2000, 1000), (256, 128)),
                                                     ((100, 80), (100, 80))])  # fmt: skip
    def test_long_side_shrinks_to_the_limit_never_grows(self, shape, expected) -> None:
        thumb = render_thumbnail(_ramp(*shape))
        assert thumb.shape == expected and thumb.dtype == np.uint8  # grey
        assert thumb[:, 0].max() < 5 and thumb[:, -1].min() > 250  # the ramp survives
        data = np.frombuffer(png_bytes(thumb), np.uint8)
        np.testing.assert_array_equal(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), thumb)

    def test_refuses_a_colour_image(self) -> None:
        with pytest.raises(ValueError):
            render_thumbnail(np.zeros((10, 10, 3), np.float32))


class TestOverlay:
    def test_colour_lands_where_the_map_is_hot_and_nowhere_else(self) -> None:
        rows, columns = 1800, 1200  # tall: letterboxed left and right
        spec = PreprocessSpec()
        geometry = letterbox_geometry(rows, columns, spec)
        image = np.full((rows, columns), 0.5, np.float32)
        cam = np.zeros((7, 7), np.float32)
        cam[1, 4] = 1.0  # a cell inside the content
        out = render_overlay(image, cam, geometry)
        assert out.dtype == np.uint8 and out.shape == (512, round(512 * columns / rows), 3)
        # where the hot cell's centre lands on the picture
        grid = efficientnet_grid(spec.image_size)
        x, y = geometry.to_image(grid.offset + grid.stride * 4, grid.offset + grid.stride * 1)
        scale = out.shape[0] / rows
        hot = out[int(y * scale), int(x * scale)].astype(int)
        assert hot[0] > hot[2] + 60  # JET's red end, blended over grey
        # far from it the radiograph shows unchanged (grey)
        cold = out[-5, 5].astype(int)
        assert cold[0] == cold[1] == cold[2] == 128

    def test_a_zero_map_leaves_the_thumbnail(self) -> None:
        image = _ramp(900, 700)
        geometry = letterbox_geometry(900, 700, PreprocessSpec())
        out = render_overlay(image, np.zeros((7, 7)), geometry, max_side=300)
        grey = render_thumbnail(image, max_side=300)
        np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))

    def test_a_reduced_display_image_gets_the_same_picture(self) -> None:
        # the display image may be decoded at half resolution: same field, same overlay
        rows, columns = 1600, 1200
        geometry = letterbox_geometry(rows, columns, PreprocessSpec())
        cam = np.random.default_rng(0).uniform(size=(7, 7)).astype(np.float32)
        full = render_overlay(_ramp(rows, columns), cam, geometry, max_side=400)
        half = render_overlay(_ramp(rows // 2, columns // 2), cam, geometry, max_side=400)
        assert full.shape == half.shape
        assert np.abs(full.astype(int) - half.astype(int)).max() <= 2


def test_png_bytes_round_trip_rgb_and_grey() -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    back = cv2.imdecode(np.frombuffer(png_bytes(rgb), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back[..., ::-1], rgb)  # OpenCV reads BGR
    grey = np.arange(600, dtype=np.uint8).reshape(20, 30)
    back = cv2.imdecode(np.frombuffer(png_bytes(grey), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, grey)
    with pytest.raises(ValueError):
        png_bytes(rgb.astype(np.float32))
