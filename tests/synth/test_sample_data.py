"""sample_data/ is what its README says: re-running the README's command reproduces it."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom import dcmread
from typer.testing import CliRunner

from batchfrac.cli import app
from batchfrac.enums import Bone

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
ARCHIVE = SAMPLE / "archive"
# OpenCV releases rasterise the edges of the generator's polygons and lines a pixel
# differently (5.0 -> 5.1: 0.02-0.12 % of a sample image's pixels, 1.4 % of the contact
# sheet, where the thumbnails are shrunk): the same command gives the same images up to
# those edges. A changed generator (seed, layout, sizes, noise) moves far more.
EDGE_PIXELS = 0.005
SHEET_EDGE_PIXELS = 0.03


def _readme_command() -> list[str]:
    lines = (SAMPLE / "README.md").read_text(encoding="utf-8").splitlines()
    (line,) = [x for x in lines if x.startswith("batchfrac synth sample_data/archive")]
    return shlex.split(line)[1:]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_sample_archive_covers_every_bone_and_label() -> None:
    rows = _rows(ARCHIVE / "ground_truth.csv")
    assert {r["bone"] for r in rows} == {b.value for b in Bone}
    assert {r["label"] for r in rows} == {"normal", "abnormal"}
    assert {r["abnormality"] for r in rows} >= {"fracture", "hardware"}
    assert len({r["transfer_syntax"] for r in rows}) == 5
    assert {r["photometric"] for r in rows} == {"MONOCHROME1", "MONOCHROME2"}
    assert 14 <= len(rows) <= 20


def test_readme_command_reproduces_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _readme_command()
    out = tmp_path / "sample_data" / "archive"
    monkeypatch.chdir(tmp_path)  # the command names relative paths under sample_data/
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("ground_truth.csv", "junk.csv"):
        assert (out / name).read_text() == (ARCHIVE / name).read_text(), f"{name} drifted"
    for row in _rows(ARCHIVE / "ground_truth.csv"):
        # compare decoded pixels, robust to codec library versions
        ours = dcmread(ARCHIVE / row["path"])
        fresh = dcmread(out / row["path"])
        assert ours.SOPInstanceUID == fresh.SOPInstanceUID
        assert ours.file_meta.TransferSyntaxUID == fresh.file_meta.TransferSyntaxUID
        ours_pixels, fresh_pixels = ours.pixel_array, fresh.pixel_array
        assert (ours_pixels.shape, ours_pixels.dtype) == (fresh_pixels.shape, fresh_pixels.dtype)
        moved = np.mean(ours_pixels != fresh_pixels)
        assert moved <= EDGE_PIXELS, f"{row['path']}: {moved:.2%} of the pixels differ"
    fresh_sheet = cv2.imread(str(tmp_path / "sample_data" / "contact_sheet.png"))
    sheet = cv2.imread(str(SAMPLE / "contact_sheet.png"))
    assert fresh_sheet.shape == sheet.shape
    moved = np.mean(np.any(fresh_sheet != sheet, axis=2))
    assert moved <= SHEET_EDGE_PIXELS, f"contact sheet: {moved:.2%} of the pixels differ"
