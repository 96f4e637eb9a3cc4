"""`batchfrac train` (placeholder until implemented)."""

from __future__ import annotations

import typer


def train() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=1)
