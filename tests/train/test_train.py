"""``batchfrac train``: the loop's early stopping and best-weights restore (fast, with
fake steps), then the command end to end on a tiny synth MURA tree (64 px, 1 epoch).

The end-to-end tests are slow: they train real EfficientNet-B0 networks. The router is
trained end to end once per module (it defines the bundle's trunk); each test works on a
copy of that bundle.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from batchfrac.bundle.format import ModelBundle
from batchfrac.cli import app
from batchfrac.datasets.mura import read_mura
from batchfrac.datasets.samples import Sample
from batchfrac.enums import Bone, Head, Label
from batchfrac.train.augment import RadiographAugment
from batchfrac.train.batches import ImageBatches
from batchfrac.train.loop import categorical_loss, fit
from batchfrac.train.trainer import DEFAULT_IMAGE_SIZE, LEARNING_RATE, TrainConfig
from tests.mura_synth import synth_mura

SIZE = "64"


def _train(data: Path, bundle: Path, bone: str, *extra: str):
    args = ["train", "--bone", bone, "--data", str(data), "--bundle", str(bundle)]
    args += ["--epochs", "1", "--batch-size", "16", *extra]
    return CliRunner().invoke(app, args)


def _text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _snapshot(bundle: Path) -> dict[str, str]:
    """sha256 of every file of a bundle (the advisory lock file aside)."""
    return {
        p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _weights_file(folder: Path, seed: int) -> Path:
    """A Keras-format efficientnetb0_notop.h5 holding a random (seeded) B0."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from batchfrac.bundle.network import build_backbone

    keras.utils.set_random_seed(seed)
    path = folder / "efficientnetb0_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, build_backbone(None, int(SIZE)))
    return path


def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "bundle.json").read_text())


# --------------------------------------------------------------------------- fast


class FakeLoader:
    def load_many(self, samples):
        return np.zeros((len(samples), 4, 4, 3), np.float32)


class FakeSteps:
    """Validation loss follows ``losses`` epoch by epoch; weights are the epoch number."""

    def __init__(self, losses: list[float]) -> None:
        self.losses = losses
        self.epoch = 0
        self.restored: list[np.ndarray] | None = None
        self.trained_batches = 0

    def train(self, x, y, w):
        self.trained_batches += 1
        return {"loss": 1.0, "accuracy": 0.5}

    def predict(self, batches):
        loss = self.losses[self.epoch]
        self.epoch += 1
        # Both classes get exp(-loss) on the true class: log_loss == loss.
        p_true = np.exp(-loss)
        probs = np.full((len(batches.samples), 2), 1 - p_true)
        probs[np.arange(len(batches.samples)), batches.targets] = p_true
        return probs

    def get_weights(self):
        return [np.array([self.epoch])]

    def set_weights(self, weights):
        self.restored = weights

    def validation_loss(self, val, probs):
        return categorical_loss(val, probs)


def _batches(n: int = 6) -> ImageBatches:
    samples = [
        Sample(f"s{i}", f"s{i}", Bone.HAND, Label.NORMAL, f"p{i}", f"s{i}") for i in range(n)
    ]
    return ImageBatches(samples, np.arange(n) % 2, 2, FakeLoader(), batch_size=4)


def test_fit_stops_early_and_restores_the_best_epoch():
    steps = FakeSteps([0.9, 0.5, 0.7, 0.8, 0.4])
    result = fit(steps, _batches(), _batches(), epochs=5, patience=2)
    assert result.epochs_run == 4 and result.stopped_early
    assert result.best_epoch == 1
    assert [round(h["val_loss"], 6) for h in result.history] == [0.9, 0.5, 0.7, 0.8]
    assert steps.restored is not None and int(steps.restored[0][0]) == 2  # after epoch 1
    assert steps.trained_batches == 4 * 2  # 6 samples in batches of 4


def test_fit_runs_all_epochs_while_improving():
    steps = FakeSteps([0.9, 0.8, 0.7])
    result = fit(steps, _batches(), _batches(), epochs=3, patience=1)
    assert result.epochs_run == 3 and not result.stopped_early and result.best_epoch == 2


def test_training_batches_are_full_and_reshuffled():
    samples = [
        Sample(f"s{i}", f"s{i}", Bone.HAND, Label.NORMAL, f"p{i}", f"s{i}") for i in range(6)
    ]
    batches = ImageBatches(
        samples, np.zeros(6, int), 2, FakeLoader(), 4, shuffle=True, full_batches=True
    )
    assert [len(batches[i][0]) for i in range(len(batches))] == [4, 4]
    first = list(batches._order)
    batches.on_epoch_end()
    assert sorted(batches._order) == sorted(first) == list(range(6))


