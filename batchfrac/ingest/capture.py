"""What ingesting one file says besides its rows, kept for ``ImageResult.log``.

A codec library talks while it works: pydicom warns about odd values (``warnings.warn``)
and logs a full traceback for every plugin that fails on a frame (``LOGGER.exception``,
about 2 KB each), and an exception nobody expected has a traceback worth keeping. None
of that may reach the process's stderr (a cron job that pipes it can fill the pipe and
block the scan, and it is the wrong place for per-file detail): :func:`captured`
collects it, for the duration of one file, into a bounded :class:`FileLog` that the
entry stage puts on the file's rows, and the scan driver writes to ``scan.log``.
Native code writes to file descriptor 2 directly (a Rust codec's panic message):
:func:`native_stderr` catches that around a codec call, into the same log.

Both swap process-wide state while in use (the warning filters and display hook, the
``pydicom`` logger's propagation; the descriptor), shared by the threads that capture
at the same time: each thread's messages go to its own file's log, those of other
threads where they would have gone. Only one thread redirects the descriptor at a
time; another thread's native output meanwhile lands in that file's log.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["FATAL", "FileLog", "captured", "describe", "format_traceback", "native_stderr"]

#: What ingest lets through: the user or the interpreter asked the process to stop.
FATAL = (KeyboardInterrupt, SystemExit)
#: A file's log keeps at most this many entries, ...
MAX_ENTRIES = 40
#: ... each at most this many characters (a pydicom plugin traceback is about 2,000), ...
MAX_ENTRY_CHARS = 6_000
#: ... and this many in all.
MAX_TOTAL_CHARS = 48_000
#: ``detail`` of an unexpected exception's row: ``"<ExceptionType>: <message>"``.
MAX_DETAIL_CHARS = 400
#: The loggers whose records are captured (at their own level, WARNING for pydicom).
CAPTURED_LOGGERS = ("pydicom",)
_STDERR = 2
_current_log: ContextVar[FileLog | None] = ContextVar("batchfrac_ingest_log", default=None)


def describe(exc: BaseException, limit: int = MAX_DETAIL_CHARS) -> str:
    """``"<ExceptionType>: <message>"`` on one line, at most ``limit`` characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return _shorten(text, limit)


