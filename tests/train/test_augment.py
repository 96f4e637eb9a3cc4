"""Radiograph augmentation: shape, dtype and range kept; grey stays grey; seeded."""

from __future__ import annotations

import numpy as np
import pytest

from batchfrac.train.augment import AugmentParams, RadiographAugment


def _image(size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = rng.random((size, size)).astype(np.float32)
    return np.repeat(grey[:, :, None], 3, axis=2)


class TestRadiographAugment:
    @pytest.mark.parametrize("seed", range(10))
    def test_shape_dtype_and_range(self, seed):
        image = _image(seed=seed)
        out = RadiographAugment()(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0

    def test_input_not_modified(self):
        image = _image()
        before = image.copy()
        RadiographAugment()(image, np.random.default_rng(0))
        assert np.array_equal(image, before)

    def test_grey_stays_grey(self):
        out = RadiographAugment()(_image(), np.random.default_rng(3))
        assert np.array_equal(out[:, :, 0], out[:, :, 1])
        assert np.array_equal(out[:, :, 0], out[:, :, 2])

    def test_seeded(self):
        augment = RadiographAugment()
        a = augment(_image(), np.random.default_rng(5))
        b = augment(_image(), np.random.default_rng(5))
        c = augment(_image(), np.random.default_rng(6))
        assert np.array_equal(a, b) and not np.array_equal(a, c)

    def test_off_is_identity(self):
        image = _image()
        out = RadiographAugment(AugmentParams.off())(image, np.random.default_rng(0))
        assert np.array_equal(out, image)

    def test_flip_is_horizontal_only(self):
        params = AugmentParams(0.0, True, (1.0, 1.0), 0.0, (1.0, 1.0), (1.0, 1.0))
        image = _image()
        outs = [RadiographAugment(params)(image, np.random.default_rng(s)) for s in range(8)]
        flipped = [o for o in outs if not np.array_equal(o, image)]
        assert flipped, "eight draws should flip at least once"
        for out in flipped:
            assert np.allclose(out, image[:, ::-1, :])

    def test_two_dimensional_and_batch(self):
        grey = _image()[:, :, 0]
        assert RadiographAugment()(grey, np.random.default_rng(0)).shape == grey.shape
        batch = np.stack([_image(seed=s) for s in range(3)])
        assert RadiographAugment().batch(batch, np.random.default_rng(0)).shape == batch.shape

    def test_batch_is_the_same_whatever_the_threads(self):
        batch = np.stack([_image(seed=s) for s in range(9)])
        one_by_one_rng = np.random.default_rng(11)
        one_by_one = np.stack([RadiographAugment()(img, one_by_one_rng) for img in batch])
        for workers in (1, 4):
            out = RadiographAugment(workers=workers).batch(batch, np.random.default_rng(11))
            assert np.array_equal(out, one_by_one)
        assert len({o.tobytes() for o in one_by_one}) == len(batch)  # each drew its own

    def test_intensity_changes_stay_small(self):
        params = AugmentParams(0.0, False, (1.0, 1.0), 0.08, (0.85, 1.15), (0.8, 1.25))
        image = np.full((16, 16, 3), 0.5, np.float32)
        for seed in range(20):
            out = RadiographAugment(params)(image, np.random.default_rng(seed))
            assert abs(float(out.mean()) - 0.5) < 0.2

    def test_rejects_bad_shape(self):
        with pytest.raises(ValueError, match="expected an"):
            RadiographAugment()(np.zeros(5, np.float32), np.random.default_rng(0))
