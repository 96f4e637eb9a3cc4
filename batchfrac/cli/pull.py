"""`batchfrac pull URL --out DIR`: fetch studies from a DICOMweb server into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def pull(
    url: Annotated[str, typer.Argument(help="DICOMweb base URL, e.g. http://pacs:8042/dicom-web.")],
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Folder to write into.")],
    since: Annotated[
        str | None, typer.Option(help="First (0008,0020) Study Date, YYYY-MM-DD.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last (0008,0020) Study Date, YYYY-MM-DD.")
    ] = None,
    modalities: Annotated[
        str, typer.Option(help="Modalities to pull (studies by ModalitiesInStudy, then series).")
    ] = "CR,DX",
    jobs: Annotated[int, typer.Option(min=1, max=32, help="Retrievals at a time.")] = 4,
    http_attempts: Annotated[
        int,
        typer.Option(min=1, max=10, help="Tries per DICOMweb request (backing off 2 s, 4 s, ...)."),
    ] = 3,
) -> None:
    """Pull studies from a DICOMweb server into a folder that `scan` reads.

    QIDO-RS finds the studies, WADO-RS retrieves them instance by instance into
    OUT/<study>/<series>/<sop>.dcm; then `batchfrac scan OUT` as any folder.

    Resumable: instances already on disk are not fetched again.

    \b
    Exit codes:
      0    every instance found is on disk
      3    finished, but some instances could not be retrieved (listed on stderr)
      1    fatal: bad arguments, server unreachable or refusing queries
      130  interrupted; finished files are complete, run again to fetch the rest
    """
    from ..pacs.console import pull_studies

    raise typer.Exit(
        pull_studies(
            url,
            out,
            since=since,
            until=until,
            modalities=modalities,
            jobs=jobs,
            http_attempts=http_attempts,
        )  # fmt: skip
    )
