"""`batchfrac export OUTDIR`: rewrite the CSV and HTML copies of a finished scan's reports,
or write its results as DICOM objects."""

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
    dicom: Annotated[
        Path | None,
        typer.Option(
            "--dicom",
            file_okay=False,
            help="Write one DICOM SR per study and one Key Object Selection per abnormal "
            "study into this folder (named by their UIDs; the same run gives the same files).",
        ),
    ] = None,
    pseudonymize_key_file: Annotated[
        Path | None,
        typer.Option(
            "--pseudonymize-key-file",
            dir_okay=False,
            help="With --dicom: replace Patient ID and Accession Number by keyed pseudonyms "
            "(HMAC-SHA256; key file of at least 32 bytes).",
        ),
    ] = None,
) -> None:
    """Export the reports in OUTDIR. CSV cells that start with = + - @ get a
    leading ' so a spreadsheet shows them as text (see batchfrac.report.csv_export).

    \b
    Exit codes:
      0    everything exported
      3    --dicom: finished, but some studies got no objects (each is named on stderr)
      1    fatal: reports missing or unreadable, unwritable folder, bad key file
    """
    from ..report.csv_export import export_csv
    from ..report.html import write_index

    if pseudonymize_key_file is not None and dicom is None:
        raise typer.BadParameter("--pseudonymize-key-file only applies to --dicom")
    if not (csv or html or dicom):
        raise typer.BadParameter("nothing to export: give --csv, --html and/or --dicom")
    try:
        written = export_csv(outdir) if csv else []
        if html:
            written.append(write_index(outdir))
    except (OSError, ValueError, KeyError) as exc:
        typer.echo(f"error: cannot export {outdir}: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from None
    for path in written:
        typer.echo(str(path))
    if dicom is not None:
        from ..pacs.console import export_to_folder

        raise typer.Exit(export_to_folder(outdir, dicom, pseudonymize_key_file))
