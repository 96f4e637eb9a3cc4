"""Grad-CAM on ONNX Runtime (numpy, from the graph's ``top_activation``) equals the Keras
autodiff Grad-CAM of :mod:`batchfrac.bundle.gradcam` on the tiny real bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchfrac.bundle.format import ModelBundle
from batchfrac.bundle.onnx_cam import score_gradient
from batchfrac.enums import Bone, CamScore


@pytest.fixture(scope="module")
def images(tiny_bundle: Path) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.random((5, 64, 64, 3), dtype=np.float32)


@pytest.mark.parametrize("bone", [Bone.HAND, Bone.WRIST])
def test_onnx_numpy_gradcam_equals_keras_gradcam(
    tiny_bundle: Path, images: np.ndarray, bone: Bone
) -> None:
    onnx_bundle = ModelBundle.load(tiny_bundle)
    onnx_bundle.use_backend("onnx")
    keras_bundle = ModelBundle.load(tiny_bundle)
    keras_bundle.use_backend("keras")
    assert (onnx_bundle.gradcam_method, keras_bundle.gradcam_method) == (
        "onnx-numpy", "keras-autodiff",
    )  # fmt: skip
    ours = onnx_bundle.gradcam(bone.head, onnx_bundle.trunk_features(images))
    theirs = keras_bundle.gradcam(bone.head, keras_bundle.trunk_features(images))
    assert ours.shape == theirs.shape and ours.shape[0] == len(images)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_score_gradients_of_a_two_class_head() -> None:
    probs = np.array([[0.2, 0.8], [0.9, 0.1]])
    np.testing.assert_allclose(
        score_gradient(probs, 1, CamScore.LOG_ODDS), [[-1.0, 1.0], [-1.0, 1.0]]
    )
    np.testing.assert_allclose(score_gradient(probs, 1, CamScore.LOGIT), [[0, 1], [0, 1]])
    p = probs[:, 1:2]
    np.testing.assert_allclose(
        score_gradient(probs, 1, CamScore.PROBABILITY), p * (np.array([0, 1]) - probs)
    )
