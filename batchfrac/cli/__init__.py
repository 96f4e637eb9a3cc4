"""The ``batchfrac`` command line (Typer).

Command modules stay thin: they validate arguments, build a config object and call
library code. Heavy imports (TensorFlow/Keras, Dask) happen inside the command
functions so that ``batchfrac --help`` stays fast and never imports TensorFlow.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import typer

from ..exitcodes import ExitCode
from . import doctor, evaluate, export, models, preview, pull, scan, send, synth, train

app = typer.Typer(
    name="batchfrac",
    help="Screen musculoskeletal radiographs in DICOM archives for abnormalities.",
    no_args_is_help=True,
    add_completion=False,
    # main() turns an unexpected exception into one line (and the traceback into a file).
    pretty_exceptions_enable=False,
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
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        where = _write_traceback(exc)
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {_one_line(exc)} "
            f"(a bug in batchfrac; the traceback is in {where})\n"
        )
        raise SystemExit(ExitCode.FATAL) from None


_CLICK_USAGE_ERROR = 2


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _write_traceback(error: BaseException) -> Path:
    """Write ``error``'s traceback to a file in the temporary directory; return its path
    (a scan has already logged it into its scan.log as well)."""
    fd, name = tempfile.mkstemp(prefix="batchfrac-error-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        traceback.print_exception(error, file=handle)
    return Path(name)
