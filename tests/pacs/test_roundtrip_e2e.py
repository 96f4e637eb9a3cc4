"""End to end against a real Orthanc: the sample archive goes into the PACS, comes back by
`pull`, scans exactly as the folder does, and its results are sent back and found under
the original studies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from batchfrac.cli import app
from tests.pacs.test_orthanc import SAMPLE, qido
from tests.pacs.tools import Orthanc, dciodvfy_errors, dsrdump

pytestmark = pytest.mark.slow  # two real scans of the sample archive (TensorFlow start-up each)

runner = CliRunner()
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
IGNORED = {"path", "decode_ms", "file_size", "file_mtime_ns", "transfer_syntax_uid"}
#: Picture files are named from the file's path (which differs); whether there is one is not.
PICTURES = ("thumbnail", "heatmap")


def scan(archive: Path, out: Path) -> int:
    command = [sys.executable, "-m", "batchfrac", "scan", str(archive), "--out", str(out),
               "--workers", "0", "--quiet"]  # fmt: skip
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 3), result.stderr
    return result.returncode


def ok_rows(out: Path) -> dict[tuple[str, int], dict[str, object]]:
    rows = {}
    for row in pq.read_table(out / "images.parquet").to_pylist():
        if row["status"] == "ok":
            for key in ("abnormal_probability", "bone_confidence"):
                row[key] = round(row[key], 5)
            for key in PICTURES:
                row[key] = row[key] is not None
            rows[(row["sop_instance_uid"], row["frame"])] = {
                k: v for k, v in row.items() if k not in IGNORED
            }
    return rows


def studies(out: Path) -> list[dict[str, object]]:
    rows = pq.read_table(out / "studies.parquet").to_pylist()
    for row in rows:
        row["abnormal_probability"] = round(row["abnormal_probability"], 5)
    return rows


def test_pull_scan_send_round_trip(orthanc: Orthanc, tmp_path: Path) -> None:
    for path in sorted(p for p in SAMPLE.rglob("*") if p.is_file()):
        orthanc.upload(path)  # Orthanc refuses the junk files, as a PACS would
    pulled = tmp_path / "pulled"
    result = runner.invoke(app, ["pull", orthanc.dicomweb, "--out", str(pulled)])
    assert result.exit_code == 0, result.stderr

    assert scan(SAMPLE, tmp_path / "archive-scan") == 3  # the archive's truncated file
    assert scan(pulled, tmp_path / "pulled-scan") == 0  # only instances the PACS accepted
    archive_rows, pulled_rows = (
        ok_rows(tmp_path / "archive-scan"),
        ok_rows(tmp_path / "pulled-scan"),
    )
    assert len(pulled_rows) >= 10
    assert pulled_rows == archive_rows
    pulled_all = pq.read_table(tmp_path / "pulled-scan" / "images.parquet").to_pylist()
    assert {row["status"] for row in pulled_all} == {"ok"}
    assert studies(tmp_path / "pulled-scan") == studies(tmp_path / "archive-scan")

    out = tmp_path / "pulled-scan"
    result = runner.invoke(app, ["send", str(out), "--dicomweb", orthanc.dicomweb])
    assert result.exit_code == 0, result.stderr
    for study in studies(out):
        uid = str(study["study_instance_uid"])
        assert len(qido(orthanc, uid, "SR")) == 1
        assert len(qido(orthanc, uid, "KO")) == (1 if study["prediction"] == "abnormal" else 0)
    result = runner.invoke(app, ["send", str(out), "--dicomweb", orthanc.dicomweb])
    assert result.exit_code == 0 and " 0 stored, " in result.stdout

    for path in sorted((out / "dicom").iterdir())[:3]:  # results of a real scan validate too
        assert dciodvfy_errors(path) == []
        assert dsrdump(path).returncode == 0
