"""``batchfrac evaluate``: oracle and routed tables on a fake bundle with known outputs,
checked against independent numpy counting; CSV/JSON/PNG outputs of the real command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from batchfrac.datasets.samples import Dataset, Sample, SourceKind
from batchfrac.enums import Bone, Head, Label
from batchfrac.evaluation.evaluate import (
    IMAGE,
    ORACLE,
    ROUTED,
    STUDY,
    cases,
    evaluate_predictions,
    predict,
)
from batchfrac.evaluation.report import (
    EVALUATION_JSON,
    METRICS_CSV,
    METRICS_CSV_COLUMNS,
    PREDICTIONS_CSV,
    PREDICTIONS_CSV_COLUMNS,
    ROUTER_CSV,
    write_outputs,
)

BONES = list(Bone)
H, W, E = BONES.index(Bone.HAND), BONES.index(Bone.WRIST), BONES.index(Bone.ELBOW)

# (study, bone, abnormal, routed bone index, router confidence, hand P(abn), wrist P(abn))
IMAGES = [
    ("H1", Bone.HAND, True, H, 0.6, 0.7, 0.2),
    ("H1", Bone.HAND, True, W, 0.9, 0.4, 0.35),
    ("H2", Bone.HAND, False, H, 0.8, 0.6, 0.1),
    ("H2", Bone.HAND, False, H, 0.7, 0.2, 0.1),
    ("H3", Bone.HAND, True, H, 0.9, 0.3, 0.9),
    ("H4", Bone.HAND, False, H, 0.9, 0.1, 0.9),
    ("W1", Bone.WRIST, True, W, 0.9, 0.1, 0.45),
    ("W1", Bone.WRIST, True, E, 0.5, 0.1, 0.8),
    ("W2", Bone.WRIST, False, W, 0.8, 0.9, 0.3),
    ("E1", Bone.ELBOW, False, E, 0.9, 0.5, 0.5),
]
THRESHOLDS = {"hand": 0.5, "wrist": 0.4}


def _dataset() -> Dataset:
    samples = []
    for i, (study, bone, abnormal, *_rest) in enumerate(IMAGES):
        label = Label.ABNORMAL if abnormal else Label.NORMAL
        rel = f"valid/{bone.mura_part}/p{study}/{study}/image{i}.png"
        samples.append(Sample(rel, rel, bone, label, f"p{study}", study))
    return Dataset(SourceKind.MURA, Path("/nowhere"), "valid", tuple(samples))


class FakeLoader:
    """Images whose first pixel is the sample's index (the fake trunk reads it back)."""

    def __init__(self, dataset: Dataset) -> None:
        self.index = {s.rel: i for i, s in enumerate(dataset.samples)}

    def load_many(self, samples):
        out = np.zeros((len(samples), 1, 1, 3), np.float32)
        out[:, 0, 0, 0] = [self.index[s.rel] for s in samples]
        return out


class FakeBundle:
    """A router + hand + wrist bundle with the outputs of :data:`IMAGES`."""

    router_classes = [b.value for b in Bone]

    def __init__(self, with_router: bool = True) -> None:
        self.with_router = with_router
        self.router = np.full((len(IMAGES), 7), 0.0)
        for i, (*_, routed, confidence, _h, _w) in enumerate(IMAGES):
            self.router[i] = (1 - confidence) / 6
            self.router[i, routed] = confidence
        self.bone = {
            "hand": np.array([row[5] for row in IMAGES]),
            "wrist": np.array([row[6] for row in IMAGES]),
        }

    def heads(self):
        return (["router"] if self.with_router else []) + ["hand", "wrist"]

    def threshold(self, bone):
        return THRESHOLDS[bone.value]

    def trunk_features(self, x):
        return [x[:, 0, 0, 0].astype(int)]

    def head_probs(self, name, features):
        index = features[0]
        if Head(name) is Head.ROUTER:
            return self.router[index]
        p = self.bone[Head(name).value][index]
        return np.stack([1 - p, p], axis=1)


def _evaluation(with_router: bool = True, batch_size: int = 3):
    dataset = _dataset()
    predictions = predict(FakeBundle(with_router), dataset, FakeLoader(dataset), batch_size)
    return evaluate_predictions(predictions, {"data": dataset.describe()})


def _row(evaluation, mode, level, bone):
    (row,) = [r for r in evaluation.table(mode, level) if r["bone"] == bone]
    return row


def _count(y, prob, threshold):
    y, pred = np.asarray(y), np.asarray(prob) > np.asarray(threshold)
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "fn": int(np.sum(~pred & (y == 1))),
        "fp": int(np.sum(pred & (y == 0))),
        "tn": int(np.sum(~pred & (y == 0))),
    }