def test_defaults_follow_the_paper_recipe():
    recipe = json.loads((Path(__file__).parents[2] / "training" / "paper_recipe.json").read_text())
    config = TrainConfig(head=Head.HAND, data=Path("."), bundle=Path("b"))
    assert LEARNING_RATE == recipe["optimizer"]["learning_rate"]
    assert config.val_split == recipe["validation_split"]
    assert config.patience == recipe["added_by_batchfrac"]["early_stopping_patience"]
    assert DEFAULT_IMAGE_SIZE == recipe["image_size"]


# --------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_mura(tmp_path_factory.mktemp("mura"))


@pytest.fixture(scope="module")
def router_bundle(data, tmp_path_factory) -> Path:
    bundle = tmp_path_factory.mktemp("models") / "bundle"
    result = _train(data, bundle, "router", "--weights", "none", "--image-size", SIZE)
    assert result.exit_code == 0, result.output
    return bundle


@pytest.fixture()
def bundle(router_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(router_bundle, tmp_path / "bundle"))


@pytest.mark.slow
def test_router_end_to_end_creates_the_bundle(router_bundle, data):
    loaded = ModelBundle.load(router_bundle)
    assert loaded.heads() == ["router"] and loaded.image_size == int(SIZE)
    meta = loaded.meta
    assert meta["trunk"]["obtained"] == "router_end_to_end"
    assert meta["weights_origin"] == {"kind": "none"}
    head = loaded.head_meta("router")
    train = read_mura(data, "train")
    assert head["data"]["sha256"] == train.content_sha256
    assert head["data"]["source"] == "MURA-v1.1"
    per_bone = {b.value: 0 for b in set(s.bone for s in train.samples)}
    for s in train.samples:
        per_bone[s.bone.value] += 1
    combined = {
        bone: head["images_per_class"][bone] + head["validation_images_per_class"][bone]
        for bone in per_bone
    }
    assert combined == per_bone
    assert head["epochs"] == 1 and head["training_seconds"] > 0 and head["seed"] == 0
    assert head["mode"] == "end_to_end"
    compute = head["compute"]
    assert compute["keras_backend"] == keras.backend.backend()
    assert compute["keras_version"] == keras.__version__
    assert compute["device"] == "cpu" or compute["device"].startswith("gpu: ")
    assert {"accuracy", "precision", "sensitivity", "specificity", "f1", "auroc"} <= set(
        head["validation_metrics"]
    )
    assert head["patients"]["train"] > 0 and head["patients"]["validation"] > 0
    # The bundle appeared by rename: no staging folder is left beside it.
    assert [p.name for p in router_bundle.parent.iterdir()] == ["bundle"]


@pytest.mark.slow
def test_bone_head_is_added_then_replaced(bundle, data):
    before = _meta(bundle)
    result = _train(data, bundle, "hand")
    assert result.exit_code == 0, result.output
    added = _meta(bundle)
    assert list(added["heads"]) == ["router", "hand"]
    assert added["heads"]["router"] == before["heads"]["router"]
    assert added["trunk"] == before["trunk"]
    hand = added["heads"]["hand"]
    assert hand["trunk_sha256"] == added["trunk"]["sha256"]
    assert hand["threshold"] == 0.5 and hand["mode"] == "transfer"
    assert "router" in hand["head_init"]
    assert set(hand["images_per_class"]) == {"normal", "abnormal"}
    hand_samples = read_mura(data, "train").for_head(Head.HAND)
    assert hand["data"]["sha256"] == hand_samples.content_sha256
    assert added["bundle_id"] != before["bundle_id"]

    result = _train(data, bundle, "hand", "--seed", "1")
    assert result.exit_code == 0, result.output
    replaced = _meta(bundle)
    assert replaced["heads"]["router"] == before["heads"]["router"]
    assert replaced["heads"]["hand"]["sha256"] != hand["sha256"]
    assert replaced["heads"]["hand"]["seed"] == 1
    assert replaced["bundle_id"] not in (before["bundle_id"], added["bundle_id"])
    assert [p.name for p in (bundle / "heads").glob("hand-*.npz")] == [
        Path(replaced["heads"]["hand"]["file"]).name
    ]
    ModelBundle.load(bundle)  # every hash still verifies


@pytest.mark.slow
def test_adding_a_head_loads_and_hashes_the_bundle_once(bundle, data, monkeypatch):
    import batchfrac.bundle.format as bundle_format
    import batchfrac.bundle.runtime as runtime_module
    import batchfrac.train.plan as plan_module

    calls = {"load": 0, "hash": 0, "runtime": 0}
    load, file_sha256 = bundle_format.ModelBundle.load.__func__, bundle_format.file_sha256
    runtime_init = runtime_module.BundleRuntime.__init__

    def counting_load(cls, path):
        calls["load"] += 1
        return load(cls, path)

    def counting_hash(path):
        calls["hash"] += 1
        return file_sha256(path)

    def counting_runtime(self, *args, **kwargs):
        calls["runtime"] += 1
        runtime_init(self, *args, **kwargs)

    def no_rehash(trunk):
        raise AssertionError("the bundle's trunk sha256 is known; it must not be recomputed")

    monkeypatch.setattr(bundle_format.ModelBundle, "load", classmethod(counting_load))
    monkeypatch.setattr(bundle_format, "file_sha256", counting_hash)
    monkeypatch.setattr(runtime_module.BundleRuntime, "__init__", counting_runtime)
    monkeypatch.setattr(plan_module, "trunk_sha256", no_rehash)
    result = _train(data, bundle, "hand")
    assert result.exit_code == 0, result.output
    # one load (trunk + router head hashed once), one set of networks built
    assert calls == {"load": 1, "hash": 2, "runtime": 1}


