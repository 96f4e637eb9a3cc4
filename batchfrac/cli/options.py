"""Option types shared by several commands (one definition, the same help everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LabelsCsv = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        exists=True,
        dir_okay=False,
        help="Labels CSV for a DICOM archive (columns path or study_instance_uid, bone, label).",
    ),
]
