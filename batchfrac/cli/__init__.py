"""The ``batchfrac`` command line (Typer).

Command modules stay thin: they validate arguments, build a config object and call
library code. Heavy imports (TensorFlow/Keras, Dask) happen inside the command
functions so that ``batchfrac --help`` stays fast and never imports TensorFlow.
"""

from __future__ import annotations

import typer

from ..exitcodes import ExitCode
from . import doctor, evaluate, export, models, preview, pull, scan, send, synth, train

app = typer.Typer(
    name="batchfrac",
    help="Screen musculoskeletal radiographs in DICOM archives for abnormalities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command("scan")(scan.scan)
app.command("export")(export.export)
app.command("doctor")(doctor.doctor)
app.command("preview")(preview.preview)
app.command("synth")(synth.synth)
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("send")(send.send)
app.command("pull")(pull.pull)
app.add_typer(models.app, name="models")


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Screen musculoskeletal radiographs in DICOM archives for abnormalities."""


def main() -> None:
    """Console-script entry point.

    Exit codes are part of the interface (cron and schedulers read them); they are the
    one table :class:`batchfrac.exitcodes.ExitCode`. Click reports bad arguments with
    code 2; the console script maps that to 1 so that every fatal start-up problem
    (bad arguments, unreadable bundle, missing archive) reads the same.
    """
    try:
        app()
    except SystemExit as exc:
        if exc.code == _CLICK_USAGE_ERROR:
            raise SystemExit(ExitCode.FATAL) from None
        raise


_CLICK_USAGE_ERROR = 2
