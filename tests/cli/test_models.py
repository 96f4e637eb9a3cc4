"""``batchfrac models info``: the heads table, provenance and the DEMO banner."""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from typer.testing import CliRunner

from batchfrac.bundle.format import ModelBundle
from batchfrac.bundle.network import build_backbone, build_head, split_backbone
from batchfrac.bundle.write import create_bundle, write_head
from batchfrac.cli import app
from batchfrac.enums import Head
from batchfrac.ingest.preprocess import PreprocessSpec
from tests.b0_helpers import TEST_IMAGE_SIZE

HAND_METRICS = {"accuracy": 0.8125, "precision": 0.7, "sensitivity": 0.65, "f1": 0.674, "tp": 13}


def _make_bundle(path, *, demo):
    trunk, head_body = split_backbone(build_backbone(None, TEST_IMAGE_SIZE))
    create_bundle(
        path,
        trunk,
        spec=PreprocessSpec(image_size=TEST_IMAGE_SIZE),
        weights_origin={"kind": "none"},
        demo=demo,
        trunk_obtained="router_end_to_end",
    )
    trunk_sha = ModelBundle.load(path).trunk_sha256
    router = build_head(head_body, 7, "router")
    write_head(path, Head.ROUTER, router, {"trunk_sha256": trunk_sha, "epochs": 4})
    hand = build_head(head_body, 2, "hand")
    meta = {
        "trunk_sha256": trunk_sha,
        "images_per_class": {"normal": 120, "abnormal": 80},
        "epochs": 6,
        "training_seconds": 125.0,
        "validation_metrics": HAND_METRICS,
        "threshold": 0.42,
        "data": {"source": "synthetic", "sha256": "ab" * 32},
    }
    write_head(path, Head.HAND, hand, meta)
    return path


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    return _make_bundle(tmp_path_factory.mktemp("cli") / "demo", demo=True)


def test_info_table_shows_heads_metrics_and_demo_banner(demo_bundle):
    result = CliRunner().invoke(app, ["models", "info", str(demo_bundle)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.output
    bundle = ModelBundle.load(demo_bundle)
    assert "DEMO BUNDLE - NOT FOR CLINICAL USE" in out
    assert "not for clinical use" in out  # the bundle's own notice text
    assert bundle.bundle_id in out and bundle.trunk_sha256[:12] in out
    assert "router_end_to_end" in out
    hand_rows = [line for line in out.splitlines() if line.startswith("│ hand ")]
    assert len(hand_rows) == 2  # heads table, metrics table
    for text in ("normal/abnormal", "120/80", "2m05s", "0.42"):
        assert text in hand_rows[0], text
    for text in ("0.812", "0.700", "0.650", "0.674"):
        assert text in hand_rows[1], text
    router_rows = [line for line in out.splitlines() if line.startswith("│ router ")]
    assert len(router_rows) == 2 and "7 bones" in router_rows[0]
    assert "207.2 MB" in out  # the paper's 8 x 25.9 MB beside our total


def test_info_json(demo_bundle):
    result = CliRunner().invoke(app, ["models", "info", str(demo_bundle), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["demo"] is True
    assert [h["name"] for h in summary["heads"]] == ["router", "hand"]
    hand = summary["heads"][1]
    assert hand["metrics"] == {k: v for k, v in HAND_METRICS.items() if k != "tp"}
    assert hand["threshold"] == 0.42 and hand["epochs"] == 6
    on_disk = sum(p.stat().st_size for p in demo_bundle.rglob("*.npz")) / 1e6
    assert summary["total_size_mb"] == pytest.approx(on_disk, abs=0.01)
    assert summary["total_size_mb"] < summary["paper_total_mb"]


def test_info_without_demo_has_no_banner(tmp_path):
    path = _make_bundle(tmp_path / "real", demo=False)
    result = CliRunner().invoke(app, ["models", "info", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "DEMO" not in result.output
    assert "not a medical device" in result.output


def test_info_on_a_broken_bundle_exits_1_like_scan(tmp_path):
    (tmp_path / "bundle.json").write_text("{}")
    result = CliRunner().invoke(app, ["models", "info", str(tmp_path)])
    assert result.exit_code == 1
    assert "does not match bundle.schema.json" in result.output


def test_info_does_not_import_keras(demo_bundle):
    code = (
        "import sys; from typer.testing import CliRunner; from batchfrac.cli import app; "
        f"r = CliRunner().invoke(app, ['models', 'info', {str(demo_bundle)!r}, '--json']); "
        "assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_export_onnx_adds_the_same_graphs_a_bundle_write_makes(demo_bundle, tmp_path):
    import shutil

    from batchfrac.bundle.format import BUNDLE_FILE

    path = shutil.copytree(demo_bundle, tmp_path / "bundle")
    written = json.loads((path / BUNDLE_FILE).read_text())
    stripped = {k: v for k, v in written.items() if k != "onnx"}
    (path / BUNDLE_FILE).write_text(json.dumps(stripped))
    shutil.rmtree(path / "onnx")
    result = CliRunner().invoke(app, ["models", "export-onnx", str(path)])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == ["trunk", "router", "hand"]
    exported = json.loads((path / BUNDLE_FILE).read_text())
    assert exported["bundle_id"] == written["bundle_id"]
    # from the weight files, the same bytes as exported from the networks at write time
    for name in ("trunk", "router", "hand"):
        ours = exported["onnx"]["trunk"] if name == "trunk" else exported["onnx"]["heads"][name]
        theirs = written["onnx"]["trunk"] if name == "trunk" else written["onnx"]["heads"][name]
        assert ours["sha256"] == theirs["sha256"] and (path / ours["file"]).is_file()
    again = CliRunner().invoke(app, ["models", "export-onnx", str(path)])
    assert again.exit_code == 0 and again.output == result.output  # graphs kept


def test_export_onnx_on_a_broken_bundle_exits_1(tmp_path):
    (tmp_path / "bundle.json").write_text("{}")
    result = CliRunner().invoke(app, ["models", "export-onnx", str(tmp_path)])
    assert result.exit_code == 1
    assert "does not match bundle.schema.json" in result.output
