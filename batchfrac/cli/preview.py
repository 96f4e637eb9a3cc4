"""`batchfrac preview FILE --out DIR [--spec spec.json]`: write a filter panel of one image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode


def preview(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A DICOM file, or a PNG/JPEG picture (e.g. a MURA image).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", file_okay=False, help="Folder for <stem>_preview.png (created)."),
    ],
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Preprocess spec JSON (schemas/preprocess_spec.schema.json); default: built-in.",
        ),
    ] = None,
    frame: Annotated[int, typer.Option("--frame", min=0, help="Frame of a multi-frame DICOM.")] = 0,
) -> None:
    """Show the decoded image beside every preprocessing filter and the model input."""
    from ..errors import FileRejected, SpecError
    from ..ingest.preprocess import PreprocessSpec
    from ..preview import preview_path, read_frames, render_panel, write_png

    try:
        chosen = PreprocessSpec.from_json(spec.read_text("utf-8")) if spec else PreprocessSpec()
    except SpecError as exc:
        typer.echo(f"error: {spec}: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from exc
    try:
        frames = read_frames(file)
    except FileRejected as exc:
        typer.echo(f"error: cannot preview {file}: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from exc
    if frame >= len(frames):
        typer.echo(f"error: --frame {frame}: {file} has {len(frames)} frame(s)", err=True)
        raise typer.Exit(ExitCode.FATAL)
    written = write_png(render_panel(frames[frame], chosen), preview_path(out, file))
    typer.echo(str(written))
