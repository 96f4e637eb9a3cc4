"""`batchfrac synth` on the command line, and the contact sheet."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from batchfrac.cli import app
from batchfrac.enums import Bone
from batchfrac.synth import render_contact_sheet
from tests.factories import tree_bytes

runner = CliRunner()
SMALL = ["--studies", "2", "--seed", "3", "--min-size", "40", "--max-size", "56"]


def test_synth_writes_an_archive_and_a_contact_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(
        app, ["synth", str(tmp_path / "out"), *SMALL, "--contact-sheet", str(sheet)]
    )
    assert result.exit_code == 0, result.output
    with (tmp_path / "out" / "ground_truth.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all((tmp_path / "out" / r["path"]).is_file() for r in rows)
    assert (tmp_path / "out" / "DICOMDIR").is_file()
    assert cv2.imread(str(sheet)) is not None


def test_synth_accepts_a_relative_output_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["synth", "rel/archive", *SMALL])
    assert result.exit_code == 0, result.output
    with (tmp_path / "rel" / "archive" / "ground_truth.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert any(r["path"].startswith("PT") for r in rows)
    assert all((tmp_path / "rel" / "archive" / r["path"]).is_file() for r in rows)


def test_synth_mura_layout_and_no_junk(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["synth", str(tmp_path / "m"), "--layout", "mura", "--no-junk", "--studies", "2"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "MURA-v1.1" / "train_image_paths.csv").is_file()
    assert not list((tmp_path / "m").rglob("._*"))


def test_synth_jobs_option_gives_the_same_tree(tmp_path: Path) -> None:
    trees = {}
    for jobs in ("1", "2"):
        out = tmp_path / jobs
        args = ["synth", str(out), "--layout", "mura", "--studies", "3", "--jobs", jobs]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        trees[jobs] = tree_bytes(out)
    assert trees["1"] == trees["2"] and len(trees["1"]) > 4
    bad = runner.invoke(app, ["synth", str(tmp_path / "bad"), "--jobs", "0"])
    assert bad.exit_code == 2


def test_synth_syntax_list(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["synth", str(tmp_path / "o"), *SMALL, "--syntaxes", "rle,jpeg-ls", "--no-junk"]
    )
    assert result.exit_code == 0, result.output
    with (tmp_path / "o" / "ground_truth.csv").open() as fh:
        syntaxes = {r["transfer_syntax"] for r in csv.DictReader(fh)}
    assert syntaxes <= {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80"}


def test_synth_rejects_bad_arguments(tmp_path: Path) -> None:
    bad_syntax = runner.invoke(app, ["synth", str(tmp_path / "a"), "--syntaxes", "jpeg-xl"])
    assert bad_syntax.exit_code == 1
    assert "jpeg-xl" in bad_syntax.output
    sizes = runner.invoke(
        app, ["synth", str(tmp_path / "b"), "--min-size", "90", "--max-size", "60"]
    )
    assert sizes.exit_code == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    full = runner.invoke(app, ["synth", str(tmp_path / "full"), *SMALL])
    assert full.exit_code == 1


def test_contact_sheet_has_one_row_per_bone() -> None:
    sheet = render_contact_sheet(seed=0, tile=48)
    assert sheet.dtype.name == "uint8"
    assert sheet.shape == (len(Bone) * 52, 3 * 52)
