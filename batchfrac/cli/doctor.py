"""`batchfrac doctor` (placeholder until implemented)."""

from __future__ import annotations

import typer


def doctor() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=1)
