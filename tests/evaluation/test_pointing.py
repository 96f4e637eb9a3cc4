"""Boxes and the pointing game (pure numpy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchfrac.datasets.archive import BOX_COLUMNS, Box, read_boxes
from batchfrac.evaluation.pointing import (
    PointingCase,
    PointingGame,
    pointing_rows,
)
from batchfrac.ingest.preprocess import PreprocessSpec

PLAIN = PreprocessSpec(channels=("image", "image", "image"))
SHAPES = [(914, 768), (768, 1014), (2500, 2048), (300, 200), (200, 300), (512, 512), (224, 100),
          (3000, 1001), (97, 1500), (513, 511)]  # fmt: skip


class TestBoxesAndPointing:
    def test_box(self) -> None:
        box = Box(10, 20, 30, 60)
        assert box.area == 800
        assert box.contains(10, 20) and box.contains(29, 59)
        assert not box.contains(30, 20) and not box.contains(10, 60)
        assert box.grown(15, 70, 40) == Box(0, 5, 40, 70)
        with pytest.raises(ValueError):
            Box(5, 5, 5, 9)

    def test_read_boxes(self, tmp_path: Path) -> None:
        csv = tmp_path / "labels.csv"
        header = ",".join(["path", "bone", "label", *BOX_COLUMNS])
        csv.write_text(
            f"{header}\na\\b.dcm,hand,abnormal,1,2,3,4\nc.dcm,hand,normal,,,,\n", encoding="utf-8"
        )
        assert read_boxes(csv) == {"a/b.dcm": Box(1, 2, 3, 4)}
        csv.write_text(f"{header}\na.dcm,hand,abnormal,1,2,,\n", encoding="utf-8")
        with pytest.raises(ValueError, match="labels.csv:2"):
            read_boxes(csv)
        csv.write_text("path,bone,label\na.dcm,hand,abnormal\n", encoding="utf-8")
        assert read_boxes(csv) == {}

    def test_rows_count_hits_near_hits_and_chance(self) -> None:
        box = Box(40, 40, 60, 60)  # 400 of 10 000 pixels; grown by 10: 40 x 40 = 1600
        cases = [
            PointingCase("a", "hand", box, 100, 100, (50, 50)),  # in
            PointingCase("b", "hand", box, 100, 100, (65, 50)),  # near
            PointingCase("c", "hand", box, 100, 100, (90, 90)),  # far
            PointingCase("d", "elbow", box, 100, 100, None),  # no peak: a miss
        ]
        rows = {r["bone"]: r for r in pointing_rows(cases, 0.10, bones=("elbow", "hand"))}
        assert list(rows) == ["elbow", "hand", "overall"]
        hand, overall = rows["hand"], rows["overall"]
        assert (hand["n"], hand["hits"], hand["near_hits"]) == (3, 1, 2)
        assert hand["chance"] == pytest.approx(0.04)
        assert hand["near_chance"] == pytest.approx(0.16)
        assert (overall["n"], overall["hits"], overall["near_hits"], overall["no_peak"]) == (
            4, 1, 2, 1)  # fmt: skip
        game = PointingGame(tuple(cases), 0.10)
        assert [r["near_hit"] for r in game.image_rows()] == [True, True, False, False]
