"""`batchfrac send OUTDIR`: store a scan's DICOM results (SR, KOS) in a PACS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def send(
    outdir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="Output directory of a scan.")
    ],
    dicomweb: Annotated[
        str | None,
        typer.Option(help="DICOMweb base URL for STOW-RS, e.g. http://pacs:8042/dicom-web."),
    ] = None,
    dimse: Annotated[str | None, typer.Option(help="HOST:PORT of a DICOM SCP for C-STORE.")] = None,
    called_ae: Annotated[
        str | None, typer.Option("--called-ae", help="AE title of the --dimse SCP.")
    ] = None,
    calling_ae: Annotated[
        str, typer.Option("--calling-ae", help="Our AE title for --dimse.")
    ] = "BATCHFRAC",
    pseudonymize_key_file: Annotated[
        Path | None,
        typer.Option(
            "--pseudonymize-key-file",
            dir_okay=False,
            help="Send objects with keyed pseudonyms for Patient ID and Accession Number.",
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="After each STOW-RS, check with QIDO-RS that the server holds the object "
            "(some servers acknowledge objects a filter dropped).",
        ),
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be sent; contact nobody.")
    ] = False,
    http_attempts: Annotated[
        int,
        typer.Option(min=1, max=10, help="Tries per DICOMweb request (backing off 2 s, 4 s, ...)."),
    ] = 3,
) -> None:
    """Send a scan's results to a PACS as DICOM (STOW-RS or C-STORE).

    One SR per study and one Key Object Selection per abnormal study, written to
    OUTDIR/dicom first (as `export --dicom` does).

    OUTDIR/pacs-sent.jsonl remembers what each destination confirmed: running the
    command again sends only what is new, and contacts nobody when nothing is.

    \b
    Exit codes:
      0    every object stored (or stored before)
      3    finished, but the destination refused some objects (listed on stderr)
      1    fatal: bad arguments, unreadable reports, destination unreachable
      130  interrupted; confirmed objects are recorded, run again to send the rest
    """
    from ..pacs.console import send_results

    raise typer.Exit(
        send_results(
            outdir,
            dicomweb=dicomweb,
            dimse=dimse,
            called_ae=called_ae,
            calling_ae=calling_ae,
            key_file=pseudonymize_key_file,
            dry_run=dry_run,
            http_attempts=http_attempts,
            verify=verify,
        )
    )
