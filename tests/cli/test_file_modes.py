"""Report files and scan.log are created 0640, the directories a scan creates 0750 (a
stricter umask makes them stricter still): a scan through the CLI with a fake bundle and
the real ingest, then an export."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import batchfrac.scan.run
from batchfrac.cli import app
from tests.scan_fakes import FakeBundle, make_dicom_archive

runner = CliRunner()


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(batchfrac.scan.run, "load_bundle", lambda path: FakeBundle())
    make_dicom_archive(tmp_path / "archive")
    return tmp_path / "archive"


def scan_and_export(archive: Path, out: Path, umask: int) -> dict[str, int]:
    old = os.umask(umask)
    try:
        args = ["scan", str(archive), "--out", str(out), "--workers", "0", "--bundle", str(out)]
        assert runner.invoke(app, [*args, "--csv"]).exit_code == 3
        assert runner.invoke(app, ["export", str(out), "--csv", "--html"]).exit_code == 0
    finally:
        os.umask(old)
    return {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}


def test_files_0640_and_directories_0750(archive: Path, tmp_path: Path) -> None:
    modes = scan_and_export(archive, tmp_path / "night" / "out", 0o022)
    assert {name for name, mode in modes.items() if mode not in (0o640, 0o750)} == set()
    assert modes["."] == modes["parts"] == 0o750
    for name in ("scan.log", "index.html", "run.json", "images.parquet", "studies.csv"):
        assert modes[name] == 0o640, name
    assert [n for n in modes if n.startswith("parts/")]
    assert all(modes[n] == 0o640 for n in modes if n.startswith("parts/"))
    assert stat.S_IMODE((tmp_path / "night").stat().st_mode) == 0o755  # a parent: mkdir -p


def test_a_stricter_umask_is_kept(archive: Path, tmp_path: Path) -> None:
    modes = scan_and_export(archive, tmp_path / "out", 0o077)
    assert modes["."] == 0o700 and modes["run.json"] == modes["scan.log"] == 0o600
