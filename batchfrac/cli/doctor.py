"""`batchfrac doctor ARCHIVE`: header-only preflight of an archive."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..defaults import DEFAULT_MODALITIES
from ..exitcodes import ExitCode


def doctor(
    archive: Annotated[
        Path,
        typer.Argument(exists=True, readable=True, help="Archive directory (or one file)."),
    ],
    modalities: Annotated[
        str, typer.Option(help="Comma-separated (0008,0060) Modality allow-list.")
    ] = ",".join(DEFAULT_MODALITIES),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")
    ] = False,
) -> None:
    """Read every header (no pixel data) and predict what a scan would do with each file.

    Exits 3 when some file would fail (undecodable transfer syntax, truncated,
    unreadable), 0 otherwise; bad arguments exit 1 (the console script's usage-error code).
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..doctor import print_report, survey

    allowed = tuple(m.strip().upper() for m in modalities.split(",") if m.strip())
    if not allowed:
        raise typer.BadParameter(
            "give at least one modality, e.g. CR,DX", param_hint="--modalities"
        )
    progress = Progress(
        SpinnerColumn(),
        TextColumn("reading headers: {task.completed} files"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=as_json or not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task("doctor", total=None)
        report = survey(archive, allowed, on_file=lambda _path: progress.advance(task))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, Console())
    raise typer.Exit(ExitCode.PARTIAL if report.would_fail else ExitCode.OK)
