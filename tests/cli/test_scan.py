"""`batchfrac scan` / `batchfrac export` through the Typer app (fake bundle, real ingest)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import batchfrac.scan.run
from batchfrac.cli import app
from batchfrac.report.csv_export import restore_text_cell
from tests.scan_fakes import HOSTILE_NAME, FakeBundle, make_dicom_archive

runner = CliRunner()


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace bundle loading by a FakeBundle; record the paths asked for."""
    asked: list[Path] = []

    def load(path: Path) -> FakeBundle:
        asked.append(path)
        return FakeBundle()

    monkeypatch.setattr(batchfrac.scan.run, "load_bundle", load)
    return asked


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    make_dicom_archive(tmp_path / "archive")
    return tmp_path / "archive"


def scan(*args: str | Path):
    return runner.invoke(app, ["scan", *map(str, args)])


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_scan_with_an_error_row_exits_3_and_leaves_the_archive_alone(
    tmp_path: Path, archive: Path, loaded: list[Path]
) -> None:
    before = snapshot(archive)
    out = tmp_path / "out"
    result = scan(archive, "--out", out, "--bundle", tmp_path, "--workers", "0", "--csv")
    assert result.exit_code == 3, result.output
    assert loaded == [tmp_path]
    assert snapshot(archive) == before
    assert {p.name for p in out.iterdir()} >= {
        "images.parquet", "studies.parquet", "images.csv", "studies.csv", "run.json",
        "index.html", "scan.log", "parts",
    }  # fmt: skip
    run = json.loads((out / "run.json").read_text())
    assert run["bundle"]["demo"] is True and run["bundle"]["notice"] == "FAKE demo bundle"
    assert run["exit_code"] == 3 and run["arguments"]["workers"] == 0
    assert "FAKE demo bundle" in result.stderr
    with open(out / "images.csv", encoding="utf-8-sig", newline="") as handle:
        paths = [restore_text_cell(r["path"]) for r in csv.DictReader(handle)]
    assert str(archive / "s1" / HOSTILE_NAME) in paths
    assert "7 files" in result.stdout


def test_clean_quiet_scan_exits_0_silently(
    tmp_path: Path, archive: Path, loaded: list[Path]
) -> None:
    (archive / "s2" / "truncated.dcm").unlink()
    result = scan(
        archive, "--out", tmp_path / "out", "--bundle", tmp_path, "--workers", "0", "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_default_bundle_is_the_demo_with_a_warning(
    tmp_path: Path, archive: Path, loaded: list[Path]
) -> None:
    result = scan(archive, "--out", tmp_path / "out", "--workers", "0", "--routing", "soft")
    assert result.exit_code == 3
    assert loaded[0].name == "demo_bundle"
    assert "DEMO bundle" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--bundle", "{tmp}/no-such-bundle"],  # unreadable bundle (the real loader)
        ["--workers", "-1"],
        ["--batch-size", "0"],
        ["--modalities", ","],
        ["--timeout", "-1"],
        ["--out", "{archive}/inside"],  # output inside the read-only archive
    ],
)
def test_fatal_errors_exit_1(tmp_path: Path, archive: Path, args: list[str]) -> None:
    args = [a.format(tmp=tmp_path, archive=archive) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    result = scan(archive, *out, "--workers", "0", *args)
    assert result.exit_code == 1, result.output
    assert "error:" in result.stderr
    assert not (archive / "inside").exists()


def test_missing_archive_exits_1(tmp_path: Path) -> None:
    result = scan(tmp_path / "nothing", "--out", tmp_path / "out", "--bundle", tmp_path)
    assert result.exit_code == 1
    assert "archive not found" in result.stderr


def test_interrupt_exits_130(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(batchfrac.scan.run, "run_scan", interrupted)
    result = scan(archive, "--out", tmp_path / "out", "--bundle", tmp_path)
    assert result.exit_code == 130
    assert "run the same command to resume" in result.stderr


def test_export_rewrites_csv_and_html(tmp_path: Path, archive: Path, loaded: list[Path]) -> None:
    out = tmp_path / "out"
    assert scan(archive, "--out", out, "--bundle", tmp_path, "--workers", "0").exit_code == 3
    assert not (out / "images.csv").exists()
    (out / "index.html").unlink()
    result = runner.invoke(app, ["export", str(out), "--csv", "--html"])
    assert result.exit_code == 0, result.output
    assert (out / "images.csv").exists() and (out / "studies.csv").exists()
    assert "batchfrac scan" in (out / "index.html").read_text()
    nothing = runner.invoke(app, ["export", str(out)])
    assert nothing.exit_code == 2 and "nothing to export" in nothing.output  # usage error
    assert runner.invoke(app, ["export", str(archive), "--csv"]).exit_code == 1  # no reports
