"""Grad-CAM: real gradients through a head, checked against the closed form of a GAP ->
Dense head (CAM, Zhou et al. 2016) on the demo bundle's B0 heads, on hand-set heads, under
JAX too; and the cell grid the maps are drawn on, against Keras' own B0 padding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src.applications.imagenet_utils import correct_pad

from batchfrac.bundle.format import ModelBundle
from batchfrac.bundle.gradcam import ABNORMAL, CAM_LAYER, Score, cam_activation, gradcam
from batchfrac.bundle.network import iter_leaf_layers
from batchfrac.enums import Bone
from batchfrac.ingest.preprocess import preprocess
from batchfrac.report.heatmap import efficientnet_grid
from batchfrac.synth import render_radiograph

DEMO = Path(__file__).resolve().parents[2] / "batchfrac" / "demo_bundle"

NORMAL = 1 - ABNORMAL


def hand_set_head(kernel: np.ndarray, bias: np.ndarray | None = None) -> keras.Model:
    """A head of the bundle's shape on (7, 7, K) features: top_activation -> avg_pool ->
    top_dropout -> predictions, with the Dense kernel (K, 2) set by hand."""
    features = keras.Input(shape=(7, 7, kernel.shape[0]), name="features")
    x = keras.layers.Activation("relu", name=CAM_LAYER)(features)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(0.2, name="top_dropout")(x)
    probs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    head = keras.Model(features, probs, name="hand_set")
    b = np.zeros(2, np.float32) if bias is None else bias
    head.get_layer("predictions").set_weights([kernel.astype(np.float32), b.astype(np.float32)])
    return head


def analytic_cam(activation: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ReLU(sum_k w_k A_k), each map divided by its maximum."""
    cam = np.maximum(np.einsum("nhwk,k->nhw", activation.astype(np.float64), weights), 0.0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


@pytest.fixture(scope="module")
def demo() -> tuple[ModelBundle, list[np.ndarray]]:
    """The demo bundle and the trunk features of four synthetic radiographs of hands."""
    bundle = ModelBundle.load(DEMO)
    images = []
    for seed, kind in enumerate((None, "fracture", "hardware", "fracture")):
        img = render_radiograph(Bone.HAND, np.random.default_rng(seed), (600, 480), kind, "PA")
        images.append(preprocess(img, bundle.spec))
    return bundle, bundle.trunk_features(np.stack(images))


class TestOnDemoHeads:
    def test_maps_are_float32_in_unit_range_on_the_7x7_grid(self, demo) -> None:
        bundle, features = demo
        maps = gradcam(bundle.runtime.head(Bone.HAND.value), features)
        assert maps.dtype == np.float32
        assert maps.shape == (4, 7, 7)
        assert np.isfinite(maps).all()
        assert maps.min() >= 0.0
        np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0, rtol=1e-6)

    @pytest.mark.parametrize("bone", [Bone.HAND, Bone.ELBOW])
    def test_logit_gradcam_equals_the_closed_form_cam(self, demo, bone: Bone) -> None:
        bundle, features = demo
        head = bundle.runtime.head(bone.value)
        activation = cam_activation(head, features)
        kernel, bias = (np.asarray(w, np.float64) for w in head.get_layer("predictions").weights)
        # the activation really is what the head classifies
        logits = activation.astype(np.float64).mean(axis=(1, 2)) @ kernel + bias
        softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
        softmax /= softmax.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(head.predict_on_batch(features), softmax, atol=1e-4)

        for score, weights in (
            (Score.LOGIT, kernel[:, ABNORMAL]),
            (Score.LOG_ODDS, kernel[:, ABNORMAL] - kernel[:, NORMAL]),
        ):
            maps = gradcam(head, features, score=score)
            np.testing.assert_allclose(maps, analytic_cam(activation, weights), atol=1e-5)
        # and the normal class, to be sure the class index is honoured
        maps = gradcam(head, features, class_index=NORMAL, score=Score.LOGIT)
        np.testing.assert_allclose(maps, analytic_cam(activation, kernel[:, NORMAL]), atol=1e-5)

    def test_a_batch_gives_each_image_its_own_map(self, demo) -> None:
        bundle, features = demo
        head = bundle.runtime.head(Bone.HAND.value)
        together = gradcam(head, features)
        for i in range(len(features[0])):
            alone = gradcam(head, [f[i : i + 1] for f in features])
            np.testing.assert_allclose(alone[0], together[i], atol=1e-5)
        assert not np.allclose(together[0], together[1], atol=0.05)

    def test_empty_batch(self, demo) -> None:
        bundle, features = demo
        maps = gradcam(bundle.runtime.head(Bone.HAND.value), [f[:0] for f in features])
        assert maps.shape == (0, 7, 7) and maps.dtype == np.float32


