"""Pure filters of the preprocess stage, on synthetic images with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from batchfrac.ingest.filters import (
    canny,
    clahe,
    laplacian_sharpen,
    letterbox,
    prewitt,
    resize_long_side,
    roberts,
    sobel,
)

ROWS, COLS, STEP_COL = 40, 60, 30  # vertical step edge between columns 29 and 30


def vertical_step(low: float = 0.0, high: float = 1.0) -> np.ndarray:
    img = np.full((ROWS, COLS), low, dtype=np.float32)
    img[:, STEP_COL:] = high
    return img


def at_float_offset(img: np.ndarray, offset: int) -> np.ndarray:
    """A C-contiguous copy of ``img`` starting ``offset`` floats into a fresh buffer."""
    buffer = np.empty(img.size + 16, np.float32)
    view = buffer[offset : offset + img.size].reshape(img.shape)
    view[...] = img
    return view


def edge_columns(edges: np.ndarray) -> list[int]:
    return np.flatnonzero(edges.any(axis=0)).tolist()


GRADIENT_FILTERS = {"sobel": sobel, "prewitt": prewitt, "roberts": roberts}
ALL_EDGE_FILTERS = {**GRADIENT_FILTERS, "canny": lambda img: canny(img, 0.05, 0.1)}


class TestGradientFilters:
    @pytest.mark.parametrize("name", sorted(GRADIENT_FILTERS))
    def test_unit_step_is_one_and_only_at_the_step(self, name: str) -> None:
        out = GRADIENT_FILTERS[name](vertical_step())
        expected_cols = [STEP_COL - 1] if name == "roberts" else [STEP_COL - 1, STEP_COL]
        assert edge_columns(out) == expected_cols
        # the same response on every row: the step is vertical, the gradient is in x
        np.testing.assert_allclose(out[:, expected_cols], 1.0, rtol=1e-6)

    @pytest.mark.parametrize("name", sorted(GRADIENT_FILTERS))
    def test_horizontal_step_responds_along_rows(self, name: str) -> None:
        out = GRADIENT_FILTERS[name](np.ascontiguousarray(vertical_step().T))
        np.testing.assert_allclose(out, GRADIENT_FILTERS[name](vertical_step()).T, atol=1e-6)

    @pytest.mark.parametrize("name", sorted(GRADIENT_FILTERS))
    def test_scale_is_image_independent(self, name: str) -> None:
        f = GRADIENT_FILTERS[name]
        dark, bright = f(vertical_step(0.1, 0.3)), f(vertical_step(0.6, 0.8))
        np.testing.assert_allclose(dark, bright, atol=1e-6)
        assert dark.max() == pytest.approx(0.2, abs=1e-6)

    @pytest.mark.parametrize("name", ["sobel", "prewitt"])
    def test_corner_above_a_unit_step_is_clipped_to_one(self, name: str) -> None:
        # Around (r, c) the 3x3 patch is [[0, 0, 0], [0, *, 1], [1, 1, 1]]: raw magnitude
        # sqrt(20)/4 = 1.118 (Sobel) or sqrt(10)/3 = 1.054 (Prewitt) of a unit step.
        r, c = 10, 10
        img = np.zeros((24, 24), np.float32)
        img[r + 1 :, :] = 1.0
        img[r, c + 1 :] = 1.0
        out = GRADIENT_FILTERS[name](img)
        assert out[r, c] == 1.0
        assert out.max() == 1.0


class TestAllEdgeFilters:
    @pytest.mark.parametrize("name", sorted(ALL_EDGE_FILTERS))
    @pytest.mark.parametrize("value", [0.0, 0.37, 1.0])
    def test_constant_image_has_no_edges(self, name: str, value: float) -> None:
        out = ALL_EDGE_FILTERS[name](np.full((24, 31), value, dtype=np.float32))
        assert not out.any()

    @pytest.mark.parametrize("name", sorted(ALL_EDGE_FILTERS))
    def test_dtype_shape_range_and_input_untouched(self, name: str) -> None:
        img = np.random.default_rng(0).random((33, 47), dtype=np.float32)
        before = img.copy()
        out = ALL_EDGE_FILTERS[name](img)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert out.min() >= 0.0 and out.max() <= 1.0
        np.testing.assert_array_equal(img, before)

    @pytest.mark.parametrize("name", sorted(ALL_EDGE_FILTERS))
    def test_strided_view_equals_its_copy(self, name: str) -> None:
        img = np.random.default_rng(4).random((40, 60), dtype=np.float32)
        for view in (img.T, img[:, ::2]):
            np.testing.assert_array_equal(
                ALL_EDGE_FILTERS[name](view), ALL_EDGE_FILTERS[name](view.copy())
            )

    @pytest.mark.parametrize("name", sorted(ALL_EDGE_FILTERS))
    def test_result_does_not_depend_on_memory_alignment(self, name: str) -> None:
        img = np.random.default_rng(6).random((70, 53), dtype=np.float32)
        reference = ALL_EDGE_FILTERS[name](at_float_offset(img, 0))
        for offset in range(1, 8):
            out = ALL_EDGE_FILTERS[name](at_float_offset(img, offset))
            np.testing.assert_array_equal(out, reference)

    @pytest.mark.parametrize("name", sorted(ALL_EDGE_FILTERS))
    def test_rejects_colour_input(self, name: str) -> None:
        with pytest.raises(ValueError, match="2-D"):
            ALL_EDGE_FILTERS[name](np.zeros((8, 8, 3), dtype=np.float32))


class TestCanny:
    def test_step_gives_one_thin_line_along_the_step(self) -> None:
        edges = canny(vertical_step(), 0.05, 0.1)
        assert set(np.unique(edges).tolist()) == {0.0, 1.0}
        cols = edge_columns(edges)
        assert len(cols) == 1 and cols[0] in (STEP_COL - 1, STEP_COL)
        assert edges[:, cols[0]].all()

    def test_thresholds_are_on_the_sobel_scale(self) -> None:
        step = vertical_step(0.35, 0.65)  # Sobel magnitude 0.3
        assert canny(step, 0.2, 0.25).any()
        assert not canny(step, 0.35, 0.4).any()

    def test_rejects_low_above_high(self) -> None:
        with pytest.raises(ValueError, match="low <= high"):
            canny(vertical_step(), 0.3, 0.1)


class TestLaplacianSharpen:
    def test_factor_zero_is_identity(self) -> None:
        img = np.random.default_rng(1).random((20, 30), dtype=np.float32)
        np.testing.assert_array_equal(laplacian_sharpen(img, 0.0), img)

    def test_factor_increases_edge_contrast(self) -> None:
        contrasts = []
        for factor in (0.0, 0.5, 1.5, 3.0):
            out = laplacian_sharpen(vertical_step(0.4, 0.6), factor)
            contrasts.append(float(out[5, STEP_COL] - out[5, STEP_COL - 1]))
        assert contrasts == sorted(contrasts) and len(set(contrasts)) == 4
        # img - c * laplacian: each side of a 0.2 step moves by 0.2 c
        assert contrasts[2] == pytest.approx(0.2 + 0.4 * 1.5, abs=1e-6)

    def test_result_is_clipped_and_flat_areas_unchanged(self) -> None:
        out = laplacian_sharpen(vertical_step(), 3.0)
        assert out.min() == 0.0 and out.max() == 1.0
        np.testing.assert_array_equal(out[:, :10], 0.0)
        np.testing.assert_array_equal(out[:, -10:], 1.0)


class TestClahe:
    def test_stretches_a_low_contrast_image(self) -> None:
        rng = np.random.default_rng(2)
        img = (0.45 + 0.1 * rng.random((64, 64))).astype(np.float32)
        out = clahe(img, 2.0, 8)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert out.std() > 2 * img.std()

    def test_higher_clip_gives_more_contrast(self) -> None:
        rng = np.random.default_rng(3)
        img = (0.45 + 0.1 * rng.random((64, 64))).astype(np.float32)
        assert clahe(img, 4.0, 4).std() > clahe(img, 1.0, 4).std()

    def test_preserves_order_of_grey_levels_in_one_tile(self) -> None:
        img = np.tile(np.linspace(0.2, 0.6, 32, dtype=np.float32), (32, 1))
        out = clahe(img, 2.0, 1)
        assert np.all(np.diff(out[0]) >= 0) and out[0, -1] > out[0, 0]


class TestResizeLongSide:
    def test_shrinks_keeping_aspect(self) -> None:
        assert resize_long_side(np.zeros((100, 50), np.float32), 40).shape == (40, 20)
        assert resize_long_side(np.zeros((50, 100, 3), np.float32), 40).shape == (20, 40, 3)

    def test_enlarges_without_overshoot(self) -> None:
        out = resize_long_side(vertical_step()[:10, 25:35], 40)
        assert out.shape == (40, 40) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0

    def test_area_average_when_shrinking(self) -> None:
        img = np.zeros((8, 8), np.float32)
        img[::2, ::2] = 1.0  # a quarter of the pixels lit, evenly
        np.testing.assert_allclose(resize_long_side(img, 4), 0.25)

    def test_strided_view_equals_its_copy(self) -> None:
        img = np.random.default_rng(5).random((60, 90), dtype=np.float32)
        np.testing.assert_array_equal(
            resize_long_side(img.T, 30), resize_long_side(img.T.copy(), 30)
        )

    def test_returns_input_when_already_that_size(self) -> None:
        img = np.zeros((30, 12), np.float32)
        assert resize_long_side(img, 30) is img


class TestLetterbox:
    def test_keeps_aspect_and_centres(self) -> None:
        out = letterbox(np.ones((100, 50), np.float32), 64)
        assert out.shape == (64, 64) and out.dtype == np.float32
        rows, cols = np.nonzero(out)
        assert (rows.min(), rows.max()) == (0, 63)
        assert (cols.min(), cols.max()) == (16, 47)  # width 32 = 64 * 50/100, 16 each side

    def test_landscape_pads_rows_and_odd_padding_goes_after(self) -> None:
        out = letterbox(np.ones((49, 100), np.float32), 64)
        rows = np.flatnonzero(out.any(axis=1))
        assert len(rows) == 31 and rows[0] == 16 and 64 - 1 - rows[-1] == 17

    def test_colour_and_uint8(self) -> None:
        img = np.full((10, 20, 3), 200, np.uint8)
        out = letterbox(img, 40)
        assert out.shape == (40, 40, 3) and out.dtype == np.uint8
        assert out[0].max() == 0 and out[20, 20].tolist() == [200, 200, 200]

    def test_square_input_fills_the_square(self) -> None:
        out = letterbox(np.full((7, 7), 0.5, np.float32), 21)
        np.testing.assert_allclose(out, 0.5)
