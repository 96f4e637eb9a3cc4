"""Outputs of ``batchfrac evaluate``: rich tables on the terminal, CSV and JSON files.

Files written to ``--out`` (each atomically):

- ``metrics.csv``: one row per (mode, level, bone) with :data:`METRICS_CSV_COLUMNS`;
- ``router_confusion.csv``: rows = true bone, columns = routed bone (image level);
- ``predictions.csv``: one row per image (:data:`PREDICTIONS_CSV_COLUMNS`);
- ``pointing.csv``: the Grad-CAM pointing game per bone (:data:`POINTING_COLUMNS`), when
  the labels carry abnormality boxes;
- ``evaluation.json``: provenance, every table, the router metrics, the pointing game
  (with each image's box and peak), what was skipped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from ..atomic import write_bytes
from ..enums import Bone
from .evaluate import IMAGE, ORACLE, ROUTED, STUDY, Evaluation
from .metrics import METRIC_COLUMNS, RATE_COLUMNS
from .paper import REFERENCE_COLUMNS
from .pointing import POINTING_COLUMNS, POINTING_SCORE

METRICS_CSV = "metrics.csv"
ROUTER_CSV = "router_confusion.csv"
PREDICTIONS_CSV = "predictions.csv"
EVALUATION_JSON = "evaluation.json"
POINTING_CSV = "pointing.csv"

METRICS_CSV_COLUMNS: tuple[str, ...] = (
    "mode",
    "level",
    "bone",
    "threshold",
    "n_unscored",
    *METRIC_COLUMNS,
    *REFERENCE_COLUMNS,
)
PREDICTIONS_CSV_COLUMNS: tuple[str, ...] = (
    "path",
    "frame",
    "study",
    "patient",
    "bone",
    "label",
    "router_bone",
    "router_confidence",
    "oracle_probability",
    "routed_probability",
)

_TITLES = {
    (ORACLE, IMAGE): "Per bone, image level (each image scored by its true bone's head)",
    (ORACLE, STUDY): "Per bone, study level (MURA rule: mean image probability)",
    (ROUTED, IMAGE): "Routed end to end, image level (router picks the head)",
    (ROUTED, STUDY): "Routed end to end, study level",
}


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue().encode("utf-8")


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def prediction_rows(evaluation: Evaluation) -> list[list[Any]]:
    """One row per image, in :data:`PREDICTIONS_CSV_COLUMNS` order."""
    p = evaluation.predictions
    bones = list(Bone)
    rows = []
    for i, s in enumerate(p.dataset.samples):
        routed_bone, confidence = None, None
        if p.router is not None:
            best = int(np.argmax(p.router[i]))
            routed_bone, confidence = bones[best].value, float(p.router[i, best])
        rows.append(
            [
                s.rel,
                s.frame,
                s.study,
                s.patient,
                s.bone.value,
                s.label.value,
                routed_bone,
                confidence,
                _number(p.oracle[i]),
                _number(p.routed[i]),
            ]
        )
    return rows


def evaluation_document(evaluation: Evaluation) -> dict[str, Any]:
    """The ``evaluation.json`` document."""
    router = None
    if evaluation.router is not None:
        router = {"classes": [b.value for b in Bone], **evaluation.router.as_dict()}
    pointing = None
    if evaluation.pointing is not None:
        game = evaluation.pointing
        pointing = {
            "method": f"Grad-CAM of the abnormal class ({POINTING_SCORE.value}) on each "
            "image's true bone's head; hit = peak inside the box; near = inside the box "
            "grown by near_margin of the image's long side; chance = mean box area / image "
            "area",
            "near_margin": game.margin,
            "rows": game.rows([b.value for b in Bone]),
            "images": game.image_rows(),
        }
    return {
        "provenance": evaluation.provenance,
        "rows": list(evaluation.rows),
        "router": router,
        "pointing": pointing,
        "skipped": list(evaluation.skipped),
    }


def write_outputs(evaluation: Evaluation, out: Path) -> list[Path]:
    """Write the CSV and JSON files into ``out`` (created if needed); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = [[row.get(c) for c in METRICS_CSV_COLUMNS] for row in evaluation.rows]
    files = {
        METRICS_CSV: _csv_text(METRICS_CSV_COLUMNS, metrics),
        PREDICTIONS_CSV: _csv_text(PREDICTIONS_CSV_COLUMNS, prediction_rows(evaluation)),
        EVALUATION_JSON: (json.dumps(evaluation_document(evaluation), indent=2) + "\n").encode(),
    }
    if evaluation.pointing is not None:
        rows = evaluation.pointing.rows([b.value for b in Bone])
        files[POINTING_CSV] = _csv_text(
            POINTING_COLUMNS, [[r[c] for c in POINTING_COLUMNS] for r in rows]
        )
    if evaluation.router is not None:
        names = [b.value for b in Bone]
        matrix = [
            [name, *row] for name, row in zip(names, evaluation.router.confusion, strict=True)
        ]
        files[ROUTER_CSV] = _csv_text(["true_bone", *names], matrix)
    for name, data in files.items():
        write_bytes(out / name, data)
        written.append(out / name)
    return written


