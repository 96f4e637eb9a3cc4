"""The auxiliary abnormality task used while the router defines the trunk end to end."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import log_loss

from batchfrac.bundle.network import build_backbone, build_head, split_backbone
from batchfrac.datasets.samples import Sample, label_targets
from batchfrac.enums import Bone, Label
from batchfrac.train.auxiliary import (
    AUX_LAYER,
    JointSteps,
    build_auxiliary_model,
    joint_loss,
    joint_targets,
)
from batchfrac.train.batches import ImageBatches
from batchfrac.train.loop import categorical_loss


class TestJointTargets:
    def test_pairs_encode_as_main_times_n_aux_plus_aux(self) -> None:
        encoded = joint_targets(np.array([0, 3, 6]), np.array([1, 0, 1]), n_aux=2)
        assert encoded.tolist() == [1, 6, 13]

    def test_every_pair_gets_a_distinct_index(self) -> None:
        main, aux = np.meshgrid(np.arange(7), np.arange(2), indexing="ij")
        encoded = joint_targets(main.ravel(), aux.ravel(), n_aux=2)
        assert sorted(encoded.tolist()) == list(range(14))


class TestJointLoss:
    def test_equals_sum_of_the_two_cross_entropies(self) -> None:
        rng = np.random.default_rng(0)
        main_probs = rng.dirichlet(np.ones(7), size=5).astype("float32")
        aux_probs = rng.dirichlet(np.ones(2), size=5).astype("float32")
        main = np.array([0, 2, 6, 3, 3])
        aux = np.array([1, 0, 1, 1, 0])
        y_true = keras.utils.to_categorical(joint_targets(main, aux, 2), 14)
        y_pred = np.concatenate([main_probs, aux_probs], axis=1)

        got = keras.ops.convert_to_numpy(joint_loss(7, 2)(y_true, y_pred))

        expected = -np.log(main_probs[np.arange(5), main]) - np.log(aux_probs[np.arange(5), aux])
        np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def trunk_and_router():
    trunk, body = split_backbone(build_backbone(None, 32))
    return trunk, build_head(body, 7, "router")


class TestAuxiliaryModel:
    def test_output_is_head_probabilities_then_auxiliary_probabilities(
        self, trunk_and_router
    ) -> None:
        trunk, router = trunk_and_router
        model = build_auxiliary_model(trunk, router, 2)
        x = np.random.default_rng(1).random((3, 32, 32, 3)).astype("float32")

        out = np.asarray(model.predict_on_batch(x))

        assert out.shape == (3, 9)
        np.testing.assert_allclose(
            out[:, :7], router.predict_on_batch(trunk.predict_on_batch(x)), atol=1e-5
        )
        np.testing.assert_allclose(out[:, 7:].sum(axis=1), 1.0, atol=1e-5)
        assert model.get_layer(AUX_LAYER).units == 2

    def test_training_it_trains_the_shared_trunk_and_head_in_place(self, trunk_and_router) -> None:
        trunk, router = trunk_and_router
        model = build_auxiliary_model(trunk, router, 2)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=joint_loss(7, 2))
        trunk_before = [w.copy() for w in trunk.get_weights()]
        head_before = [w.copy() for w in router.get_weights()]
        x = np.random.default_rng(2).random((4, 32, 32, 3)).astype("float32")
        y = keras.utils.to_categorical(joint_targets([0, 1, 2, 3], [0, 1, 0, 1], 2), 14)

        model.train_on_batch(x, y)

        assert any(
            not np.array_equal(a, b) for a, b in zip(trunk_before, trunk.get_weights(), strict=True)
        )
        assert any(
            not np.array_equal(a, b) for a, b in zip(head_before, router.get_weights(), strict=True)
        )


class NoiseLoader:
    def load_many(self, samples):
        rng = np.random.default_rng(len(samples))
        return rng.random((len(samples), 32, 32, 3)).astype("float32")


class TestJointSteps:
    def _val(self) -> ImageBatches:
        samples = [
            Sample(f"s{i}", f"s{i}", Bone.HAND, label, f"p{i}", f"s{i}")
            for i, label in enumerate([Label.NORMAL, Label.ABNORMAL] * 3)
        ]
        return ImageBatches(samples, np.array([3, 3, 0, 6, 3, 1]), 7, NoiseLoader(), batch_size=4)

    def test_predict_gives_head_probabilities_and_loss_adds_the_auxiliary_task(
        self, trunk_and_router
    ) -> None:
        trunk, router = trunk_and_router
        model = build_auxiliary_model(trunk, router, 2)
        val = self._val()
        aux_targets = label_targets(val.samples)
        steps = JointSteps(model, 7, aux_targets)

        probs = steps.predict(val)

        images = np.concatenate([val[i][0] for i in range(len(val))])
        both = np.asarray(model.predict_on_batch(images))
        assert probs.shape == (6, 7)
        np.testing.assert_allclose(probs, both[:, :7], atol=1e-5)
        expected = log_loss(val.targets, both[:, :7], labels=range(7)) + log_loss(
            aux_targets, both[:, 7:], labels=range(2)
        )
        assert steps.validation_loss(val, probs) == pytest.approx(expected, rel=1e-4)
        assert steps.validation_loss(val, probs) > categorical_loss(val, probs)

    def test_loss_before_predict_is_an_error(self, trunk_and_router) -> None:
        trunk, router = trunk_and_router
        steps = JointSteps(build_auxiliary_model(trunk, router, 2), 7, np.zeros(6, int))
        val = self._val()
        with pytest.raises(ValueError, match="predict"):
            steps.validation_loss(val, np.full((6, 7), 1 / 7))
