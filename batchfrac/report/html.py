"""``index.html``: a small static summary of one scan (no scripts, every value escaped)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..atomic import REPORT_FILE_MODE, write_text
from .rows import StudyRow

TOP_STUDIES = 25

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
    ".demo{background:#fee;border:2px solid #c00;padding:1em;font-weight:bold}"
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_index(run: Mapping[str, Any], studies: Sequence[StudyRow]) -> str:
    """The HTML summary of ``run`` (the ``run.json`` document) and its study rows."""
    bundle = run["bundle"]
    counts = run["counts"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">",
        f"<title>batchfrac scan {escape(run['run_id'])}</title><style>{_STYLE}</style></head>",
        "<body><h1>batchfrac scan</h1>",
    ]
    if bundle["demo"]:
        parts.append(f"<p class='demo'>{escape(bundle['notice'] or 'DEMO MODEL')}</p>")
    parts.append("<h2>Counts</h2>")
    count_rows: list[Sequence[Any]] = [
        ["files", counts["files"]],
        ["rows", counts["rows"]],
        ["studies", counts["studies"]],
    ]
    count_rows += [[f"status {k}", v] for k, v in sorted(counts["status"].items())]
    count_rows += [[f"reason {k}", v] for k, v in sorted(counts["reason"].items())]
    parts.append(_table(["what", "count"], count_rows))
    ranked = sorted(studies, key=lambda s: -s.abnormal_probability)[:TOP_STUDIES]
    parts.append(f"<h2>Top {len(ranked)} studies by abnormal probability</h2>")
    parts.append(
        _table(
            [
                "study",
                "patient",
                "accession",
                "bone",
                "images",
                "P(abnormal)",
                "prediction",
                "flags",
            ],
            [
                [
                    s.study_instance_uid,
                    s.patient_id,
                    s.accession_number,
                    s.bone,
                    s.n_images,
                    s.abnormal_probability,
                    s.prediction,
                    s.flags,
                ]
                for s in ranked
            ],
        )
    )
    throughput = run["throughput"]
    parts.append("<h2>Provenance</h2>")
    parts.append(
        _table(
            ["item", "value"],
            [
                ["run id", run["run_id"]],
                ["started", run["started_at"]],
                ["finished", run["finished_at"]],
                ["host", run["host"]],
                ["software version", run["software_version"]],
                ["bundle id", bundle["id"]],
                ["trunk sha256", bundle["trunk_sha256"]],
                ["preprocessing spec", run["preprocessing"]["spec_id"]],
                ["images/s", throughput["images_per_s"]],
                ["trunk passes per image", throughput["trunk_passes_per_image"]],
            ],
        )
    )
    parts.append("</body></html>\n")
    return "".join(parts)


def write_index(outdir: Path) -> Path:
    """Rewrite ``outdir/index.html`` from its ``run.json`` and ``studies.parquet``."""
    run = json.loads((outdir / "run.json").read_text(encoding="utf-8"))
    table = pq.read_table(outdir / "studies.parquet")
    studies = [StudyRow(**{**r, "flags": tuple(r["flags"])}) for r in table.to_pylist()]
    return write_text(outdir / "index.html", render_index(run, studies), mode=REPORT_FILE_MODE)
