"""The Grad-CAM pointing game of ``batchfrac evaluate`` on the demo bundle: the report on
``sample_data`` (checked against the ground truth independently), and how well the demo
heads point on a fresh synthetic archive of abnormal studies."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchfrac.bundle.format import ModelBundle
from batchfrac.cli import app
from batchfrac.datasets.archive import BOX_COLUMNS, Box, read_labeled_archive
from batchfrac.datasets.loader import ImageLoader, ingest_fetcher
from batchfrac.evaluation.pointing import NEAR_MARGIN, OVERALL, POINTING_COLUMNS, pointing_cases
from batchfrac.evaluation.report import EVALUATION_JSON, POINTING_CSV
from batchfrac.synth import SynthConfig, generate_archive

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "batchfrac" / "demo_bundle"
SAMPLE = ROOT / "sample_data" / "archive"


def _truth(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_reports_the_pointing_game_on_sample_data(tmp_path: Path) -> None:
    """Six abnormal images are too few to judge the heads (see the next test); here the
    report is checked: which images, their boxes, chance levels and verdicts."""
    labels = SAMPLE / "ground_truth.csv"
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(SAMPLE), "--labels", str(labels), "--bundle", str(DEMO)]
    result = CliRunner().invoke(app, [*args, "--out", str(out)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Grad-CAM pointing game" in result.output

    truth = [r for r in _truth(labels) if r["label"] == "abnormal" and r[BOX_COLUMNS[0]]]
    assert len(truth) == 6
    document = json.loads((out / EVALUATION_JSON).read_text())
    game = document["pointing"]
    assert game["near_margin"] == NEAR_MARGIN
    images = {i["path"]: i for i in game["images"]}
    assert set(images) == {r["path"] for r in truth}
    for row in truth:
        image = images[row["path"]]
        box = Box(*(int(row[c]) for c in BOX_COLUMNS))
        rows, columns = int(row["rows"]), int(row["columns"])
        assert image["box"] == [box.x0, box.y0, box.x1, box.y1]
        assert (image["rows"], image["columns"]) == (rows, columns)
        x, y = image["peak"]
        assert 0 <= x < columns and 0 <= y < rows
        assert image["hit"] == box.contains(x, y)
        margin = round(NEAR_MARGIN * max(rows, columns))
        assert image["near_hit"] == box.grown(margin, rows, columns).contains(x, y)

    with (out / POINTING_CSV).open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == POINTING_COLUMNS
        table = {r["bone"]: r for r in reader}
    assert list(table) == ["elbow", "hand", "shoulder", OVERALL]
    for bone, row in table.items():
        mine = [r for r in truth if bone in (r["bone"], OVERALL)]
        assert int(row["n"]) == len(mine)
        assert int(row["hits"]) == sum(images[r["path"]]["hit"] for r in mine)
        chance = sum(
            Box(*(int(r[c]) for c in BOX_COLUMNS)).area / (int(r["rows"]) * int(r["columns"]))
            for r in mine
        ) / len(mine)
        assert float(row["chance"]) == pytest.approx(chance)


def test_demo_heads_point_at_most_abnormalities_far_above_chance(tmp_path: Path) -> None:
    """A fresh archive of 21 abnormal studies (3 per bone, held out from the demo bundle's
    training): measured overall 14/48 peaks in the box (chance 0.030) and 29/48 within 10 %
    of the long side of it (chance 0.129). The thresholds leave room for numeric noise
    across backends and machines, not for a real loss of localisation."""
    data = tmp_path / "abnormal"
    config = SynthConfig(
        studies=21, seed=1, abnormal_fraction=1.0, min_size=640, max_size=800, junk=False
    )
    generate_archive(data, config)
    labels = data / "ground_truth.csv"
    bundle = ModelBundle.load(DEMO)
    fetch = ingest_fetcher(bundle.spec)
    loader = ImageLoader(bundle.spec, fetch, cache_bytes=1 << 30)
    dataset = read_labeled_archive(data, labels, fetch, keep=loader.remember)
    cases = pointing_cases(bundle, dataset, loader, labels)

    boxed = [r for r in _truth(labels) if r[BOX_COLUMNS[0]]]
    assert len(cases) == len(boxed) >= 40
    n = len(cases)
    hits = sum(c.hit() for c in cases)
    near = sum(c.hit(NEAR_MARGIN) for c in cases)
    chance = sum(c.chance() for c in cases) / n
    near_chance = sum(c.chance(NEAR_MARGIN) for c in cases) / n
    assert near / n > 0.5, (near, n)  # most
    assert near / n >= 3 * near_chance, (near / n, near_chance)
    assert hits / n >= 5 * chance, (hits / n, chance)
