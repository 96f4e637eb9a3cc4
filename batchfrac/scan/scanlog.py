"""``OUTDIR/scan.log``: the log records of a scan, redacted, with what stopped it."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ..atomic import open_report_log
from ..report.deidentify import ReportPseudonyms, ScanLogFormatter

log = logging.getLogger("batchfrac.scan.run")

LOG_FILE = "scan.log"

#: Loggers whose records go to scan.log during a scan: ours, Dask's, and the libraries
#: that log per file (pydicom logs a traceback for every plugin that fails on a frame),
#: plus Python warnings (``py.warnings``). None of them reach the terminal.
_LOGGED = ("batchfrac", "distributed", "pydicom", "py.warnings", "tensorflow", "absl", "jax")


@contextlib.contextmanager
def scan_log(out: Path, pseudonyms: ReportPseudonyms | None = None) -> Iterator[None]:
    """Append the scan's log records (:data:`_LOGGED`) to ``OUTDIR/scan.log`` (created
    0640), values quoted by libraries redacted and, with ``pseudonyms``, archive paths
    pseudonymised (:class:`~batchfrac.report.deidentify.ScanLogFormatter`); an exception
    that stops the scan is logged there with its traceback."""
    os.close(open_report_log(out / LOG_FILE))
    handler = logging.FileHandler(out / LOG_FILE, encoding="utf-8")
    handler.setFormatter(
        ScanLogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", pseudonyms)
    )
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in _LOGGED]
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    ours = logging.getLogger("batchfrac")
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    logging.captureWarnings(True)
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            log.error("the scan stopped: %s: %s", type(exc).__name__, exc, exc_info=True)
        else:
            log.warning("the scan was interrupted (Ctrl-C); finished chunks are kept")
        raise
    finally:
        logging.captureWarnings(False)
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
        handler.close()
