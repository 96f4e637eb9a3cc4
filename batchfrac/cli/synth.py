"""`batchfrac synth OUT --studies N --seed S`: write a deterministic synthetic archive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode
from ..synth.config import Layout, Syntax


def _parse_syntaxes(values: list[str] | None) -> tuple[Syntax, ...]:
    if not values:
        return tuple(Syntax)
    names = [v.strip().lower() for value in values for v in value.split(",") if v.strip()]
    try:
        return tuple(Syntax(n) for n in names)
    except ValueError as exc:
        choices = ", ".join(s.value for s in Syntax)
        typer.echo(f"error: --syntaxes: {exc}; choose from: {choices}", err=True)
        raise typer.Exit(ExitCode.FATAL) from exc


def synth(
    out: Annotated[
        Path, typer.Argument(file_okay=False, help="Folder to write (absent or empty).")
    ],
    studies: Annotated[int, typer.Option("--studies", min=1, help="Number of studies.")] = 20,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Same seed, same bytes.")] = 0,
    layout: Annotated[
        Layout, typer.Option("--layout", help="DICOM archive, or MURA-v1.1 PNG tree.")
    ] = Layout.DICOM,
    abnormal_fraction: Annotated[
        float,
        typer.Option("--abnormal-fraction", min=0.0, max=1.0, help="Share of abnormal studies."),
    ] = 0.4,
    min_size: Annotated[
        int, typer.Option("--min-size", min=32, help="Smallest image side (px).")
    ] = 1024,
    max_size: Annotated[
        int, typer.Option("--max-size", min=32, help="Largest image side (px).")
    ] = 3000,
    syntaxes: Annotated[
        list[str] | None,
        typer.Option(
            "--syntaxes",
            help="Transfer syntaxes in rotation, comma-separated or repeated: "
            + ", ".join(s.value for s in Syntax)
            + " (default: all).",
        ),
    ] = None,
    junk: Annotated[
        bool,
        typer.Option("--junk/--no-junk", help="Add README, .DS_Store, truncated file, DICOMDIR."),
    ] = True,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", min=1, help="Processes drawing images (same files whatever the number)."
        ),
    ] = 1,
    contact_sheet: Annotated[
        Path | None,
        typer.Option(
            "--contact-sheet", dir_okay=False, help="Also write a labelled PNG sheet here."
        ),
    ] = None,
) -> None:
    """Write a realistic synthetic radiograph archive (no patient data) and its ground truth."""
    from rich.progress import Progress

    from ..synth import SynthConfig, generate_archive, generate_mura, write_contact_sheet

    if min_size > max_size:
        typer.echo(f"error: --min-size {min_size} > --max-size {max_size}", err=True)
        raise typer.Exit(ExitCode.FATAL)
    if out.exists() and any(out.iterdir()):
        typer.echo(f"error: {out} is not empty (synth writes a fresh tree)", err=True)
        raise typer.Exit(ExitCode.FATAL)
    config = SynthConfig(
        studies=studies,
        seed=seed,
        abnormal_fraction=abnormal_fraction,
        min_size=min_size,
        max_size=max_size,
        syntaxes=_parse_syntaxes(syntaxes),
        junk=junk,
    )
    generate = generate_mura if layout is Layout.MURA else generate_archive
    with Progress(transient=True) as bar:
        task = bar.add_task("drawing radiographs", total=None)
        summary = generate(
            out,
            config,
            lambda done, total: bar.update(task, completed=done, total=total),
            jobs=jobs,
        )
    if contact_sheet is not None:
        write_contact_sheet(contact_sheet, seed=seed)
    typer.echo(
        f"wrote {summary.images} images in {summary.studies} studies of {summary.patients} "
        f"patients ({summary.abnormal_studies} abnormal studies, {summary.junk_files} other files) "
        f"to {out}"
    )
    for name in summary.skipped_syntaxes:
        typer.echo(f"warning: no encoder for {name}; it was left out of the rotation", err=True)
