"""`batchfrac scan` (placeholder until implemented)."""

from __future__ import annotations

import typer


def scan() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=1)