class TestPredict:
    @pytest.mark.parametrize("batch_size", [1, 3, 32])
    def test_oracle_and_routed_probabilities(self, batch_size):
        p = _evaluation(batch_size=batch_size).predictions
        for i, (_, bone, _, routed, _, hand, wrist) in enumerate(IMAGES):
            own = {Bone.HAND: hand, Bone.WRIST: wrist}.get(bone)
            if own is None:
                assert np.isnan(p.oracle[i])
            else:
                assert p.oracle[i] == pytest.approx(own)
            picked = {H: hand, W: wrist}.get(routed)
            if picked is None:
                assert np.isnan(p.routed[i])
            else:
                assert p.routed[i] == pytest.approx(picked)

    def test_without_router_no_routed_results(self):
        evaluation = _evaluation(with_router=False)
        assert evaluation.router is None
        assert not evaluation.table(ROUTED, IMAGE)
        assert "routed: no router head in the bundle" in evaluation.skipped


class TestTables:
    def test_oracle_image_rows_match_numpy_counting(self):
        evaluation = _evaluation()
        for bone, column in (("hand", 5), ("wrist", 6)):
            mine = [row for row in IMAGES if row[1].value == bone]
            y = [int(row[2]) for row in mine]
            prob = [row[column] for row in mine]
            expected = _count(y, prob, THRESHOLDS[bone])
            row = _row(evaluation, ORACLE, IMAGE, bone)
            assert {k: row[k] for k in expected} == expected
            n = len(mine)
            assert row["n"] == n
            assert row["accuracy"] == pytest.approx((expected["tp"] + expected["tn"]) / n)

    def test_oracle_study_rows_use_the_mean_probability(self):
        evaluation = _evaluation()
        hand = [row for row in IMAGES if row[1] is Bone.HAND]
        studies = sorted({row[0] for row in hand})
        prob = [np.mean([r[5] for r in hand if r[0] == s]) for s in studies]
        y = [int(next(r[2] for r in hand if r[0] == s)) for s in studies]
        expected = _count(y, prob, THRESHOLDS["hand"])
        row = _row(evaluation, ORACLE, STUDY, "hand")
        assert {k: row[k] for k in expected} == expected
        assert row["n"] == len(studies) == 4

    def test_routed_study_follows_the_scan_rule(self):
        # H1: image 0 -> hand (confidence 0.6), image 1 -> wrist (0.9): the study's bone is
        # wrist (largest summed confidence), its threshold wrist's, its probability the
        # mean of each image's own routed head.
        p = _evaluation().predictions
        truth, y, prob, threshold, unscored = cases(p, ROUTED, STUDY)
        study_order = sorted({row[0] for row in IMAGES})
        h1 = study_order.index("H1")
        assert prob[h1] == pytest.approx((0.7 + 0.35) / 2)
        assert threshold[h1] == THRESHOLDS["wrist"]
        assert truth[h1] == H and y[h1] == 1 and not unscored[h1]
        # W1: one image routed to the head-less elbow; the other one carries the study.
        w1 = study_order.index("W1")
        assert prob[w1] == pytest.approx(0.45)
        assert threshold[w1] == THRESHOLDS["wrist"]

    def test_routed_image_rows_leave_out_unscored_images(self):
        evaluation = _evaluation()
        row = _row(evaluation, ROUTED, IMAGE, "wrist")
        assert row["n"] == 2 and row["n_unscored"] == 1
        assert any(
            "2 image(s) went to bones without a head (elbow 2)" in s for s in evaluation.skipped
        )

    def test_average_and_overall_rows(self):
        evaluation = _evaluation()
        hand = _row(evaluation, ORACLE, IMAGE, "hand")
        wrist = _row(evaluation, ORACLE, IMAGE, "wrist")
        average = _row(evaluation, ORACLE, IMAGE, "average")
        overall = _row(evaluation, ORACLE, IMAGE, "overall")
        for key in ("tp", "fn", "fp", "tn", "n"):
            assert average[key] == hand[key] + wrist[key] == overall[key]
        assert average["accuracy"] == pytest.approx((hand["accuracy"] + wrist["accuracy"]) / 2)
        assert overall["accuracy"] == pytest.approx((overall["tp"] + overall["tn"]) / overall["n"])

    def test_bones_without_a_head_are_skipped(self):
        evaluation = _evaluation()
        assert "elbow: no elbow head in the bundle" in evaluation.skipped
        assert {r["bone"] for r in evaluation.rows} == {"hand", "wrist", "average", "overall"}

    def test_router_confusion(self):
        evaluation = _evaluation()
        assert evaluation.router is not None
        matrix = np.array(evaluation.router.confusion)
        expected = np.zeros((7, 7), int)
        for _, bone, _, routed, *_ in IMAGES:
            expected[BONES.index(bone), routed] += 1
        assert np.array_equal(matrix, expected)
        assert evaluation.router.accuracy == pytest.approx(np.trace(expected) / len(IMAGES))

    def test_published_numbers_beside_oracle_rows_on_mura(self):
        evaluation = _evaluation()
        assert _row(evaluation, ORACLE, STUDY, "hand")["mura_kappa"] == 0.851
        assert _row(evaluation, ORACLE, STUDY, "overall")["mura_kappa"] == 0.705
        assert _row(evaluation, ORACLE, IMAGE, "hand")["mura_kappa"] is None
        assert _row(evaluation, ORACLE, IMAGE, "average")["paper_accuracy"] == 0.757
        assert _row(evaluation, ORACLE, IMAGE, "average")["paper_f1"] == 0.739
        assert all(r["mura_kappa"] is None for r in evaluation.table(ROUTED, STUDY))


