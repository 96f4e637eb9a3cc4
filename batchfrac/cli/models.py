"""`batchfrac models ...` (placeholder until implemented)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Inspect model bundles.", no_args_is_help=True)


@app.command("info")
def info() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=1)
