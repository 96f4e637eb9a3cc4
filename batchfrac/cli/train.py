"""``batchfrac train``: train one head (router or bone) into a model bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..enums import Head
from ..exitcodes import ExitCode
from ..train.recipe import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_IMAGE_SIZE,
    EARLY_STOPPING_PATIENCE,
)
from .options import LabelsCsv


def train(
    bone: Annotated[Head, typer.Option("--bone", help="Head to train: the router or one bone.")],
    data: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            help="MURA-v1.1 tree (its root or parent; the train split is used) or, with "
            "--labels, a DICOM archive.",
        ),
    ],
    bundle: Annotated[
        Path, typer.Option(file_okay=False, help="Model bundle to create or add the head to.")
    ],
    weights: Annotated[
        str | None,
        typer.Option(
            help="Trunk weights for a new bundle: imagenet (default), none (train the first "
            "head end to end; its trunk is then shared) or PATH to efficientnetb0_notop.h5. "
            "An existing bundle keeps its trunk.",
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option(min=1, help="Maximum epochs (early stopping).")
    ] = DEFAULT_EPOCHS,
    batch_size: Annotated[int, typer.Option(min=1)] = DEFAULT_BATCH_SIZE,
    image_size: Annotated[
        int | None,
        typer.Option(min=32, help=f"Input size of a new bundle (default {DEFAULT_IMAGE_SIZE})."),
    ] = None,
    val_split: Annotated[
        float, typer.Option(min=0.01, max=0.99, help="Fraction of patients held out.")
    ] = 0.2,
    seed: Annotated[int, typer.Option()] = 0,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Adam learning rate (default: the paper's 1e-4; 1e-3 when training end to end).",
        ),
    ] = None,
    patience: Annotated[
        int, typer.Option(min=1, help="Early stopping: epochs without a better validation loss.")
    ] = EARLY_STOPPING_PATIENCE,
    labels: LabelsCsv = None,
    demo: Annotated[
        bool, typer.Option(help="Mark a new bundle as a demo (not for clinical use).")
    ] = False,
) -> None:
    """Train one head with the paper's recipe and add it to the bundle.

    The first head of a bundle decides its shared trunk: train the router
    first, then the bones. Ctrl-C or an error leaves the bundle as it was.
    """
    from rich.console import Console

    from ..errors import BatchfracError
    from ..train.progress import RichTrainProgress
    from ..train.trainer import TrainConfig
    from ..train.trainer import train as run_training

    console = Console(stderr=True)
    config = TrainConfig(
        head=bone,
        data=data,
        bundle=bundle,
        weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        image_size=image_size,
        val_split=val_split,
        seed=seed,
        learning_rate=learning_rate,
        patience=patience,
        labels=labels,
        demo=demo,
    )
    try:
        result = run_training(
            config, observer=RichTrainProgress(console, bone.value), announce=console.print
        )
    except BatchfracError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(ExitCode.FATAL) from exc
    except KeyboardInterrupt:
        console.print(f"interrupted: bundle {bundle} left unchanged")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    metrics = result.meta["validation_metrics"]
    summary = ", ".join(
        f"{k} {metrics[k]:.3f}" for k in ("accuracy", "f1", "auroc") if metrics.get(k) is not None
    )
    console.print(
        f"{bone.value}: {result.meta['epochs']} epoch(s) in {result.meta['training_seconds']:.0f}"
        f" s; validation {summary}"
    )
