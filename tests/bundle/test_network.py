"""EfficientNet-B0 split into trunk + heads: same outputs as one B0, same network for
``imagenet`` and ``PATH`` weights, and the paper's freezing recipe."""

from __future__ import annotations

import hashlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from batchfrac.bundle import network
from batchfrac.bundle.layout import HEAD_FIRST_LAYER, TRUNK_OUTPUT_LAYERS
from batchfrac.bundle.network import (
    CLASSIFIER_LAYER_NAMES,
    HEAD_LAYER_NAMES,
    N_TRUNK_LAYERS,
    build_backbone,
    build_full_model,
    build_head,
    freeze_for_transfer,
    iter_leaf_layers,
    split_backbone,
)
from batchfrac.bundle.weights import (
    IMAGENET_FILE_NAME,
    IMAGENET_STDDEV_RGB,
    parse_weights_option,
    resolve_weights,
)
from batchfrac.errors import BundleError
from tests.b0_helpers import (
    TEST_IMAGE_SIZE,
    calibrate_batchnorm,
    calibrate_classifier,
    images,
    scramble_weights,
)

S = TEST_IMAGE_SIZE


@pytest.fixture(scope="module")
def split():
    """A scrambled backbone at 64 px, its trunk and head body, and one hand head."""
    backbone = build_backbone(None, S)
    scramble_weights(backbone, seed=1)
    trunk, head_body = split_backbone(backbone)
    head = build_head(head_body, 2, "hand")
    scramble_weights(head, seed=2)
    calibrate_batchnorm(build_full_model(trunk, head), images(16, seed=10))
    calibrate_classifier(head, trunk.predict_on_batch(images(8, seed=11)), seed=3)
    return backbone, trunk, head_body, head


def _keras_b0_with_classifier(n_classes: int) -> keras.Model:
    """Keras' own B0 (no x255, auto-named stem) plus the paper's classifier, flat."""
    b0 = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(S, S, 3))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(b0.output)
    x = keras.layers.Dropout(0.2, name="top_dropout")(x)
    x = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(b0.input, x)


class TestStructure:
    def test_head_layers_are_the_last_20_of_keras_b0(self):
        b0 = keras.applications.EfficientNetB0(
            include_top=False, weights=None, input_shape=(S, S, 3)
        )
        assert [layer.name for layer in b0.layers[-20:]] == list(HEAD_LAYER_NAMES)
        assert HEAD_LAYER_NAMES[0] == HEAD_FIRST_LAYER

    def test_trunk_is_the_first_218_layers(self, split):
        backbone, trunk, head_body, head = split
        names = [layer.name for layer in backbone.layers]
        assert len(backbone.layers) == 238
        assert names.index(HEAD_FIRST_LAYER) == N_TRUNK_LAYERS
        assert [layer.name for layer in trunk.layers] == names[:N_TRUNK_LAYERS]
        assert [t.name for t in trunk.outputs] == [
            backbone.get_layer(name).output.name for name in TRUNK_OUTPUT_LAYERS
        ]

    def test_head_has_20_b0_layers_plus_classifier(self, split):
        head = split[3]
        names = [
            layer.name for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)
        ]
        assert names == list(HEAD_LAYER_NAMES) + list(CLASSIFIER_LAYER_NAMES)
        assert head.outputs[0].shape[-1] == 2

    def test_new_head_copies_but_does_not_share_weights(self, split):
        _, _, head_body, _ = split
        head = build_head(head_body, 7, "router")
        src = head_body.get_layer("top_conv").get_weights()[0]
        copy = head.get_layer("top_conv")
        np.testing.assert_array_equal(copy.get_weights()[0], src)
        assert copy is not head_body.get_layer("top_conv")

    def test_head_from_another_head_starts_from_its_body(self, split):
        head = split[3]
        new = build_head(head, 7, "router")
        assert new.outputs[0].shape[-1] == 7
        for name in HEAD_LAYER_NAMES:
            for a, b in zip(
                new.get_layer(name).get_weights(), head.get_layer(name).get_weights(), strict=True
            ):
                np.testing.assert_array_equal(a, b)

    def test_head_from_backbone_equals_head_from_head_body(self, split):
        backbone, _, head_body, _ = split
        a = build_head(backbone, 2, "a")
        b = build_head(head_body, 2, "b")
        b.get_layer("predictions").set_weights(a.get_layer("predictions").get_weights())
        for layer in a.layers:
            for wa, wb in zip(
                layer.get_weights(), b.get_layer(layer.name).get_weights(), strict=True
            ):
                np.testing.assert_array_equal(wa, wb)