class TestOutputs:
    def test_csv_and_json(self, tmp_path):
        evaluation = _evaluation()
        written = write_outputs(evaluation, tmp_path / "out")
        names = {p.name for p in written}
        assert names == {METRICS_CSV, PREDICTIONS_CSV, EVALUATION_JSON, ROUTER_CSV}
        with open(tmp_path / "out" / METRICS_CSV, newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames or ()) == METRICS_CSV_COLUMNS
            rows = list(reader)
        assert len(rows) == len(evaluation.rows)
        hand = next(r for r in rows if r["mode"] == "oracle" and r["level"] == "image")
        assert (
            hand["bone"] == "hand"
            and int(hand["tp"]) == _row(evaluation, ORACLE, IMAGE, "hand")["tp"]
        )
        with open(tmp_path / "out" / PREDICTIONS_CSV, newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames or ()) == PREDICTIONS_CSV_COLUMNS
            assert len(list(reader)) == len(IMAGES)
        document = json.loads((tmp_path / "out" / EVALUATION_JSON).read_text())
        assert set(document) == {"provenance", "rows", "router", "pointing", "skipped"}
        assert document["pointing"] is None  # no boxes in these labels
        assert document["router"]["classes"] == [b.value for b in Bone]
        router = list(csv.reader(open(tmp_path / "out" / ROUTER_CSV, newline="")))
        assert router[0] == ["true_bone", *(b.value for b in Bone)] and len(router) == 8


@pytest.mark.slow
def test_evaluate_command_writes_tables_and_plots(tmp_path):
    """The real command on a synth MURA tree and a bundle with untrained router/hand heads."""
    from typer.testing import CliRunner

    from batchfrac.bundle.format import ModelBundle
    from batchfrac.bundle.network import build_backbone, build_head, split_backbone
    from batchfrac.bundle.write import create_bundle, write_head
    from batchfrac.cli import app
    from batchfrac.ingest.preprocess import PreprocessSpec
    from tests.mura_synth import synth_mura

    data = synth_mura(tmp_path / "mura")
    bundle = tmp_path / "bundle"
    trunk, body = split_backbone(build_backbone(None, 64))
    create_bundle(
        bundle, trunk, spec=PreprocessSpec(image_size=64), weights_origin={"kind": "none"}
    )
    sha = ModelBundle.load(bundle).trunk_sha256
    write_head(bundle, "router", build_head(body, 7, "router"), {"trunk_sha256": sha})
    write_head(bundle, "hand", build_head(body, 2, "hand"), {"trunk_sha256": sha})
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(data), "--bundle", str(bundle), "--out", str(out), "--plots"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Per bone, image level" in result.output and "skipped elbow" in result.output
    expected = {
        METRICS_CSV,
        PREDICTIONS_CSV,
        EVALUATION_JSON,
        ROUTER_CSV,
        "roc_image.png",
        "roc_study.png",
        "confusion_image.png",
        "confusion_study.png",
        "router_confusion.png",
    }
    assert {p.name for p in out.iterdir()} == expected
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / METRICS_CSV, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == METRICS_CSV_COLUMNS
        rows = list(reader)
    assert {(r["mode"], r["level"]) for r in rows} >= {("oracle", "image"), ("oracle", "study")}
    assert {r["bone"] for r in rows} <= {"hand", "average", "overall"}
    document = json.loads((out / EVALUATION_JSON).read_text())
    assert document["provenance"]["bundle_id"] == ModelBundle.load(bundle).bundle_id
    with open(out / PREDICTIONS_CSV, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(
            list((data / "MURA-v1.1").glob("valid/*/*/*/image*.png"))
        )


def test_plots_needs_out(tmp_path):
    from typer.testing import CliRunner

    from batchfrac.cli import app

    result = CliRunner().invoke(
        app, ["evaluate", "--data", str(tmp_path), "--bundle", str(tmp_path), "--plots"]
    )
    assert result.exit_code == 1 and "--plots needs --out" in result.output
