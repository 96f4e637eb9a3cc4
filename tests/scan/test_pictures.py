"""The scan's pictures: thumbnails of ok rows, Grad-CAM heatmaps of abnormal (and, on
request, uncertain) rows, capped and counted in run.json, named without DICOM values, and
on ONNX Runtime drawn without importing TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from batchfrac.enums import Bone
from batchfrac.scan.config import ScanConfig
from batchfrac.scan.pictures import picture_name
from batchfrac.scan.run import run_scan
from tests.scan_fakes import FakeBundle, make_dicom_archive, text_ingest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
PATIENT_ID = "TEST0001"  # tests/factories.py's PatientID
SCAN_AND_LIST_MODULES = """
import atexit, json, sys
frameworks = ("tensorflow", "keras", "jax", "torch")
atexit.register(lambda: print(json.dumps([m for m in frameworks if m in sys.modules])))
from batchfrac.cli import main
sys.argv = ["batchfrac", "scan", *sys.argv[1:]]
main()
"""


def _png_side(path: Path) -> int:
    data = np.frombuffer(path.read_bytes(), np.uint8)
    assert data[:8].tobytes() == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    assert image is not None and image.size > 0
    return max(image.shape[:2])


@pytest.fixture(scope="module")
def onnx_scan(
    tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path
) -> tuple[Path, Path, str]:
    """The tiny real bundle scanning a tiny DICOM archive on ONNX Runtime with a
    pseudonymisation key and two uncertain heatmaps, in a subprocess: (archive, out,
    frameworks imported)."""
    root = tmp_path_factory.mktemp("pictures")
    archive = root / "archive"
    make_dicom_archive(archive)
    key = root / "key"
    key.write_text("k" * 40)
    out = root / "out"
    arguments = [str(archive), "--out", str(out), "--workers", "0", "--quiet", "--backend",
                 "onnx", "--bundle", str(tiny_bundle), "--heatmaps-uncertain", "2",
                 "--pseudonymize-key-file", str(key)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SCAN_AND_LIST_MODULES, *arguments],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # the truncated file is an error row
    return archive, out, done.stdout.strip().splitlines()[-1]


def test_an_onnx_scan_draws_heatmaps_without_importing_tensorflow(onnx_scan) -> None:
    _archive, out, frameworks = onnx_scan
    assert json.loads(frameworks) == []
    heatmaps = json.loads((out / "run.json").read_text())["heatmaps"]
    assert heatmaps["method"] == "onnx-numpy"
    assert heatmaps["written"] >= 2 and heatmaps["left_out"] == 0


def test_thumbnails_for_ok_rows_heatmaps_for_abnormal_and_the_closest_normal(onnx_scan) -> None:
    _archive, out, _ = onnx_scan
    meta = json.loads((out / "run.json").read_text())
    thresholds = json.loads((Path(meta["bundle"]["path"]) / "bundle.json").read_text())["heads"]
    rows = pq.read_table(out / "images.parquet").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(r["thumbnail"] for r in ok)
    assert all(r["thumbnail"] is None and r["heatmap"] is None for r in rows if r not in ok)
    margin = {id(r): r["abnormal_probability"] - thresholds[r["bone"]].get("threshold", 0.5)
              for r in ok}  # fmt: skip
    normal = sorted((r for r in ok if margin[id(r)] <= 0), key=lambda r: -margin[id(r)])
    expected = {id(r) for r in ok if margin[id(r)] > 0} | {id(r) for r in normal[:2]}
    assert {id(r) for r in ok if r["heatmap"]} == expected
    assert meta["heatmaps"]["written"] == len(expected)
    for row in rows:
        assert (row["heatmap_peak_x"] is None) == (row["heatmap"] is None)
        if row["thumbnail"]:
            assert _png_side(out / row["thumbnail"]) <= 256
            assert row["thumbnail"] == f"thumbnails/{picture_name(row['path'], row['frame'])}.png"
        if row["heatmap"]:
            assert _png_side(out / row["heatmap"]) <= 512
            assert 0 <= row["heatmap_peak_x"] < 48 and 0 <= row["heatmap_peak_y"] < 64
    pictures = sorted(p.name for d in ("thumbnails", "heatmaps") for p in (out / d).iterdir())
    assert len(pictures) == len(ok) + len(expected)  # nothing else in the folders
    assert {(out / r["thumbnail"]).stat().st_mode & 0o007 for r in ok} == {0}


def test_picture_names_hold_no_patient_id_or_path_fragment(onnx_scan) -> None:
    archive, out, _ = onnx_scan
    names = [p.name for d in ("thumbnails", "heatmaps") for p in (out / d).iterdir()]
    fragments = {PATIENT_ID, "hand", "elbow", "s1", "s2", "dcm"}
    fragments |= {p.stem for p in archive.rglob("*") if p.is_file()}
    assert names and all(f.lower() not in n.lower() for n in names for f in fragments)
    clear = {picture_name(str(p), 0) for p in archive.rglob("*.dcm")}
    assert not clear & {n.removesuffix(".png") for n in names}  # keyed: not the plain hash


def _fake_archive(root: Path, means: list[float]) -> Path:
    root.mkdir(parents=True)
    for i, mean in enumerate(means):
        (root / f"img{i}.txt").write_text(str(mean))
    return root


def test_heatmaps_max_caps_them_most_probable_first_and_run_json_counts_the_rest(
    tmp_path: Path,
) -> None:
    # FakeBundle: mean 0.95 routes to wrist (P 0.7475), 0.85 to shoulder (0.6425), 0.1 to
    # elbow (0.105); thresholds 0.5 make the first two kinds abnormal.
    archive = _fake_archive(tmp_path / "a", [0.95, 0.95, 0.85, 0.1])
    config = ScanConfig(archive, tmp_path / "out", Path("unused"), workers=0, heatmaps_max=2)
    summary = run_scan(config, bundle=FakeBundle(), ingest=text_ingest)
    assert summary.run["heatmaps"] == {"written": 2, "left_out": 1, "flagged": 3,
                                       "seconds": summary.run["heatmaps"]["seconds"],
                                       "method": "fake"}  # fmt: skip
    rows = pq.read_table(tmp_path / "out" / "images.parquet").to_pylist()
    drawn = sorted(r["bone"] for r in rows if r["heatmap"])
    assert drawn == [Bone.WRIST.value, Bone.WRIST.value]
    assert all(r["thumbnail"] for r in rows)
    assert len(list((tmp_path / "out" / "heatmaps").iterdir())) == 2

    off = ScanConfig(archive, tmp_path / "off", Path("unused"), workers=0, heatmaps_max=0)
    summary = run_scan(off, bundle=FakeBundle(), ingest=text_ingest)
    assert summary.run["heatmaps"]["written"] == 0
    assert summary.run["heatmaps"]["left_out"] == 3
    rows = pq.read_table(tmp_path / "off" / "images.parquet").to_pylist()
    assert all(r["heatmap"] is None and r["thumbnail"] for r in rows)


def test_a_rerun_keeps_the_pictures_of_reused_rows_and_deletes_unnamed_ones(
    tmp_path: Path,
) -> None:
    archive = _fake_archive(tmp_path / "a", [0.95, 0.1])
    out = tmp_path / "out"
    config = ScanConfig(archive, out, Path("unused"), workers=0)
    run_scan(config, bundle=FakeBundle(), ingest=text_ingest)
    first = pq.read_table(out / "images.parquet").to_pylist()
    assert [bool(r["heatmap"]) for r in first] == [True, False]
    stale = [out / d / ("0" * 24 + ".png") for d in ("thumbnails", "heatmaps")]
    for path in stale:
        path.write_bytes(b"x")
    summary = run_scan(config, bundle=FakeBundle(), ingest=text_ingest)  # every row reused
    rows = pq.read_table(out / "images.parquet").to_pylist()
    assert summary.run["counts"]["files_reused"] == 2
    assert summary.run["heatmaps"]["written"] == 0  # nothing inferred, nothing drawn
    assert rows == first
    assert all((out / r[k]).is_file() for r in rows for k in ("thumbnail", "heatmap") if r[k])
    assert not any(path.exists() for path in stale)

    tonight = ScanConfig(archive, tmp_path / "tonight", Path("unused"), workers=0,
                         previous=out)  # fmt: skip
    run_scan(tonight, bundle=FakeBundle(), ingest=text_ingest)
    rows = pq.read_table(tmp_path / "tonight" / "images.parquet").to_pylist()
    assert rows == first  # the previous night's pictures, copied
    for row in rows:
        for key in ("thumbnail", "heatmap"):
            if row[key]:
                assert (tmp_path / "tonight" / row[key]).read_bytes() == (
                    out / row[key]
                ).read_bytes()
