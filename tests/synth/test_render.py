"""render_radiograph: shapes, determinism, per-bone distinctness, abnormalities."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from batchfrac.enums import Bone
from batchfrac.synth import VIEWS, Abnormality, render_radiograph
from batchfrac.synth.anatomy import build_skeleton


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


class TestRenderRadiograph:
    @pytest.mark.parametrize("bone", list(Bone))
    def test_every_view_is_float_in_unit_range(self, bone: Bone) -> None:
        for view in VIEWS[bone]:
            img = render_radiograph(bone, _rng(1), (72, 56), None, view.value)
            assert img.dtype == np.float32
            assert img.shape == (72, 56)
            assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
            assert float(img.std()) > 0.05  # not blank

    def test_same_rng_state_gives_same_image(self) -> None:
        a = render_radiograph(Bone.HAND, _rng(5), (96, 80), "fracture", "PA")
        b = render_radiograph(Bone.HAND, _rng(5), (96, 80), "fracture", "PA")
        np.testing.assert_array_equal(a, b)

    def test_different_seed_gives_different_image(self) -> None:
        a = render_radiograph(Bone.HAND, _rng(5), (96, 80), None, "PA")
        b = render_radiograph(Bone.HAND, _rng(6), (96, 80), None, "PA")
        assert float(np.abs(a - b).mean()) > 0.01

    def test_bone_is_brighter_than_background(self) -> None:
        img = render_radiograph(Bone.HUMERUS, _rng(2), (200, 120), None, "AP")
        # the shaft runs down the middle; the corners are air or collimation
        centre = img[80:120, 50:70]
        corners = np.concatenate([img[:10, :10].ravel(), img[-10:, -10:].ravel()])
        assert float(centre.mean()) > float(corners.mean()) + 0.3

    def test_laterality_mirrors_the_anatomy(self) -> None:
        left = render_radiograph(Bone.HAND, _rng(3), (120, 100), None, "PA", laterality="L")
        right = render_radiograph(Bone.HAND, _rng(3), (120, 100), None, "PA", laterality="R")
        assert float(np.abs(left - right).mean()) > 0.02

    def test_large_image_renders_quickly(self) -> None:
        render_radiograph(Bone.SHOULDER, _rng(0), (256, 256), "hardware", "AP")  # warm-up
        start = time.perf_counter()
        img = render_radiograph(Bone.SHOULDER, _rng(0), (2500, 2000), "hardware", "AP")
        elapsed = time.perf_counter() - start
        assert img.shape == (2500, 2000)
        assert elapsed < 3.0  # well under a second on an idle core; slack for loaded CI


class TestBonesDiffer:
    def test_mean_images_of_bones_differ(self) -> None:
        means = {}
        for bone in Bone:
            views = VIEWS[bone]
            imgs = [
                render_radiograph(bone, _rng(k, 11), (64, 64), None, views[k % len(views)].value)
                for k in range(5)
            ]
            means[bone] = np.mean(imgs, axis=0)
        bones = list(Bone)
        for i, a in enumerate(bones):
            for b in bones[i + 1 :]:
                rms = float(np.sqrt(np.mean((means[a] - means[b]) ** 2)))
                assert rms > 0.04, f"{a.value} and {b.value} look alike (rms {rms:.3f})"

    @pytest.mark.parametrize("bone", list(Bone))
    def test_skeleton_has_targets_for_abnormalities(self, bone: Bone) -> None:
        for view in VIEWS[bone]:
            skeleton = build_skeleton(bone, view, _rng(0))
            names = {p.name for p in skeleton.pieces}
            for target in skeleton.fracture_targets + skeleton.hardware_targets:
                assert target in names
                assert skeleton.piece(target).axis is not None


class TestAbnormalities:
    @pytest.mark.parametrize("bone", list(Bone))
    @pytest.mark.parametrize("kind", list(Abnormality))
    def test_abnormal_differs_from_normal_and_survives_224(
        self, bone: Bone, kind: Abnormality
    ) -> None:
        view = VIEWS[bone][0].value
        normal = render_radiograph(bone, _rng(3), (320, 260), None, view)
        abnormal = render_radiograph(bone, _rng(3), (320, 260), kind.value, view)
        small_n = cv2.resize(normal, (224, 224), interpolation=cv2.INTER_AREA)
        small_a = cv2.resize(abnormal, (224, 224), interpolation=cv2.INTER_AREA)
        changed = np.abs(small_a - small_n) > 0.1
        assert changed.sum() > 50, f"{kind.value} on {bone.value} hardly visible at 224 px"
        # same anatomy and noise: most of the picture is unchanged
        assert float((np.abs(abnormal - normal) < 0.02).mean()) > 0.6

    def test_hardware_is_brighter_than_bone(self) -> None:
        normal = render_radiograph(Bone.HUMERUS, _rng(4), (300, 200), None, "AP")
        metal = render_radiograph(Bone.HUMERUS, _rng(4), (300, 200), "hardware", "AP")
        assert float(metal.max()) > 0.97
        assert float(np.percentile(metal, 99.5)) > float(np.percentile(normal, 99.5))
