"""`batchfrac export` (placeholder until implemented)."""

from __future__ import annotations

import typer


def export() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=1)
