"""Letterbox geometry, checked against what :func:`batchfrac.ingest.preprocess.preprocess`
really does to an image."""

from __future__ import annotations

import numpy as np
import pytest

from batchfrac.ingest.preprocess import PreprocessSpec, letterbox_geometry, preprocess

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