# Fits the paper's 14-column table into an 80-column terminal.
_COMPACT: dict[str, Any] = {"box": box.SIMPLE_HEAD, "pad_edge": False, "padding": (0, 0)}


_RATES = frozenset(RATE_COLUMNS) | frozenset(REFERENCE_COLUMNS)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def metrics_table(evaluation: Evaluation, mode: str, level: str) -> Table | None:
    """One rich table (``None`` when it has no rows)."""
    rows = evaluation.table(mode, level)
    if not rows:
        return None
    mura = evaluation.provenance.get("data", {}).get("kind") == "mura" and mode == ORACLE
    extra = (
        [("paper_accuracy", "paper acc"), ("paper_f1", "paper F1")] if level == IMAGE else []
    ) + ([("mura_kappa", "MURA κ")] if level == STUDY else [])
    columns = [
        ("bone", "bone"),
        ("tp", "TP"),
        ("fn", "FN"),
        ("fp", "FP"),
        ("tn", "TN"),
        ("accuracy", "acc"),
        ("precision", "prec"),
        ("sensitivity", "sens"),
        ("specificity", "spec"),
        ("f1", "F1"),
        ("kappa", "κ"),
        ("auroc", "AUROC"),
    ] + (extra if mura else [])
    table = Table(title=_TITLES[(mode, level)], title_justify="left", **_COMPACT)
    for key, title in columns:
        if key == "bone":
            table.add_column(title, justify="left", min_width=8, no_wrap=True)
        else:
            table.add_column(title, justify="right", min_width=5 if key in _RATES else 2)
    for row in rows:
        style = "bold" if row["bone"] in ("average", "overall") else None
        table.add_row(*(_fmt(row.get(key)) for key, _ in columns), style=style)
    return table


def router_table(evaluation: Evaluation) -> Table | None:
    """The router's confusion matrix (rows = true bone) with its accuracy in the title."""
    router = evaluation.router
    if router is None:
        return None
    names = [b.value for b in Bone]
    table = Table(
        title=f"Router, image level: accuracy {router.accuracy:.3f} (rows true, columns routed)",
        title_justify="left",
        **_COMPACT,
    )
    table.add_column("true \\ routed", min_width=14)
    for name in names:
        table.add_column(name, justify="right", min_width=len(name) + 1)
    for name, row in zip(names, router.confusion, strict=True):
        if any(row):
            table.add_row(name, *(str(v) for v in row))
    return table


def pointing_table(evaluation: Evaluation) -> Table | None:
    """The Grad-CAM pointing game per bone and overall (``None`` without boxes)."""
    game = evaluation.pointing
    if game is None:
        return None
    near = f"±{game.margin:.0%}"
    table = Table(
        title=f"Grad-CAM pointing game: peak in the box, or within {near} of the long side "
        "(abnormal images with a box; chance = box area / image area)",
        title_justify="left",
        **_COMPACT,
    )
    columns = [
        ("bone", "bone"),
        ("n", "n"),
        ("hits", "in box"),
        ("hit_rate", "rate"),
        ("chance", "chance"),
        ("near_hits", f"{near}"),
        ("near_hit_rate", "rate"),
        ("near_chance", "chance"),
    ]
    for key, title in columns:
        table.add_column(title, justify="left" if key == "bone" else "right", min_width=5)
    for row in game.rows([b.value for b in Bone]):
        style = "bold" if row["bone"] == "overall" else None
        table.add_row(*(_fmt(row.get(key)) for key, _ in columns), style=style)
    return table


def render(evaluation: Evaluation, console: Console) -> None:
    """Print every table, then what was skipped."""
    for mode in (ORACLE, ROUTED):
        for level in (IMAGE, STUDY):
            table = metrics_table(evaluation, mode, level)
            if table is not None:
                console.print(table)
    for table in (router_table(evaluation), pointing_table(evaluation)):
        if table is not None:
            console.print(table)
    for line in evaluation.skipped:
        console.print(f"skipped {line}")
