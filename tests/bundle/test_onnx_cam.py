"""Grad-CAM on ONNX Runtime (numpy, from the graph's ``top_activation``) equals the Keras
autodiff Grad-CAM of :mod:`batchfrac.bundle.gradcam` on the tiny real bundle, and the maps
that inference makes in its own head pass equal those drawn alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchfrac.bundle.format import ModelBundle
from batchfrac.bundle.onnx_cam import CAM_OUTPUT, KERNEL, score_gradient, with_cam_output
from batchfrac.bundle.onnx_graph import PROBS_OUTPUT
from batchfrac.enums import Bone, CamScore, Routing
from batchfrac.scan.inference import BatchPredictor


@pytest.fixture(scope="module")
def images(tiny_bundle: Path) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.random((5, 64, 64, 3), dtype=np.float32)


def _on(path: Path, backend: str) -> ModelBundle:
    """The bundle at ``path`` running on ``backend``."""
    bundle = ModelBundle.load(path)
    bundle.use_backend(backend)
    return bundle


@pytest.mark.parametrize("bone", [Bone.HAND, Bone.WRIST])
def test_onnx_numpy_gradcam_equals_keras_gradcam(
    tiny_bundle: Path, images: np.ndarray, bone: Bone
) -> None:
    onnx_bundle, keras_bundle = _on(tiny_bundle, "onnx"), _on(tiny_bundle, "keras")
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


def _head_graph(bundle_path: Path, bone: Bone) -> bytes:
    record = ModelBundle.load(bundle_path).meta["onnx"]["heads"][bone.head.value]
    return (bundle_path / record["file"]).read_bytes()


def test_cam_outputs_are_appended_as_onnx_helper_would_write_them(tiny_bundle: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    data = _head_graph(tiny_bundle, Bone.HAND)
    expected = onnx.load_from_string(data)
    for name in (CAM_OUTPUT, KERNEL):
        expected.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    ours = onnx.load_from_string(with_cam_output(data))
    assert [o.name for o in ours.graph.output] == [PROBS_OUTPUT, CAM_OUTPUT, KERNEL]
    assert ours == expected


def test_a_graph_without_top_activation_is_refused(tiny_bundle: Path) -> None:
    import onnxruntime

    trunk = ModelBundle.load(tiny_bundle).meta["onnx"]["trunk"]
    data = with_cam_output((tiny_bundle / trunk["file"]).read_bytes())
    with pytest.raises(Exception, match=CAM_OUTPUT):
        onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("routing", [Routing.HARD, Routing.SOFT])
def test_predictions_carry_the_map_of_their_bone_head_from_the_same_pass(
    tiny_bundle: Path, images: np.ndarray, routing: Routing
) -> None:
    bundle = _on(tiny_bundle, "onnx")
    with_maps = BatchPredictor(bundle, batch_size=8, routing=routing, cams=True).predict(images)
    plain = BatchPredictor(bundle, batch_size=8, routing=routing).predict(images)
    assert with_maps == plain  # same bones and probabilities (the map is not compared)
    assert all(p.cam is None for p in plain)
    features = bundle.trunk_features(images)
    for i, prediction in enumerate(with_maps):
        alone = bundle.gradcam(prediction.bone.head, [f[i : i + 1] for f in features])[0]
        assert prediction.cam is not None and prediction.cam.shape == alone.shape
        np.testing.assert_allclose(prediction.cam, alone, atol=1e-5)


def test_keras_predictions_carry_no_map(tiny_bundle: Path, images: np.ndarray) -> None:
    bundle = _on(tiny_bundle, "keras")
    predictions = BatchPredictor(bundle, batch_size=8, cams=True).predict(images[:2])
    assert [p.cam for p in predictions] == [None, None]
