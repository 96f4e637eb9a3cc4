"""The terminal during a long command: our own messages on it, everything else in the log.

Libraries print to the process's standard error on their own: TensorFlow's C++ start-up
lines, Dask worker processes (which inherit it), Python warnings printed by third-party
code. :func:`native_stderr_to` points file descriptor 2 at the scan's log for the duration,
and hands back a stream on the real terminal for batchfrac's own progress and messages,
so cron mail holds what we chose to say and nothing else.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from ..atomic import open_report_log


@contextlib.contextmanager
def native_stderr_to(log_file: Path) -> Iterator[TextIO]:
    """Redirect file descriptor 2 to ``log_file`` (appended) and yield the terminal.

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
    log_fd = open_report_log(log_file)
    try:
        os.dup2(log_fd, 2)
    finally:
        os.close(log_fd)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()
