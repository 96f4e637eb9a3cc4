"""``batchfrac evaluate``: per-bone metrics of a bundle on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode
from .options import LabelsCsv


def evaluate(
    data: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            help="MURA-v1.1 tree (its root or parent) or, with --labels, a DICOM archive.",
        ),
    ],
    bundle: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="Model bundle to evaluate.")
    ],
    split: Annotated[
        str,
        typer.Option(help="MURA split to score (valid or train); a DICOM archive is scored whole."),
    ] = "valid",
    out: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Write metrics.csv, evaluation.json, ... here."),
    ] = None,
    plots: Annotated[
        bool, typer.Option("--plots", help="Also write ROC curves and confusion matrices (PNG).")
    ] = False,
    labels: LabelsCsv = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
) -> None:
    """Score a bundle per bone: TP/FN/FP/TN, accuracy, F1, kappa, AUROC, ...

    Image and study level (MURA rule: mean image probability), scored by
    each bone's own head and routed end to end (the router picks the head);
    on MURA beside the published numbers. Bones without a head are skipped.
    """
    from rich.console import Console
    from rich.progress import Progress

    from ..errors import BatchfracError
    from ..evaluation.evaluate import EvalConfig
    from ..evaluation.evaluate import evaluate as run_evaluation
    from ..evaluation.report import render, write_outputs

    console = Console()
    errors = Console(stderr=True)
    if plots and out is None:
        errors.print("[red]error:[/red] --plots needs --out DIR")
        raise typer.Exit(ExitCode.FATAL)
    config = EvalConfig(data=data, bundle=bundle, split=split, labels=labels, batch_size=batch_size)
    try:
        with Progress(console=errors, transient=True) as progress:
            task = progress.add_task("evaluating", total=None)
            result = run_evaluation(
                config,
                on_batch=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except BatchfracError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(ExitCode.FATAL) from exc
    render(result, console)
    if out is not None:
        written = write_outputs(result, out)
        if plots:
            from ..evaluation.plots import write_plots

            written += write_plots(result, out)
        errors.print(f"wrote {len(written)} file(s) to {out}")
