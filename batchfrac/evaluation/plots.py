"""PNG figures of ``batchfrac evaluate --plots``: ROC curves and confusion matrices.

Drawn with matplotlib's object-oriented API on an Agg canvas (no pyplot, no global
backend switch, no display needed). Curves come from :func:`sklearn.metrics.roc_curve`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from ..atomic import write_bytes
from ..enums import Bone
from .evaluate import IMAGE, ORACLE, STUDY, Evaluation, cases


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())
    return path


def roc_figure(evaluation: Evaluation, level: str) -> Figure:
    """ROC curve of each bone head (oracle routing) and of all cases pooled."""
    truth, y, prob, _, unscored = cases(evaluation.predictions, ORACLE, level)
    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    rows = {r["bone"]: r for r in evaluation.table(ORACLE, level)}
    for b, bone in enumerate(Bone):
        keep = (truth == b) & ~unscored
        if keep.any() and np.unique(y[keep]).size == 2:
            fpr, tpr, _ = roc_curve(y[keep], prob[keep])
            axes.plot(fpr, tpr, label=f"{bone.value} (AUROC {rows[bone.value]['auroc']:.3f})")
    keep = ~unscored
    if keep.any() and np.unique(y[keep]).size == 2:
        fpr, tpr, _ = roc_curve(y[keep], prob[keep])
        axes.plot(fpr, tpr, color="black", linewidth=2, label="all bones pooled")
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    axes.set_title(f"ROC, {level} level")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right", fontsize="small")
    else:
        axes.text(0.5, 0.5, "no bone has both classes", ha="center", va="center")
    return figure


def _matrix(axes: Axes, matrix: np.ndarray, labels: list[str], title: str) -> None:
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize="medium")
    peak = matrix.max() if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if peak and value > peak / 2 else "black"
        axes.text(j, i, str(value), ha="center", va="center", color=colour)


def bone_confusion_figure(evaluation: Evaluation, level: str) -> Figure:
    """One 2x2 confusion matrix (normal/abnormal) per evaluated bone."""
    rows = [r for r in evaluation.table(ORACLE, level) if r["bone"] not in ("average", "overall")]
    columns = min(4, max(1, len(rows)))
    lines = max(1, -(-len(rows) // columns))
    figure = Figure(figsize=(3.2 * columns, 3.2 * lines))
    for k, row in enumerate(rows):
        axes = figure.add_subplot(lines, columns, k + 1)
        matrix = np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]])
        _matrix(axes, matrix, ["normal", "abnormal"], f"{row['bone']} ({level})")
    figure.tight_layout()
    return figure


def router_confusion_figure(evaluation: Evaluation) -> Figure | None:
    """The router's 7x7 confusion matrix, or ``None`` without a router."""
    if evaluation.router is None:
        return None
    figure = Figure(figsize=(6.5, 6))
    matrix = np.array(evaluation.router.confusion)
    title = f"router (accuracy {evaluation.router.accuracy:.3f})"
    _matrix(figure.add_subplot(), matrix, [b.value for b in Bone], title)
    figure.tight_layout()
    return figure


def write_plots(evaluation: Evaluation, out: Path) -> list[Path]:
    """Write ``roc_{image,study}.png``, ``confusion_{image,study}.png`` and, with a router,
    ``router_confusion.png`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for level in (IMAGE, STUDY):
        if evaluation.table(ORACLE, level):
            written.append(_save(roc_figure(evaluation, level), out / f"roc_{level}.png"))
            written.append(
                _save(bone_confusion_figure(evaluation, level), out / f"confusion_{level}.png")
            )
    router = router_confusion_figure(evaluation)
    if router is not None:
        written.append(_save(router, out / "router_confusion.png"))
    return written
