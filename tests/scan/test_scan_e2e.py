"""End to end: the real `batchfrac scan` (real bundle, Dask worker) killed with SIGKILL
mid-scan, run again, and compared with an uninterrupted scan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchfrac.atomic import TEMP_SUFFIX
from batchfrac.scan.resume import PARTS_DIR
from tests.scan_fakes import make_dicom_archive

pytestmark = pytest.mark.slow  # three real scans (TensorFlow start-up each): about a minute

COPIES = 4  # the sample archive x4: 28 files, 14 chunks of 2


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e") / "archive"
    for copy in range(COPIES):
        make_dicom_archive(root / f"copy{copy}")
    return root


def command(archive: Path, out: Path, bundle: Path) -> list[str]:
    return [
        sys.executable, "-m", "batchfrac", "scan", str(archive), "--out", str(out),
        "--bundle", str(bundle), "--workers", "1", "--chunk-size", "2", "--batch-size", "2",
        "--quiet",
    ]  # fmt: skip


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run(archive: Path, out: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(archive, out, bundle), env=ENV, capture_output=True, text=True, timeout=300
    )


def comparable(out: Path, name: str) -> list[dict[str, object]]:
    rows = pq.read_table(out / f"{name}.parquet").to_pylist()
    for row in rows:
        row.pop("decode_ms", None)  # wall time, differs between runs
        for key in ("abnormal_probability", "bone_confidence"):
            if row.get(key) is not None:
                row[key] = round(row[key], 5)
    return rows


def test_sigkill_mid_scan_then_rerun_equals_uninterrupted(
    tmp_path: Path, archive: Path, tiny_bundle: Path
) -> None:
    reference = run(archive, tmp_path / "reference", tiny_bundle)
    assert reference.returncode == 3, reference.stderr  # the truncated files are error rows
    # --quiet: one summary line; TensorFlow's, Dask's and pydicom's chatter is in scan.log
    said = (reference.stdout + reference.stderr).strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"{7 * COPIES} files"), said

    out = tmp_path / "out"
    process = subprocess.Popen(
        command(archive, out, tiny_bundle), env=ENV, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not list((out / PARTS_DIR).glob("part-*.parquet")):
            assert process.poll() is None, "the scan ended before writing any part"
            assert time.monotonic() < deadline, "no part file appeared"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        with_children = process.pid  # its Dask nanny/worker share the session
        try:
            os.killpg(with_children, signal.SIGKILL)
        except ProcessLookupError:
            pass
    parts = list((out / PARTS_DIR).glob("part-*.parquet"))
    assert not (out / "images.parquet").exists(), "the kill must land mid-scan"
    assert 1 <= len(parts) < 7 * COPIES // 2

    killed = {r["path"] for p in parts for r in pq.read_table(p).to_pylist()}
    resumed = run(archive, out, tiny_bundle)
    assert resumed.returncode == 3, resumed.stderr
    ours, theirs = comparable(out, "images"), comparable(tmp_path / "reference", "images")
    # Heatmaps are drawn after the last batch: the killed run's rows have none (README,
    # "Pictures on resume"); the rest are those of the uninterrupted run.
    heat = ("heatmap", "heatmap_peak_x", "heatmap_peak_y")
    for row, other in zip(ours, theirs, strict=True):
        if row["path"] in killed:
            assert [row[k] for k in heat] == [None] * 3
            row.update({k: other[k] for k in heat})
    assert ours == theirs
    assert comparable(out, "studies") == comparable(tmp_path / "reference", "studies")
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["counts"]["files_reused"] == 2 * len(parts)
    assert run_json["counts"]["files"] == 7 * COPIES
    assert run_json["throughput"]["trunk_passes_per_image"] <= 2.0
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))


def test_ctrl_c_stops_a_real_scan_cleanly_and_the_rerun_finishes(
    tmp_path: Path, archive: Path, tiny_bundle: Path
) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen(
        command(archive, out, tiny_bundle), env=ENV, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not list((out / PARTS_DIR).glob("part-*.parquet")):
            assert process.poll() is None, "the scan ended before writing any part"
            assert time.monotonic() < deadline, "no part file appeared"
            time.sleep(0.005)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole process group
        stdout, stderr = process.communicate(timeout=120)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert process.returncode == 130, stderr
    assert "interrupted: finished work is kept" in stderr
    assert "Traceback" not in stdout + stderr
    assert list((out / PARTS_DIR).glob("part-*.parquet"))
    assert not (out / "run.json").exists()
    assert "interrupted (Ctrl-C)" in (out / "scan.log").read_text()
    resumed = run(archive, out, tiny_bundle)
    assert resumed.returncode == 3, resumed.stderr
    assert json.loads((out / "run.json").read_text())["counts"]["files"] == 7 * COPIES
