"""``batchfrac models ...``: inspect model bundles, export their ONNX graphs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode

app = typer.Typer(help="Inspect model bundles and export their ONNX graphs.", no_args_is_help=True)


@app.command("info")
def info(
    bundle: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, dir_okay=True, help="Model bundle directory."),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of tables.")
    ] = False,
) -> None:
    """Show a bundle's heads (classes, size, data, epochs, time, metrics, threshold)."""
    from rich.console import Console

    from ..bundle.format import ModelBundle
    from ..bundle.info import bundle_summary, render_summary
    from ..errors import BundleError

    try:
        summary = bundle_summary(ModelBundle.load(bundle))
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from exc
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        render_summary(summary, Console())


@app.command("export-onnx")
def export_onnx(
    bundle: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, dir_okay=True, help="Model bundle directory."),
    ],
) -> None:
    """Add ONNX graphs of the trunk and every head to a bundle (scan --backend onnx).

    Each graph is checked against the Keras network on random images (probabilities
    within 1e-4) before it is listed in bundle.json; graphs that already match their
    weights are kept. The bundle id does not change: the graphs are derived data.
    """
    from ..bundle.onnx_export import export_bundle
    from ..errors import BundleError

    try:
        section = export_bundle(bundle)
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from exc
    records = {"trunk": section["trunk"], **section["heads"]}
    for name, record in records.items():
        typer.echo(f"{name:9} {record['file']}  max |ONNX - Keras| {record['max_abs_diff']:.1e}")
