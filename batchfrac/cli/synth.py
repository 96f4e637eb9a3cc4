"""`batchfrac synth` (placeholder until implemented)."""

from __future__ import annotations

import typer


def synth() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=1)
