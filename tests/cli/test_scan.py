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
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clinical = FakeBundle()
    clinical.demo = False
    monkeypatch.setattr(batchfrac.scan.run, "load_bundle", lambda path: clinical)
    (archive / "s2" / "truncated.dcm").unlink()
    args = (archive, "--out", tmp_path / "out", "--bundle", tmp_path, "--workers", "0")
    result = scan(*args, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output == ""
    (archive / "s2" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 10)
    one_line = scan(*args, "--quiet")
    assert one_line.exit_code == 3 and len(one_line.output.splitlines()) == 1


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


@pytest.mark.parametrize(
    ("args", "started"),
    [
        ([], 1),  # one decoding process per core
        (["--workers", "2"], 1),
        (["--workers", "0"], 0),  # this process decodes
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], 0),  # the cluster decodes
        (["--workers", "2", "--batch-size", "0"], 0),  # refused before anything starts
    ],
)
def test_the_fork_server_starts_only_for_local_workers(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], started: int
) -> None:
    import batchfrac.scan.forkserver as forkserver

    calls: list[None] = []
    monkeypatch.setattr(forkserver, "start_forkserver", lambda: calls.append(None) or True)
    # --out inside the archive: refused after the fork server's start, before any scan
    result = scan(archive, "--out", archive / "inside", *args)
    assert result.exit_code == 1 and "error:" in result.stderr, result.output
    assert len(calls) == started


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


@pytest.mark.parametrize("address", ["garbage", "tcp://host", "tcp://host:0", "http://h:80"])
def test_a_bad_scheduler_address_is_one_clear_line_before_anything_starts(
    tmp_path: Path, archive: Path, loaded: list[Path], address: str
) -> None:
    result = scan(archive, "--out", tmp_path / "out", "--scheduler", address)
    assert result.exit_code == 1
    assert "is not a Dask scheduler address" in result.output
    assert "Traceback" not in result.output
    assert loaded == [] and not (tmp_path / "out").exists()


def test_an_unreachable_scheduler_is_a_clear_error(
    tmp_path: Path, archive: Path, loaded: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import batchfrac.scan.cluster as cluster_module

    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 3.0)
    with socket.socket() as sock:  # a free loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = scan(archive, "--out", tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert "cannot reach the Dask scheduler" in result.output
    assert "Traceback" not in result.output


def test_workers_0_says_it_has_no_timeout_unless_quiet(
    tmp_path: Path, archive: Path, loaded: list[Path]
) -> None:
    loud = scan(archive, "--out", tmp_path / "a", "--workers", "0", "--bundle", tmp_path)
    assert "no --timeout" in loud.output
    quiet = scan(archive, "--out", tmp_path / "b", "--workers", "0", "--quiet")
    assert quiet.exit_code == 3
    assert len(quiet.output.strip().splitlines()) == 1, quiet.output
    assert "demo bundle" in quiet.output  # the notice travels in the one line


def test_an_empty_archive_exits_1(tmp_path: Path, loaded: list[Path]) -> None:
    (tmp_path / "empty").mkdir()
    result = scan(tmp_path / "empty", "--out", tmp_path / "out", "--workers", "0")
    assert result.exit_code == 1 and "holds no files" in result.output


def test_an_unexpected_error_is_one_line_and_exit_1(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from batchfrac.cli import main

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug somewhere")

    monkeypatch.setattr(batchfrac.scan.run, "run_scan", broken)
    monkeypatch.setattr(
        "sys.argv", ["batchfrac", "scan", str(archive), "--out", str(tmp_path / "o"), "--quiet"]
    )
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected ZeroDivisionError: a bug somewhere" in err
    trace = Path(err.rsplit("traceback is in ", 1)[1].rstrip(")\n"))
    assert "ZeroDivisionError" in trace.read_text() and "Traceback" not in err
    trace.unlink()


def test_scan_dicom_writes_one_sr_per_study_and_keeps_the_scans_exit_code(
    tmp_path: Path, archive: Path, loaded: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pydicom

    monkeypatch.chdir(archive.parent)  # the archive as a relative path, as users give it
    out, dicom = tmp_path / "out", tmp_path / "dicom"
    result = scan("archive", "--out", out, "--workers", "0", "--dicom", dicom)
    assert result.exit_code == 3, result.output  # the truncated file, as without --dicom
    objects = [pydicom.dcmread(p) for p in sorted(dicom.rglob("*.dcm"))]
    studies = json.loads((out / "run.json").read_text())["counts"]["studies"]
    srs = [o for o in objects if o.Modality == "SR"]
    assert len(srs) == studies and studies > 0
    run = json.loads((out / "run.json").read_text())
    assert run["working_directory"] == str(archive.parent)
    # an export from another directory still finds the source headers (relative paths)
    monkeypatch.chdir(tmp_path)
    again = runner.invoke(app, ["export", str(out), "--dicom", str(tmp_path / "dicom2")])
    assert again.exit_code == 0, again.output
    first = {p.name: p.read_bytes() for p in dicom.rglob("*.dcm")}
    second = {p.name: p.read_bytes() for p in (tmp_path / "dicom2").rglob("*.dcm")}
    assert first == second  # the same run exports the same bytes, from anywhere