def _interrupt(self, images, rng):
    raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupted_training_leaves_the_bundle_unchanged(bundle, data, monkeypatch):
    before = _snapshot(bundle)
    monkeypatch.setattr(RadiographAugment, "batch", _interrupt)
    result = _train(data, bundle, "hand")
    assert result.exit_code == 130, result.output
    assert "left unchanged" in _text(result)
    assert _snapshot(bundle) == before
    assert [p.name for p in bundle.parent.iterdir()] == ["bundle"]


@pytest.mark.slow
def test_interrupted_first_training_creates_nothing(data, tmp_path, monkeypatch):
    monkeypatch.setattr(RadiographAugment, "batch", _interrupt)
    target = tmp_path / "new-bundle"
    result = _train(data, target, "router", "--weights", "none", "--image-size", SIZE)
    assert result.exit_code == 130, result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_head_on_a_different_trunk_is_refused(bundle, data, tmp_path):
    """--weights PATH gives another trunk than the bundle's end-to-end one: refused."""
    weights = _weights_file(tmp_path, seed=0)
    before = _snapshot(bundle)
    result = _train(data, bundle, "hand", "--weights", str(weights))
    assert result.exit_code == 1, result.output
    assert "different from the one in bundle" in _text(result)
    assert _snapshot(bundle) == before


@pytest.mark.slow
def test_first_head_with_weights_none_defines_the_trunk(data, tmp_path):
    """The issue's acceptance: hand first, no ImageNet, then evaluate, as a new user would."""
    bundle = tmp_path / "B"
    result = _train(data, bundle, "hand", "--weights", "none", "--image-size", SIZE)
    assert result.exit_code == 0, result.output
    loaded = ModelBundle.load(bundle)
    assert loaded.heads() == ["hand"]
    assert loaded.meta["trunk"]["obtained"] == "hand_end_to_end"
    result = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--bundle", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "skipped routed: no router head in the bundle" in _text(result)


@pytest.mark.slow
def test_dicom_archive_with_labels_csv(bundle, tmp_path):
    """--labels: files decoded by the scanner's ingest; synth's ground_truth.csv has the
    path, bone and label columns a labels CSV needs."""
    archive = tmp_path / "archive"
    args = ["synth", str(archive), "--studies", "24", "--seed", "0"]
    result = CliRunner().invoke(app, [*args, "--min-size", "48", "--max-size", "64", "--no-junk"])
    assert result.exit_code == 0, result.output
    labels = archive / "ground_truth.csv"
    result = _train(archive, bundle, "elbow", "--labels", str(labels))
    assert result.exit_code == 0, result.output
    elbow = _meta(bundle)["heads"]["elbow"]
    assert elbow["data"]["source"] == "DICOM archive + labels CSV"
    with open(labels, newline="") as fh:
        n_elbow = sum(row["bone"] == "elbow" for row in csv.DictReader(fh))
    assert (
        sum(elbow["images_per_class"].values()) + sum(elbow["validation_images_per_class"].values())
        == n_elbow
    )
    args = ["evaluate", "--data", str(archive), "--labels", str(labels), "--bundle", str(bundle)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert "Per bone, study level" in text and " elbow " in text
    assert "skipped hand: no hand head in the bundle" in text


@pytest.mark.slow
def test_transfer_from_a_weights_file(data, tmp_path):
    """--weights PATH (a local efficientnetb0_notop.h5): frozen trunk, heads start from the
    file's last 20 layers; a later head without --weights rebuilds them from the same file."""
    weights = _weights_file(tmp_path, seed=3)
    bundle = tmp_path / "B"
    result = _train(data, bundle, "router", "--weights", str(weights), "--image-size", SIZE)
    assert result.exit_code == 0, result.output
    meta = _meta(bundle)
    assert meta["weights_origin"]["kind"] == "file"
    assert meta["heads"]["router"]["mode"] == "transfer"
    trunk_file = meta["trunk"]["file"]
    result = _train(data, bundle, "wrist")
    assert result.exit_code == 0, result.output
    meta = _meta(bundle)
    assert list(meta["heads"]) == ["router", "wrist"] and meta["trunk"]["file"] == trunk_file
    assert meta["heads"]["wrist"]["head_init"] == "ImageNet's last 20 layers"
