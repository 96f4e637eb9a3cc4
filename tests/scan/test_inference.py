"""Batched shared-trunk inference: padding, hard/soft routing, trunk-pass counting, flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchfrac.bundle.format import ModelBundle
from batchfrac.enums import Bone, Head, ImageFlag, Routing
from batchfrac.report.bodypart import bones_for_body_part, routing_flags
from batchfrac.scan.inference import BatchPredictor, BatchQueue
from tests.scan_fakes import BONES, FakeBundle, image_of_mean, router_probs

# Means that route to elbow, finger, hand, hand, wrist (floor(mean * 7)).
MEANS = [0.05, 0.2, 0.5, 0.52, 0.95]


def images(means: list[float]) -> np.ndarray:
    return np.stack([image_of_mean(m) for m in means])


class AnySizeBundle(FakeBundle):
    """A fake whose networks take any batch size (like ONNX Runtime's)."""

    fixed_batch = False


def head_probability(bone: Bone, mean: float) -> float:
    return (BONES.index(bone) + 1) / 10 + 0.05 * mean


class TestBatching:
    def test_fixed_batches_last_one_padded(self) -> None:
        bundle = FakeBundle()
        predictor = BatchPredictor(bundle, batch_size=4)
        predictions = predictor.predict(images(MEANS))
        assert len(predictions) == 5
        assert bundle.trunk_batches == [4, 4]
        assert (predictor.images, predictor.trunk_images) == (5, 8)
        assert predictor.trunk_passes_per_image == pytest.approx(1.6)

    def test_warm_up_runs_the_trunk_and_every_head_at_the_batch_size_uncounted(self) -> None:
        bundle = FakeBundle()
        predictor = BatchPredictor(bundle, batch_size=4)
        predictor.warm_up()
        assert bundle.trunk_batches == [4]
        assert bundle.head_calls == {head: 1 for head in Head}
        assert (predictor.images, predictor.trunk_images, predictor.batches) == (0, 0, 0)
        assert not predictor.head_images

    def test_a_backend_that_takes_any_size_gets_no_padding(self) -> None:
        bundle = AnySizeBundle()
        predictor = BatchPredictor(bundle, batch_size=4)
        predictor.warm_up()
        assert bundle.trunk_batches == [1]  # building its sessions needs no full batch
        predictions = predictor.predict(images(MEANS))
        assert bundle.trunk_batches == [1, 4, 1]
        assert [p.bone for p in predictions] == [Bone.ELBOW, Bone.FINGER, Bone.HAND,
                                                 Bone.HAND, Bone.WRIST]  # fmt: skip
        assert (predictor.images, predictor.trunk_images) == (5, 5)
        assert predictor.trunk_passes_per_image == 1.0

    def test_padding_never_reaches_a_head(self) -> None:
        bundle = FakeBundle()
        BatchPredictor(bundle, batch_size=4).predict(images(MEANS))
        assert sorted(bundle.head_seen[Head.ROUTER]) == pytest.approx(MEANS)

    def test_queue_runs_only_full_batches_until_flush(self) -> None:
        bundle = FakeBundle()
        queue: BatchQueue[str] = BatchQueue(BatchPredictor(bundle, batch_size=2))
        assert queue.put("a", image_of_mean(0.05)) == []
        ready = queue.put("b", image_of_mean(0.95))
        assert [key for key, _ in ready] == ["a", "b"]
        assert [p.bone for _, p in ready] == [Bone.ELBOW, Bone.WRIST]
        assert queue.put("c", image_of_mean(0.5)) == []
        assert len(queue) == 1
        (last,) = queue.flush()
        assert last[0] == "c" and last[1].bone is Bone.HAND
        assert queue.flush() == []
        assert bundle.trunk_batches == [2, 2]

    def test_rejects_wrong_shapes(self) -> None:
        predictor = BatchPredictor(FakeBundle(), batch_size=2)
        with pytest.raises(ValueError, match="expected 1..2 images"):
            predictor.predict_batch(np.zeros((3, 32, 32, 3), np.float32))
        with pytest.raises(ValueError, match="shape"):
            predictor.predict_batch(np.zeros((1, 16, 16, 3), np.float32))

    def test_rejects_a_router_that_is_not_the_seven_bones(self) -> None:
        bundle = FakeBundle()
        bundle.router_classes = bundle.router_classes[:6]
        with pytest.raises(ValueError, match="not the 7 bones"):
            BatchPredictor(bundle)


class TestHardRouting:
    def test_each_bone_head_sees_only_its_images(self) -> None:
        bundle = FakeBundle()
        predictor = BatchPredictor(bundle, batch_size=8, routing=Routing.HARD)
        predictions = predictor.predict(images(MEANS))
        assert [p.bone for p in predictions] == [
            Bone.ELBOW, Bone.FINGER, Bone.HAND, Bone.HAND, Bone.WRIST,
        ]  # fmt: skip
        assert bundle.head_seen[Head.HAND] == pytest.approx([0.5, 0.52])
        assert bundle.head_seen[Head.ELBOW] == pytest.approx([0.05])
        assert Head.SHOULDER not in bundle.head_seen
        assert predictor.head_images[Head.ROUTER] == 5
        assert sum(predictor.head_images[Head(b.value)] for b in Bone) == 5
        assert bundle.head_calls[Head.HAND] == 1  # one call for both hand images

    def test_probability_and_confidence_are_the_routed_heads(self) -> None:
        predictions = BatchPredictor(FakeBundle(), batch_size=8).predict(images(MEANS))
        for mean, prediction in zip(MEANS, predictions, strict=True):
            assert prediction.bone_confidence == pytest.approx(0.9)
            expected = head_probability(prediction.bone, mean)
            assert prediction.abnormal_probability == pytest.approx(expected, abs=1e-6)


class TestSoftRouting:
    def test_probability_is_the_router_weighted_mixture(self) -> None:
        bundle = FakeBundle()
        predictions = BatchPredictor(bundle, batch_size=8, routing=Routing.SOFT).predict(
            images(MEANS)
        )
        router = router_probs(np.array(MEANS))
        for i, (mean, prediction) in enumerate(zip(MEANS, predictions, strict=True)):
            expected = sum(router[i, j] * head_probability(b, mean) for j, b in enumerate(BONES))
            assert prediction.abnormal_probability == pytest.approx(expected, abs=1e-6)
        # every bone head saw every image, the trunk still ran once per batch
        assert all(len(bundle.head_seen[Head(b.value)]) == 5 for b in Bone)
        assert bundle.trunk_batches == [8]


class TestRoutingFlags:
    @pytest.mark.parametrize(
        ("value", "bones"),
        [
            ("HAND", {Bone.HAND}),
            ("l wrist", {Bone.WRIST}),
            ("XR_ELBOW", {Bone.ELBOW}),
            ("UPPER ARM", {Bone.HUMERUS}),
            ("upper_arm left", {Bone.HUMERUS}),
            ("ARM", {Bone.HUMERUS, Bone.FOREARM}),
            ("THUMB", {Bone.FINGER}),
            ("HAND WRIST", {Bone.HAND, Bone.WRIST}),
            ("SHOULDER", {Bone.SHOULDER}),
        ],
    )
    def test_body_part_strings_map_to_bones(self, value: str, bones: set[Bone]) -> None:
        assert bones_for_body_part(value) == bones

    @pytest.mark.parametrize("value", [None, "", "CHEST", "UPPER LIMB", "EXTREMITY"])
    def test_unknown_body_parts_cannot_disagree(self, value: str | None) -> None:
        assert bones_for_body_part(value) is None
        assert routing_flags(value, Bone.HAND, 0.99) == ()

    def test_mismatch_and_low_confidence(self) -> None:
        assert routing_flags("ELBOW", Bone.HAND, 0.99) == (ImageFlag.BODYPART_MISMATCH,)
        assert routing_flags("HAND", Bone.HAND, 0.3) == (ImageFlag.LOW_ROUTER_CONFIDENCE,)
        assert routing_flags("ARM", Bone.FOREARM, 0.6, low_confidence=0.7) == (
            ImageFlag.LOW_ROUTER_CONFIDENCE,
        )


@pytest.fixture(scope="module")
def real_bundle(tiny_bundle: Path) -> ModelBundle:
    return ModelBundle.load(tiny_bundle)


@pytest.mark.slow  # builds real B0 networks (about 30 s on 2 cores)
def test_real_bundle_batches_equal_the_papers_separate_full_models(
    real_bundle: ModelBundle,
) -> None:
    x = np.random.default_rng(0).random((5, 64, 64, 3), dtype=np.float32)
    predictor = BatchPredictor(real_bundle, batch_size=4)
    hard = predictor.predict(x)
    assert predictor.trunk_images == 8
    router = real_bundle.full_model(Head.ROUTER).predict(x, verbose=0)
    for bone in {p.bone for p in hard}:
        own = real_bundle.full_model(bone.value).predict(x, verbose=0)[:, 1]
        for i, prediction in enumerate(hard):
            if prediction.bone is bone:
                assert prediction.abnormal_probability == pytest.approx(own[i], abs=1e-4)
    for i, prediction in enumerate(hard):
        assert prediction.bone is Bone(real_bundle.router_classes[int(np.argmax(router[i]))])
        assert prediction.bone_confidence == pytest.approx(router[i].max(), abs=1e-4)
    soft = BatchPredictor(real_bundle, batch_size=4, routing=Routing.SOFT).predict(x)
    assert [p.bone for p in soft] == [p.bone for p in hard]


@pytest.mark.slow  # builds real B0 networks
def test_soft_routing_traces_every_head_without_a_retracing_warning(
    real_bundle: ModelBundle, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    x = np.random.default_rng(1).random((3, 64, 64, 3), dtype=np.float32)
    with caplog.at_level(logging.WARNING):
        predictions = BatchPredictor(real_bundle, batch_size=3, routing=Routing.SOFT).predict(x)
        logging.getLogger("tensorflow").warning("an unrelated TensorFlow warning")
    assert len(predictions) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "retracing" in m], messages
    assert "an unrelated TensorFlow warning" in messages