class TestSplitEqualsOneNetwork:
    def test_trunk_then_head_equals_standalone_b0_with_classifier(self, split):
        _, trunk, _, head = split
        reference = _keras_b0_with_classifier(2)
        ours = {layer.name: layer for layer in iter_leaf_layers(trunk)}
        ours.update({layer.name: layer for layer in head.layers})
        for layer in reference.layers:
            if not layer.weights:
                continue
            name = (
                "stem_normalization"
                if isinstance(layer, keras.layers.Normalization)
                else layer.name
            )
            layer.set_weights(ours[name].get_weights())
            if hasattr(layer, "finalize_state"):
                layer.finalize_state()
        x = images(6)
        expected = reference.predict_on_batch(x * 255.0)
        got = head.predict_on_batch(trunk.predict_on_batch(x))
        assert np.ptp(expected[:, 1]) > 0.05, "test weights too weak to tell networks apart"
        np.testing.assert_allclose(got, expected, atol=1e-5)

    def test_full_model_equals_trunk_then_head(self, split):
        _, trunk, _, head = split
        full = build_full_model(trunk, head)
        x = images(4, seed=3)
        np.testing.assert_allclose(
            full.predict_on_batch(x), head.predict_on_batch(trunk.predict_on_batch(x)), atol=1e-6
        )


