"""Tiny MURA-v1.1 trees for the model tests, written by ``batchfrac synth --layout mura``."""

from __future__ import annotations

import csv
from pathlib import Path

ROOT_NAME = "MURA-v1.1"
SYNTH_STUDIES = 40


def synth_mura(parent: Path, studies: int = SYNTH_STUDIES, seed: int = 0) -> Path:
    """``batchfrac synth PARENT --layout mura`` at the smallest image sizes; returns PARENT."""
    from typer.testing import CliRunner

    from batchfrac.cli import app

    args = ["synth", str(parent), "--studies", str(studies), "--seed", str(seed)]
    args += ["--layout", "mura", "--min-size", "48", "--max-size", "64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return parent


def ground_truth(parent: Path, split: str) -> dict[str, dict[str, str]]:
    """synth's ground_truth.csv rows of ``split``, keyed by path below the MURA root."""
    with open(parent / "ground_truth.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    return {r["path"].split("/", 1)[1]: r for r in rows}
