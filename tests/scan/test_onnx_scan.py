"""The sample archive scanned on ONNX Runtime (no TensorFlow in the process) and on Keras:
the same rows, bones and calls, probabilities within 1e-4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchfrac.bundle.onnx_export import TOLERANCE
from batchfrac.enums import Backend
from batchfrac.scan.config import ScanConfig
from batchfrac.scan.run import run_scan

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
# The console script in a subprocess; at its exit, the frameworks the process imported.
SCAN_AND_LIST_MODULES = """
import atexit, json, sys
frameworks = ("tensorflow", "keras", "jax", "torch")
atexit.register(lambda: print(json.dumps([m for m in frameworks if m in sys.modules])))
from batchfrac.cli import main
sys.argv = ["batchfrac", "scan", *sys.argv[1:]]
main()
"""


def _rows(out: Path, name: str) -> dict[tuple[object, ...], dict[str, object]]:
    rows = pq.read_table(out / f"{name}.parquet").to_pylist()
    columns = ("path", "frame") if name == "images" else ("study_instance_uid",)
    keyed = {tuple(r[c] for c in columns): r for r in rows}
    assert len(keyed) == len(rows)
    return keyed


def test_onnx_scan_imports_no_tensorflow_and_equals_keras(
    tmp_path: Path, sample_archive: Path, demo_bundle_path: Path, demo_on_keras
) -> None:
    onnx_out = tmp_path / "onnx"
    arguments = [str(sample_archive), "--out", str(onnx_out), "--workers", "0", "--quiet",
                 "--backend", "onnx", "--bundle", str(demo_bundle_path)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SCAN_AND_LIST_MODULES, *arguments],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # 3: the sample's truncated file is an error row
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    run = json.loads((onnx_out / "run.json").read_text())
    assert (run["inference"]["requested"], run["inference"]["backend"]) == ("onnx", "onnx")
    assert run["throughput"]["trunk_passes_per_image"] == 1.0

    keras_out = tmp_path / "keras"
    config = ScanConfig(sample_archive, keras_out, demo_bundle_path, workers=0,
                        backend=Backend.KERAS)  # fmt: skip
    summary = run_scan(config, bundle=demo_on_keras)
    assert summary.run["inference"]["backend"] == "keras"
    assert summary.run["counts"] == run["counts"]
    # Heatmaps: Grad-CAM in numpy on ONNX Runtime, by autodiff on Keras, of the same images
    assert (run["heatmaps"]["method"], summary.run["heatmaps"]["method"]) == (
        "onnx-numpy", "keras-autodiff",
    )  # fmt: skip
    assert run["heatmaps"]["written"] == summary.run["heatmaps"]["written"] > 0
    for name, keys in (("images", ("status", "reason", "bone")), ("studies", ("bone",))):
        ours, theirs = _rows(onnx_out, name), _rows(keras_out, name)
        assert ours.keys() == theirs.keys()
        for key, row in ours.items():
            other = theirs[key]
            assert [row[k] for k in keys] == [other[k] for k in keys], key
            if name == "images":
                assert [row[k] for k in ("thumbnail", "heatmap")] == [
                    other[k] for k in ("thumbnail", "heatmap")
                ], key
            if name == "studies":
                assert row["prediction"] == other["prediction"], key
            for column in ("abnormal_probability", "bone_confidence"):
                if row.get(column) is not None:
                    assert row[column] == pytest.approx(other[column], abs=TOLERANCE), key
