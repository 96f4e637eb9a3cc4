"""What ``batchfrac models info`` shows: a bundle's heads as the paper's tables 2/3.

:func:`bundle_summary` turns a loaded bundle into a plain dict (the ``--json`` output);
:func:`render_summary` prints that dict with rich. Neither imports Keras.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ..evaluation.paper import PATEL_MODEL_MB
from .format import ModelBundle

METRIC_COLUMNS = ("accuracy", "precision", "sensitivity", "f1", "auroc", "kappa")
N_PAPER_MODELS = 8
_MB = 1e6


def _file_mb(bundle: ModelBundle, file_name: str) -> float:
    return (bundle.path / file_name).stat().st_size / _MB


def bundle_summary(bundle: ModelBundle) -> dict[str, Any]:
    """The bundle's provenance and one row per head (sizes in MB = 10^6 bytes)."""
    meta = bundle.meta
    heads = []
    for name in bundle.heads():
        head = bundle.head_meta(name)
        metrics = head.get("validation_metrics", {})
        heads.append(
            {
                "name": name,
                "classes": head["classes"],
                "size_mb": round(_file_mb(bundle, head["file"]), 3),
                "images_per_class": head.get("images_per_class"),
                "epochs": head.get("epochs"),
                "training_seconds": head.get("training_seconds"),
                "metrics": {k: metrics[k] for k in METRIC_COLUMNS if k in metrics},
                "threshold": head.get("threshold"),
                "trained_at": head["trained_at"],
                "data": head.get("data"),
                "sha256": head["sha256"],
            }
        )
    trunk_mb = _file_mb(bundle, meta["trunk"]["file"])
    return {
        "path": str(bundle.path),
        "bundle_id": bundle.bundle_id,
        "demo": bundle.demo,
        "notice": bundle.notice,
        "software_version": meta["software_version"],
        "created": meta["created"],
        "updated": meta["updated"],
        "image_size": bundle.image_size,
        "spec_id": bundle.spec.spec_id,
        "preprocess": meta["preprocess"],
        "weights_origin": meta["weights_origin"],
        "trunk": {**meta["trunk"], "size_mb": round(trunk_mb, 3)},
        "heads": heads,
        "total_size_mb": round(trunk_mb + sum(h["size_mb"] for h in heads), 3),
        "paper_total_mb": round(N_PAPER_MODELS * PATEL_MODEL_MB, 1),
    }


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _per_class(images: dict[str, int] | None, classes: list[str]) -> str:
    if not images:
        return "-"
    return "/".join(str(images.get(name, 0)) for name in classes)


def _classes(classes: list[str]) -> str:
    return f"{len(classes)} bones" if len(classes) > 2 else "/".join(classes)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """Print ``summary`` (from :func:`bundle_summary`) as a banner, a header and a table."""
    if summary["demo"]:
        console.print(
            Panel(f"[bold]DEMO BUNDLE - NOT FOR CLINICAL USE[/]\n{summary['notice']}", style="red")
        )
    origin = summary["weights_origin"]
    trunk = summary["trunk"]
    console.print(f"[bold]bundle[/] {summary['bundle_id']}  {summary['path']}")
    console.print(
        f"trunk {trunk['sha256'][:12]} ({trunk['obtained']}, from weights {origin['kind']}"
        f"{' ' + origin['file'] if 'file' in origin else ''}), {trunk['size_mb']:.1f} MB; "
        f"input {summary['image_size']}px, preprocess {summary['spec_id']}; "
        f"batchfrac {summary['software_version']}"
    )
    heads = Table(title="Heads")
    for column in ("head", "classes", "MB", "images per class", "epochs", "time", "threshold"):
        heads.add_column(column, justify="left" if column in ("head", "classes") else "right")
    metrics = Table(title="Validation metrics")
    metrics.add_column("head")
    for metric in METRIC_COLUMNS:
        metrics.add_column(metric, justify="right")
    for head in summary["heads"]:
        heads.add_row(
            head["name"],
            _classes(head["classes"]),
            f"{head['size_mb']:.1f}",
            _per_class(head["images_per_class"], head["classes"]),
            _number(head["epochs"]),
            _duration(head["training_seconds"]),
            _number(head["threshold"], 2),
        )
        metrics.add_row(head["name"], *(_number(head["metrics"].get(m)) for m in METRIC_COLUMNS))
    console.print(heads)
    console.print(metrics)
    console.print(
        f"total {summary['total_size_mb']:.1f} MB for the trunk and {len(summary['heads'])} "
        f"heads (paper: {N_PAPER_MODELS} x {PATEL_MODEL_MB} MB = {summary['paper_total_mb']} MB)"
    )
    if not summary["demo"]:
        console.print(summary["notice"])