class TestImagenetWeights:
    """``imagenet`` (Keras download) and ``PATH`` build the same network as Keras'
    ImageNet B0, whose extra Rescaling(1/sqrt(stddev)) a PATH build lacks."""

    @pytest.fixture(scope="class")
    @classmethod
    def weights_file(cls, tmp_path_factory):
        source = build_backbone(None, S)
        scramble_weights(source, seed=5)
        norm = source.get_layer("stem_normalization")
        stddev = np.array(IMAGENET_STDDEV_RGB, "float32")
        norm.adapt_mean.assign(np.array([0.485, 0.456, 0.406], "float32"))
        norm.adapt_variance.assign(stddev**2)
        norm.finalize_state()
        calibrate_batchnorm(source, images(16, seed=12))
        # Like Keras' real file: the stored "variance" is the stddev (TF issue 49930),
        # which Keras' ImageNet build corrects with its extra Rescaling layer.
        norm.adapt_variance.assign(stddev)
        path = tmp_path_factory.mktemp("keras_home") / IMAGENET_FILE_NAME
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, source)
        return path

    @pytest.fixture()
    def offline_imagenet(self, weights_file, monkeypatch):
        def fake_get_file(fname, origin=None, **kwargs):
            assert fname == IMAGENET_FILE_NAME
            return str(weights_file)

        import keras.src.utils.file_utils as file_utils

        monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
        monkeypatch.setattr(file_utils, "get_file", fake_get_file)
        return weights_file

    def test_imagenet_and_path_equal_keras_imagenet_b0(self, offline_imagenet):
        reference = keras.applications.EfficientNetB0(
            include_top=False, weights="imagenet", input_shape=(S, S, 3)
        )
        assert len(reference.layers) == 238  # Keras' ImageNet-only extra Rescaling
        names = [layer.name for layer in reference.layers]
        assert names.index(HEAD_FIRST_LAYER) == N_TRUNK_LAYERS
        from_imagenet = build_backbone("imagenet", S)
        from_path = build_backbone(offline_imagenet, S)
        x = images(4, seed=7)
        expected = keras.ops.convert_to_numpy(reference(x * 255.0, training=False))
        assert np.ptp(expected) > 1.0
        for model in (from_imagenet, from_path):
            assert [layer.name for layer in model.layers][N_TRUNK_LAYERS:] == names[N_TRUNK_LAYERS:]
            got = keras.ops.convert_to_numpy(model(x, training=False))
            # float32 rounding differs (folded variance vs an extra multiply) and grows
            # over 218 layers; the unfolded network is off by far more (next test).
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)

    def test_path_without_fold_would_differ(self, offline_imagenet):
        """Guards the test above: Keras' own PATH build really is a different network."""
        reference = keras.applications.EfficientNetB0(
            include_top=False, weights="imagenet", input_shape=(S, S, 3)
        )
        keras_path_build = keras.applications.EfficientNetB0(
            include_top=False, weights=str(offline_imagenet), input_shape=(S, S, 3)
        )
        x = images(2, seed=8) * 255.0
        a = keras.ops.convert_to_numpy(reference(x, training=False))
        b = keras.ops.convert_to_numpy(keras_path_build(x, training=False))
        assert np.abs(a - b).max() > 0.1

    def test_weights_origin_records_file_and_sha256(self, offline_imagenet):
        digest = hashlib.sha256(offline_imagenet.read_bytes()).hexdigest()
        assert resolve_weights("imagenet").origin() == {
            "kind": "imagenet",
            "file": IMAGENET_FILE_NAME,
            "sha256": digest,
        }
        assert resolve_weights(str(offline_imagenet)).origin() == {
            "kind": "file",
            "file": str(offline_imagenet.resolve()),
            "sha256": digest,
        }
        assert resolve_weights("none").origin() == {"kind": "none"}
        assert parse_weights_option("None") is None

    def test_wrong_file_is_a_bundle_error(self, tmp_path):
        bad = tmp_path / "other.h5"
        with h5py.File(bad, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(
                f, keras.Sequential([keras.layers.Dense(3)])
            )
        with pytest.raises(BundleError, match="not an EfficientNet-B0"):
            build_backbone(bad, S)

    def test_missing_file_is_a_bundle_error(self, tmp_path):
        with pytest.raises(BundleError, match="not found"):
            build_backbone(tmp_path / IMAGENET_FILE_NAME, S)


class TestFreezeForTransfer:
    EXPECTED = {
        name for name in HEAD_LAYER_NAMES + CLASSIFIER_LAYER_NAMES if not name.endswith("bn")
    }

    def _check(self, model):
        freeze_for_transfer(model)
        leaves = list(iter_leaf_layers(model))
        trainable = {layer.name for layer in leaves if layer.trainable}
        assert trainable == self.EXPECTED
        for layer in leaves:
            if isinstance(layer, keras.layers.BatchNormalization):
                assert not layer.trainable, layer.name
        expected_weights = {
            id(v)
            for layer in leaves
            if layer.name in self.EXPECTED
            for v in layer.trainable_weights
        }
        assert {id(v) for v in model.trainable_weights} == expected_weights
        assert expected_weights

    def test_full_model(self, split):
        _, trunk, _, head = split
        full = build_full_model(trunk, head)
        self._check(full)
        assert not trunk.trainable  # nothing trainable inside: the container is frozen too
        # the 5 BN layers among the last 20 are frozen; what remains trainable:
        assert len(full.trainable_weights) == 11

    def test_head_alone_and_refreeze(self, split):
        head = build_head(split[2], 2, "wrist")
        for layer in head.layers:
            layer.trainable = True
        self._check(head)
        self._check(head)

    def test_model_without_b0_layers_is_refused(self):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="other")])
        with pytest.raises(ValueError, match="last 20"):
            freeze_for_transfer(model)


def test_network_module_imports_no_tensorflow():
    """KERAS_BACKEND=jax hosts have no TensorFlow: the network uses keras.* only."""
    source = open(network.__file__, encoding="utf-8").read()
    assert "import tensorflow" not in source and "from tensorflow" not in source
