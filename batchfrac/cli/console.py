"""The terminal during a long command: our own messages on it, everything else in the log.

Libraries print to the process's standard error on their own: TensorFlow's C++ start-up
lines, Dask worker processes (which inherit it), Python warnings printed by third-party
code. :func:`native_stderr_to` points file descriptor 2 at the scan's log for the duration,
and hands back a stream on the real terminal for batchfrac's own progress and messages,
so cron mail holds what we chose to say and nothing else. With a ``scrub`` function (a
pseudonymised scan) that output passes through it on its way to the log, so that a path a
library prints (a Dask worker's failed task, a traceback) is pseudonymised too.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from ..atomic import open_report_log

#: How long the end of a command waits for the last scrubbed lines to reach the log.
_DRAIN_S = 5.0


@contextlib.contextmanager
def native_stderr_to(log_file: Path, scrub: Callable[[str], str] | None = None) -> Iterator[TextIO]:
    """Redirect file descriptor 2 to ``log_file`` (appended; created 0640) and yield the
    terminal; with ``scrub``, every line goes through it first (a pipe and a thread).

    When ``sys.stderr`` is not file descriptor 2 (a test runner captures it), nothing is
    redirected and ``sys.stderr`` itself is yielded.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = -1
    if fd != 2:
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    copier = None
    if scrub is None:
        target = open_report_log(log_file)
    else:
        source, target = os.pipe()
        copier = threading.Thread(
            target=copy_scrubbed, args=(source, open_report_log(log_file), scrub),
            name="batchfrac-stderr", daemon=True,
        )  # fmt: skip
        copier.start()
    try:
        os.dup2(target, 2)
    finally:
        os.close(target)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()
        if copier is not None:  # ends when the last holder of the pipe (a worker) has gone
            copier.join(_DRAIN_S)


def copy_scrubbed(source: int, sink: int, scrub: Callable[[str], str]) -> None:
    """Copy lines from file descriptor ``source`` to ``sink`` through ``scrub`` until end
    of file, then close both. Never stops early: a writer blocked on a full pipe would hang
    the command, so a line that cannot be scrubbed is replaced and a failed write dropped."""
    with os.fdopen(source, "rb") as lines, os.fdopen(sink, "ab", buffering=0) as log:
        for line in lines:
            try:
                text = scrub(line.decode("utf-8", "replace"))
            except Exception:  # noqa: BLE001 - never let the pipe fill up
                text = "(a line of native output could not be pseudonymised; left out)\n"
            with contextlib.suppress(OSError):
                log.write(text.encode("utf-8"))
