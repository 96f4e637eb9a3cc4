"""`batchfrac preview` (placeholder until implemented)."""

from __future__ import annotations

import typer


def preview() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=1)
