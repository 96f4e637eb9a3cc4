"""Thumbnails and heatmap overlays for reports: sizes, colours where the map is hot, PNG."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from batchfrac.localisation import efficientnet_grid
from batchfrac.overlay import png_bytes, render_overlay, render_thumbnail
from batchfrac.preprocess import PreprocessSpec, letterbox_geometry


def _ramp(rows: int, columns: int) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, columns, dtype=np.float32), (rows, 1))


class TestThumbnail:
    @pytest.mark.parametrize(("shape", "expected"), [((2000, 1000), (256, 128)),
                                                     ((100, 80), (100, 80))])  # fmt: skip
    def test_long_side_shrinks_to_the_limit_never_grows(self, shape, expected) -> None:
        thumb = render_thumbnail(_ramp(*shape))
        assert thumb.shape == (*expected, 3) and thumb.dtype == np.uint8
        assert (thumb[..., 0] == thumb[..., 1]).all() and (thumb[..., 1] == thumb[..., 2]).all()
        assert thumb[:, 0].max() < 5 and thumb[:, -1].min() > 250  # the ramp survives

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
        np.testing.assert_array_equal(out, render_thumbnail(image, max_side=300))

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
