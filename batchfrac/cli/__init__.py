"""The ``batchfrac`` command line (Typer).

Command modules stay thin: they validate arguments, build a config object and call
library code. Heavy imports (TensorFlow/Keras, Dask) happen inside the command
functions so that ``batchfrac --help`` stays fast and never imports TensorFlow.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import NoReturn

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
        code = ExitCode.OK if exc.code is None else exc.code
        code = ExitCode.FATAL if code == _CLICK_USAGE_ERROR else code
        _exit_without_teardown(code if isinstance(code, int) else ExitCode.FATAL)
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


def _exit_without_teardown(code: int) -> NoReturn:
    """End the process once a command is done, skipping the interpreter's module teardown.

    Unloading the extension modules a scan loads takes about 0.9 s on 2 cores (measured:
    onnxruntime 0.35 s, Dask 0.3 s, OpenCV/pydicom/gdcm 0.25 s), a seventh of a one-file
    scan, and there is nothing left to do then: reports are written atomically, logs
    closed, Dask clusters shut down. Exit handlers still run and streams are flushed;
    only the console script ends this way (tests call the Typer app in-process).
    """
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