def _blob_features(row: int, column: int) -> np.ndarray:
    """Channel 0 ("break"): one hot cell; channel 1 ("bone"): even everywhere."""
    x = np.zeros((1, 7, 7, 2), np.float32)
    x[0, :, :, 1] = 1.0
    x[0, row, column, 0] = 3.0
    x[0, max(row - 1, 0), column, 0] = 1.0  # a tail, so the peak is not the only signal
    return x


class TestOnHandSetHeads:
    # channel 0 is evidence of an abnormality, channel 1 is common to both classes
    KERNEL = np.array([[-1.0, 1.0], [0.5, 0.5]])

    @pytest.mark.parametrize("score", list(Score))
    def test_the_map_follows_the_salient_region(self, score: Score) -> None:
        head = hand_set_head(self.KERNEL)
        for row, column in ((1, 5), (5, 1), (3, 3), (6, 0)):
            cam = gradcam(head, [_blob_features(row, column)], score=score)[0]
            assert np.unravel_index(np.argmax(cam), cam.shape) == (row, column)
            assert cam[row, column] == 1.0

    def test_logit_keeps_evidence_common_to_both_classes_log_odds_does_not(self) -> None:
        head = hand_set_head(self.KERNEL)
        features = _blob_features(2, 4)
        logit = gradcam(head, [features], score=Score.LOGIT)[0]
        log_odds = gradcam(head, [features], score=Score.LOG_ODDS)[0]
        assert logit[0, 0] > 0.1  # the "bone" channel lights up everywhere
        assert log_odds[0, 0] == 0.0  # only the break counts

    def test_no_evidence_gives_an_all_zero_map(self) -> None:
        head = hand_set_head(self.KERNEL)
        features = np.zeros((2, 7, 7, 2), np.float32)
        for score in Score:
            maps = gradcam(head, [features], score=score)
            assert np.isfinite(maps).all() and not maps.any()

    def test_saturated_probability_underflows_while_log_odds_still_points(self) -> None:
        head = hand_set_head(self.KERNEL * 5000.0)  # log-odds ~800: exp underflows
        features = _blob_features(4, 2)
        assert head.predict_on_batch(features)[0, ABNORMAL] == 1.0
        probability = gradcam(head, [features], score=Score.PROBABILITY)[0]
        assert np.isfinite(probability).all() and not probability.any()
        log_odds = gradcam(head, [features], score=Score.LOG_ODDS)[0]
        assert np.unravel_index(np.argmax(log_odds), log_odds.shape) == (4, 2)

    def test_refuses_a_head_without_the_cam_layer(self) -> None:
        features = keras.Input(shape=(7, 7, 2))
        pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
        head = keras.Model(features, keras.layers.Dense(2, activation="softmax")(pooled))
        with pytest.raises(ValueError, match=CAM_LAYER):
            gradcam(head, [np.zeros((1, 7, 7, 2), np.float32)])

    def test_refuses_a_class_out_of_range(self) -> None:
        with pytest.raises(ValueError, match="class index"):
            gradcam(hand_set_head(self.KERNEL), [_blob_features(0, 0)], class_index=2)


