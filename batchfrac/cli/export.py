"""`batchfrac export OUTDIR`: rewrite the CSV and HTML copies of a finished scan's reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode


def export(
    outdir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="Output directory of a scan.")
    ],
    csv: Annotated[
        bool, typer.Option("--csv", help="Write images.csv and studies.csv (spreadsheet-safe).")
    ] = False,
    html: Annotated[bool, typer.Option("--html", help="Rewrite index.html.")] = False,
) -> None:
    """Export the Parquet reports in OUTDIR. CSV cells that start with = + - @ get a
    leading ' so a spreadsheet shows them as text (see batchfrac.report.csv_export).

    Exits 0 on success, 1 when the reports are missing or unreadable.
    """
    from ..report.csv_export import export_csv
    from ..report.html import write_index

    if not (csv or html):
        raise typer.BadParameter("nothing to export: give --csv and/or --html")
    try:
        written = export_csv(outdir) if csv else []
        if html:
            written.append(write_index(outdir))
    except (OSError, ValueError, KeyError) as exc:
        typer.echo(f"error: cannot export {outdir}: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from None
    for path in written:
        typer.echo(str(path))
