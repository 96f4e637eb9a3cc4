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
            help="Write Patient ID and Accession Number (and, in the CSV and HTML, every "
            "file and folder name below the archive) as keyed pseudonyms (HMAC-SHA256; key "
            "file of at least 32 bytes). The Parquet files are never rewritten; a scan made "
            "with a key needs the same key here.",
        ),
    ] = None,
) -> None:
    """Export the reports in OUTDIR. CSV cells that start with = + - @ get a
    leading ' so a spreadsheet shows them as text (see batchfrac.report.csv_export).

    With --pseudonymize-key-file on a scan made without a key, the CSV, HTML and DICOM
    written now carry pseudonyms, while images.parquet, studies.parquet, parts/ and
    scan.log keep the clear values (said on stderr): scan with the key for a folder
    without them.

    \b
    Exit codes:
      0    everything exported
      3    --dicom: finished, but some studies got no objects (each is named on stderr)
      1    fatal: reports missing or unreadable, unwritable folder, bad key file
    """
    from ..errors import BatchfracError
    from ..report.csv_export import export_csv
    from ..report.deidentify import export_privacy
    from ..report.html import write_index

    if not (csv or html or dicom):
        raise typer.BadParameter("nothing to export: give --csv, --html and/or --dicom")
    try:
        privacy = export_privacy(outdir, pseudonymize_key_file)
        written = export_csv(outdir, pseudonyms=privacy.rewrite) if csv else []
        if html:
            written.append(write_index(outdir, privacy.rewrite))
    except (OSError, ValueError, KeyError, BatchfracError) as exc:
        typer.echo(f"error: cannot export {outdir}: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from None
    for path in written:
        typer.echo(str(path))
    if privacy.rewrite is not None and written:
        typer.echo(
            f"note: the files above carry pseudonyms (key fingerprint "
            f"{privacy.rewrite.fingerprint}); images.parquet, studies.parquet, parts/ and "
            f"scan.log in {outdir} keep the clear values",
            err=True,
        )
    if dicom is not None:
        from ..pacs.console import export_to_folder

        raise typer.Exit(export_to_folder(outdir, dicom, pseudonymize_key_file))