JAX_SCRIPT = """
import json, sys
import numpy as np
import keras
from batchfrac.bundle.gradcam import Score, gradcam
from tests.bundle.test_gradcam import hand_set_head
rng = np.random.default_rng(7)
kernel = rng.normal(size=(16, 2))
features = rng.normal(size=(3, 7, 7, 16)).astype(np.float32)
head = hand_set_head(kernel, rng.normal(size=2))
maps = {s.value: gradcam(head, [features], score=s).tolist() for s in Score}
json.dump({"backend": keras.backend.backend(), "maps": maps}, sys.stdout)
"""


def test_jax_backend_gives_the_same_maps() -> None:
    """The same hand-set head and features under ``KERAS_BACKEND=jax`` (``jax.grad``) and
    here (TensorFlow's tape): equal maps, equal to the closed form for the logit."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["backend"] == "jax"
    rng = np.random.default_rng(7)
    kernel = rng.normal(size=(16, 2))
    features = rng.normal(size=(3, 7, 7, 16)).astype(np.float32)
    head = hand_set_head(kernel, rng.normal(size=2))
    assert keras.backend.backend() != "jax"
    for score in Score:
        ours = gradcam(head, [features], score=score)
        np.testing.assert_allclose(np.asarray(result["maps"][score.value]), ours, atol=1e-5)
    relu = np.maximum(features, 0.0)  # the hand-set head's top_activation
    np.testing.assert_allclose(
        np.asarray(result["maps"][Score.LOGIT.value]),
        analytic_cam(relu, kernel[:, ABNORMAL].astype(np.float32)),
        atol=1e-5,
    )


class TestCellGrid:
    """:func:`efficientnet_grid` (pure arithmetic) against Keras' own B0 and padding."""

    def test_b0_downsamples_five_times_after_correct_pad(self, demo) -> None:
        bundle, _ = demo
        layers = list(iter_leaf_layers(bundle.runtime.trunk))
        strided = [
            (before, layer)
            for before, layer in zip(layers, layers[1:], strict=False)
            if getattr(layer, "strides", (1, 1)) != (1, 1)
        ]
        assert len(strided) == 5
        for before, layer in strided:
            k = layer.kernel_size[0]
            assert layer.strides == (2, 2) and layer.padding == "valid"
            assert isinstance(before, keras.layers.ZeroPadding2D)
            assert tuple(map(tuple, before.padding)) == ((k // 2 - 1, k // 2),) * 2
        assert bundle.runtime.head(Bone.HAND.value).get_layer(CAM_LAYER).output.shape[1] == 7

    def test_the_grid_is_where_the_receptive_fields_are_centred(self) -> None:
        # B0's five downsampling steps (kernels 3, 3, 5, 3, 5) on one channel, all
        # weights 1: linear, so cell j's receptive field is the gradient of its output
        image = keras.Input(shape=(224, 224, 1))
        x = image
        for k in (3, 3, 5, 3, 5):
            x = keras.layers.ZeroPadding2D(correct_pad(x, k))(x)
            x = keras.layers.DepthwiseConv2D(k, strides=2, padding="valid", use_bias=False)(x)
        chain = keras.Model(image, x)
        for layer in chain.layers:
            if layer.weights:
                layer.set_weights([np.ones_like(w) for w in layer.get_weights()])
        grid = efficientnet_grid(224)
        tap = TestCellGrid._tap(chain)
        for j in (2, 3, 4):  # cells whose ~100 px receptive field the padding does not cut
            profile = tap(j).sum(axis=0)
            centre = (profile * np.arange(224)).sum() / profile.sum()
            support = np.flatnonzero(profile)
            assert support[0] > 0 and support[-1] < 223
            assert centre == pytest.approx(grid.offset + grid.stride * j, abs=1e-3)
            assert (support[0] + support[-1]) / 2 == grid.offset + grid.stride * j

    @staticmethod
    def _tap(chain: keras.Model):
        """``j`` -> the input weights of output cell (j, j): the impulse responses summed."""
        import tensorflow as tf

        def tap(j: int) -> np.ndarray:
            x = tf.zeros((1, 224, 224, 1))
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = chain(x)[0, j, j, 0]
            return tape.gradient(out, x).numpy()[0, :, :, 0]

        return tap
