"""The model bundle on disk: round trip, content ids, atomic head writes, integrity."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from batchfrac.bundle.format import BUNDLE_FILE, DEMO_NOTICE, ModelBundle
from batchfrac.bundle.network import (
    build_backbone,
    build_full_model,
    build_head,
    split_backbone,
)
from batchfrac.bundle.weightfile import model_sha256
from batchfrac.bundle.weights import WeightsSource
from batchfrac.bundle.write import create_bundle, write_head
from batchfrac.enums import Bone, Head
from batchfrac.errors import BundleError
from batchfrac.ingest.preprocess import PreprocessSpec
from tests.b0_helpers import (
    TEST_IMAGE_SIZE,
    calibrate_batchnorm,
    calibrate_classifier,
    images,
    scramble_weights,
)

S = TEST_IMAGE_SIZE
PAPER_MB = 25.9


@pytest.fixture(scope="module")
def nets():
    """A scrambled, calibrated trunk and three heads (router, hand, a second hand)."""
    backbone = build_backbone(None, S)
    scramble_weights(backbone, seed=21)
    trunk, head_body = split_backbone(backbone)
    heads = {}
    for seed, (key, n_classes) in enumerate([("router", 7), ("hand", 2), ("hand2", 2)]):
        head = build_head(head_body, n_classes, key)
        scramble_weights(head, seed=30 + seed)
        calibrate_batchnorm(build_full_model(trunk, head), images(16, seed=40 + seed))
        calibrate_classifier(head, trunk.predict_on_batch(images(8, seed=50 + seed)), seed=seed)
        heads[key] = head
    return trunk, heads


@pytest.fixture(scope="module")
def spec():
    return PreprocessSpec(image_size=S)


def _new_bundle(path, trunk, spec, demo=True):
    origin = WeightsSource("none").origin()
    trunk_sha = create_bundle(path, trunk, spec=spec, weights_origin=origin, demo=demo)
    bundle = ModelBundle.load(path)
    assert trunk_sha == bundle.trunk_sha256
    return bundle


def _head_meta(bundle, **extra):
    return {"trunk_sha256": bundle.trunk_sha256, "epochs": 3, **extra}


@pytest.fixture(scope="module")
def shared_path(tmp_path_factory, nets, spec):
    """A bundle with the trunk, the router and the hand head (never modified)."""
    trunk, heads = nets
    path = tmp_path_factory.mktemp("shared") / "bundle"
    bundle = _new_bundle(path, trunk, spec)
    write_head(path, Head.ROUTER, heads["router"], _head_meta(bundle))
    metrics = {"accuracy": np.float32(0.75), "auroc": 0.8, "kappa": None}
    bundle_id = write_head(
        path, "hand", heads["hand"], _head_meta(bundle, validation_metrics=metrics)
    )
    assert bundle_id == ModelBundle.load(path).bundle_id
    return path


@pytest.fixture(scope="module")
def shared(shared_path):
    """The shared bundle, loaded once (its networks are built once)."""
    return ModelBundle.load(shared_path)


@pytest.fixture()
def bundle_path(tmp_path, shared_path):
    """A private copy of the shared bundle, for tests that change or damage it."""
    return Path(shutil.copytree(shared_path, tmp_path / "bundle"))


class TestRoundTrip:
    def test_outputs_equal_the_models_written(self, shared, nets):
        trunk, heads = nets
        bundle = shared
        assert bundle.heads() == ["router", "hand"]
        x = images(5, seed=60)
        expected_features = trunk.predict_on_batch(x)
        features = bundle.trunk_features(x)
        for got, want in zip(features, expected_features, strict=True):
            assert got.shape == want.shape
            # fp16 kernels: ~1e-4 relative per weight, accumulated over 218 layers
            np.testing.assert_allclose(got, want, atol=1e-2 * np.abs(want).max())
        for name in ("router", "hand"):
            want = heads[name].predict_on_batch(expected_features)
            assert np.ptp(want[:, 0]) > 0.05, "head outputs too uniform to compare"
            got = bundle.head_probs(name, features)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-3)

    def test_padding_and_batch_sizes_do_not_change_results(self, shared):
        bundle = shared
        x = images(7, seed=61)
        whole = bundle.head_probs(Head.HAND, bundle.trunk_features(x))
        parts = [bundle.head_probs("hand", bundle.trunk_features(x[i : i + 3])) for i in (0, 3, 6)]
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
        empty = bundle.head_probs("hand", [f[:0] for f in bundle.trunk_features(x)])
        assert empty.shape == (0, 2)

    def test_all_heads_in_one_call_equal_trunk_then_each_head(self, shared):
        x = images(4, seed=65)
        features = shared.trunk_features(x)
        fused = shared.all_head_probs(x)
        assert list(fused) == ["router", "hand"]
        for name, probs in fused.items():
            np.testing.assert_allclose(probs, shared.head_probs(name, features), atol=1e-5)

    def test_full_model_equals_trunk_then_head(self, shared):
        bundle = shared
        x = images(3, seed=62)
        np.testing.assert_allclose(
            bundle.full_model("router").predict_on_batch(x),
            bundle.head_probs("router", bundle.trunk_features(x)),
            atol=1e-5,
        )

    def test_trunk_and_head_of_a_loaded_bundle_for_further_training(self, shared, shared_path):
        bundle = shared
        x = images(2, seed=63)
        runtime = ModelBundle.load(shared_path).runtime
        trunk, head = runtime.trunk, runtime.head("hand")
        assert model_sha256(trunk) == bundle.trunk_sha256  # fp16 round trip is stable
        np.testing.assert_allclose(
            head.predict_on_batch(trunk.predict_on_batch(x)),
            bundle.head_probs("hand", bundle.trunk_features(x)),
            atol=1e-6,
        )

    def test_metadata(self, shared, spec):
        bundle = shared
        assert bundle.demo and bundle.notice == DEMO_NOTICE
        assert bundle.spec == spec and bundle.image_size == S
        assert bundle.router_classes == [b.value for b in Bone]
        assert bundle.head_meta("hand")["classes"] == ["normal", "abnormal"]
        assert bundle.head_meta("hand")["validation_metrics"]["accuracy"] == 0.75
        assert bundle.threshold(Bone.HAND) == 0.5
        assert bundle.meta["network"]["n_trunk_layers"] == 218
        assert bundle.meta["trunk"]["obtained"] == "random_init"
        shas = bundle.weights_sha256()
        assert list(shas)[0] == bundle.meta["trunk"]["file"]
        assert len(shas) == 3 and all(len(v) == 64 for v in shas.values())
        with pytest.raises(BundleError, match="no wrist head"):
            bundle.head_meta("wrist")


class TestContentIds:
    def test_bundle_id_changes_with_a_head_and_only_then(self, bundle_path, nets):
        _, heads = nets
        before = ModelBundle.load(bundle_path)
        meta = _head_meta(before, epochs=9, validation_metrics={"accuracy": 0.5})
        write_head(bundle_path, "hand", heads["hand"], meta)
        same = ModelBundle.load(bundle_path)
        assert same.bundle_id == before.bundle_id  # same weights and threshold: same id
        assert same.head_meta("hand")["epochs"] == 9
        write_head(bundle_path, "hand", heads["hand"], {**meta, "threshold": 0.4})
        rethresholded = ModelBundle.load(bundle_path)
        assert rethresholded.threshold("hand") == 0.4
        assert rethresholded.bundle_id != before.bundle_id  # decisions change
        write_head(bundle_path, "hand", heads["hand2"], meta)
        after = ModelBundle.load(bundle_path)
        assert after.bundle_id != before.bundle_id
        assert after.head_meta("hand")["sha256"] != before.head_meta("hand")["sha256"]
        assert after.head_meta("router") == before.head_meta("router")
        # the replaced head file is gone; exactly the referenced files remain
        on_disk = {p.relative_to(bundle_path).as_posix() for p in bundle_path.rglob("*.npz")}
        assert on_disk == set(after.weights_sha256())

    def test_same_trunk_gives_same_file_and_sha(self, tmp_path, nets, spec):
        trunk = nets[0]
        a = _new_bundle(tmp_path / "a", trunk, spec)
        assert a.trunk_sha256 == model_sha256(trunk)
        b = _new_bundle(tmp_path / "b", trunk, spec, demo=False)
        assert a.trunk_sha256 == b.trunk_sha256
        assert a.bundle_id == b.bundle_id  # the demo flag does not change predictions
        assert not b.demo and "not a medical device" in b.notice


class TestAtomicWriteHead:
    def test_crash_before_commit_leaves_the_bundle_as_it_was(
        self, bundle_path, shared, nets, monkeypatch
    ):
        _, heads = nets
        before = ModelBundle.load(bundle_path)
        before_json = (bundle_path / BUNDLE_FILE).read_bytes()
        real_replace = os.replace

        def crash_on_commit(src, dst):
            if os.path.basename(dst) == BUNDLE_FILE:
                raise OSError("simulated crash: power lost before bundle.json was replaced")
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", crash_on_commit)
        with pytest.raises(OSError, match="simulated crash"):
            write_head(bundle_path, "hand", heads["hand2"], _head_meta(before))
        monkeypatch.undo()
        assert (bundle_path / BUNDLE_FILE).read_bytes() == before_json
        new_file = sorted((bundle_path / "heads").glob("hand-*.npz"))
        assert len(new_file) == 2, "the new head file was written before the commit point"
        after = ModelBundle.load(bundle_path)
        assert after.bundle_id == before.bundle_id
        assert after.head_meta("hand") == before.head_meta("hand")
        x = images(2, seed=64)
        np.testing.assert_allclose(
            after.head_probs("hand", after.trunk_features(x)),
            shared.head_probs("hand", shared.trunk_features(x)),
            atol=1e-6,
        )
        # the next successful write cleans up the orphan
        write_head(bundle_path, "hand", heads["hand2"], _head_meta(before))
        final = ModelBundle.load(bundle_path)
        assert [p.name for p in (bundle_path / "heads").glob("hand-*.npz")] == [
            final.head_meta("hand")["file"].split("/")[1]
        ]

    def test_create_refuses_a_non_empty_directory(self, bundle_path, nets, spec):
        with pytest.raises(BundleError, match="already exists"):
            create_bundle(bundle_path, nets[0], spec=spec, weights_origin={"kind": "none"})


class TestIntegrity:
    def test_altered_weight_file(self, bundle_path):
        meta = json.loads((bundle_path / BUNDLE_FILE).read_text())
        head_file = bundle_path / meta["heads"]["hand"]["file"]
        data = bytearray(head_file.read_bytes())
        data[-100] ^= 0x01
        head_file.write_bytes(bytes(data))
        with pytest.raises(BundleError, match="sha256"):
            ModelBundle.load(bundle_path)

    def test_missing_weight_file(self, bundle_path):
        meta = json.loads((bundle_path / BUNDLE_FILE).read_text())
        (bundle_path / meta["trunk"]["file"]).unlink()
        with pytest.raises(BundleError, match="missing"):
            ModelBundle.load(bundle_path)

    def test_head_of_another_trunk_is_refused(self, bundle_path, nets):
        before = (bundle_path / BUNDLE_FILE).read_bytes()
        with pytest.raises(BundleError, match="trained on trunk"):
            write_head(bundle_path, "wrist", nets[1]["hand"], {"trunk_sha256": "0" * 64})
        with pytest.raises(BundleError, match="trunk_sha256"):
            write_head(bundle_path, "wrist", nets[1]["hand"], {})
        assert (bundle_path / BUNDLE_FILE).read_bytes() == before

    def test_head_with_wrong_classes_is_refused(self, bundle_path, nets):
        bundle = ModelBundle.load(bundle_path)
        with pytest.raises(BundleError, match="must output"):
            write_head(bundle_path, "wrist", nets[1]["router"], _head_meta(bundle))
        with pytest.raises(BundleError, match="unknown head"):
            write_head(bundle_path, "knee", nets[1]["hand"], _head_meta(bundle))

    @pytest.mark.parametrize(
        "edit, message",
        [
            (lambda m: m["heads"]["hand"].update(classes=["abnormal", "normal"]), "classes"),
            (lambda m: m["heads"]["hand"].update(file="../../etc/passwd.npz"), "does not match"),
            (lambda m: m.update(image_size=96), "image_size"),
            (lambda m: m["heads"]["hand"].update(sha256="1" * 64), "bundle_id"),
            (lambda m: m.pop("weights_origin"), "weights_origin"),
        ],
    )
    def test_edited_bundle_json_is_refused(self, bundle_path, edit, message):
        meta = json.loads((bundle_path / BUNDLE_FILE).read_text())
        edit(meta)
        (bundle_path / BUNDLE_FILE).write_text(json.dumps(meta))
        with pytest.raises(BundleError, match=message):
            ModelBundle.load(bundle_path)

    def test_not_a_bundle(self, tmp_path):
        with pytest.raises(BundleError, match="not a model bundle"):
            ModelBundle.load(tmp_path)


def test_trunk_and_eight_heads_at_224_fit_in_30_mb(tmp_path):
    """The paper needs 8 x 25.9 MB; one trunk + 8 fp16 heads must stay under 30 MB."""
    backbone = build_backbone(None, 224)
    trunk, head_body = split_backbone(backbone)
    path = tmp_path / "bundle224"
    bundle = _new_bundle(path, trunk, PreprocessSpec(image_size=224))
    rng = np.random.default_rng(0)
    for head_name in Head:
        head = build_head(head_body, 7 if head_name is Head.ROUTER else 2, head_name.value)
        dense = head.get_layer("predictions")
        dense.set_weights(
            [rng.normal(0, 0.05, w.shape).astype("float32") for w in dense.get_weights()]
        )
        write_head(path, head_name, head, _head_meta(bundle))
    loaded = ModelBundle.load(path)
    assert loaded.heads() == [h.value for h in Head]
    total = sum((path / name).stat().st_size for name in loaded.weights_sha256())
    assert total <= 30e6, f"{total / 1e6:.1f} MB against the paper's {8 * PAPER_MB} MB"