def format_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` (a recursion's repeated frames are folded)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


class FileLog:
    """The bounded log entries of one file, in order; repeated messages kept once."""

    def __init__(self) -> None:
        self._entries: list[str] = []
        self._seen: set[str] = set()
        self._kinds: set[tuple[str, str]] = set()
        self._repeats = 0
        self._chars = 0
        self._dropped = 0

    def add(self, text: str, key: str | None = None, kind: str = "") -> None:
        """Append ``text`` (shortened to :data:`MAX_ENTRY_CHARS`) unless its ``key``
        (default: the text) was seen before; a key seen before from the same ``kind``
        counts as a repeat (pydicom both warns and logs each message: one entry)."""
        key = text if key is None else key
        if key in self._seen:
            self._repeats += (key, kind) in self._kinds
            self._kinds.add((key, kind))
            return
        self._seen.add(key)
        self._kinds.add((key, kind))
        text = _shorten(text, MAX_ENTRY_CHARS)
        if len(self._entries) >= MAX_ENTRIES or self._chars + len(text) > MAX_TOTAL_CHARS:
            self._dropped += 1
            return
        self._entries.append(text)
        self._chars += len(text)

    def entries(self) -> tuple[str, ...]:
        """The entries, then one line saying how many repeats and entries were left out."""
        notes = []
        if self._repeats:
            notes.append(f"{self._repeats} repeated message(s) left out")
        if self._dropped:
            notes.append(f"{self._dropped} message(s) over this file's log limit left out")
        return (*self._entries, "; ".join(notes)) if notes else tuple(self._entries)


class _Hooks:
    """The process-wide hooks of :func:`captured`, installed while any thread captures.

    Warnings and records go to the :class:`FileLog` of the thread that raised them; those
    of a thread that is not capturing are shown (warnings) or handled by the root
    logger's handlers (records) as they would have been.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: dict[int, FileLog] = {}
        self._handler = _DispatchHandler(self.logs)
        self._warnings: Any = None
        self._show: Any = None
        self._propagate: list[bool] = []

    def install(self) -> None:
        loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
        self._propagate = [logger.propagate for logger in loggers]
        for logger in loggers:
            logger.addHandler(self._handler)
            logger.propagate = False
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        # Every occurrence, not once per code location: each file's log is its own.
        warnings.simplefilter("always")
        self._show, warnings.showwarning = warnings.showwarning, self._dispatch_warning

    def remove(self) -> None:
        self._warnings.__exit__(None, None, None)
        loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
        for logger, propagate in zip(loggers, self._propagate, strict=True):
            logger.removeHandler(self._handler)
            logger.propagate = propagate

    def _dispatch_warning(
        self, message: Any, category: type[Warning], *args: Any, **kwargs: Any
    ) -> None:
        log = self.logs.get(threading.get_ident())
        if log is None:
            self._show(message, category, *args, **kwargs)
            return
        text = str(message)
        log.add(f"{category.__name__}: {text}", key=text, kind="warning")


class _DispatchHandler(logging.Handler):
    """Adds each record to the :class:`FileLog` of the thread that logged it."""

    def __init__(self, logs: dict[int, FileLog]) -> None:
        super().__init__()
        self._logs = logs

    def emit(self, record: logging.LogRecord) -> None:
        log = self._logs.get(record.thread or 0)
        if log is None:
            logging.getLogger().handle(record)  # as if it had propagated
            return
        try:
            message = record.getMessage()
            text = f"{record.levelname} {record.name}: {message}"
            if record.exc_info and record.exc_info[1] is not None:
                text += "\n" + format_traceback(record.exc_info[1])
            log.add(text, key=message, kind="log")
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is dropped
            log.add(f"{record.levelname} {record.name}: (unformattable record)")


_hooks = _Hooks()
_stderr_lock = threading.Lock()


@contextmanager
def captured(log: FileLog) -> Iterator[FileLog]:
    """Collect the warnings and :data:`CAPTURED_LOGGERS` records of this thread into
    ``log`` meanwhile; none of them is shown or propagated to other handlers."""
    thread = threading.get_ident()
    with _hooks.lock:
        if not _hooks.logs:
            _hooks.install()
        _hooks.logs[thread] = log
    token = _current_log.set(log)
    try:
        yield log
    finally:
        _current_log.reset(token)
        with _hooks.lock:
            del _hooks.logs[thread]
            if not _hooks.logs:
                _hooks.remove()


@contextmanager
def native_stderr() -> Iterator[None]:
    """Inside :func:`captured`, send what is written to file descriptor 2 meanwhile (a Rust
    panic message, a C library's complaint) to the file's log instead; elsewhere, or
    while another thread has it redirected, nothing.

    Not for a call that may abort the process: its last words would be lost with it."""
    log = _current_log.get()
    if log is None or not _stderr_lock.acquire(blocking=False):
        yield
        return
    written: list[str] = []
    try:
        with _redirected_stderr(written):
            yield
    finally:
        _stderr_lock.release()
        if text := "".join(written).strip():
            log.add(f"stderr: {text}")


@contextmanager
def _redirected_stderr(written: list[str]) -> Iterator[None]:
    """File descriptor 2 pointed at a temporary file meanwhile; what was written to it
    (up to :data:`MAX_ENTRY_CHARS` bytes) appended to ``written`` after."""
    _flush_stderr()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(_STDERR)
        os.dup2(sink.fileno(), _STDERR)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, _STDERR)
            os.close(saved)
            sink.seek(0)
            written.append(sink.read(MAX_ENTRY_CHARS).decode("utf-8", "replace"))


def _flush_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no stderr, or a closed one
        pass


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[len(text) - half :]}"
