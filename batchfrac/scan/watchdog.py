"""A per-item deadline for work that cannot be interrupted (a codec stuck in C code).

A Python thread cannot stop another thread that is inside a C extension, and signals
reach only the main thread (Dask runs tasks in worker threads). So :class:`Watchdog`
does not try to interrupt anything: when one watched span (one file) outlives its
deadline, it calls ``on_expiry(label, seconds)`` from its own daemon thread, once, and
the caller decides what to do; the Dask task wrapper in :mod:`batchfrac.scan.cluster`
reports the file and ends the worker process so that its nanny starts a fresh one.

::

    with Watchdog(60.0, on_expiry) as dog:
        for path in paths:
            with dog.watch(path):
                decode(path)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

__all__ = ["Watchdog"]


class Watchdog:
    """Calls ``on_expiry(label, seconds)`` when one :meth:`watch` span lasts ``seconds``.

    One span at a time (the spans of one task run one after the other). ``on_expiry``
    runs in the watchdog's daemon thread, at most once per span, while the watched code
    is presumably still stuck; it may end the process.
    """

    def __init__(self, seconds: float, on_expiry: Callable[[str, float], None]) -> None:
        if seconds <= 0:
            raise ValueError(f"the watchdog needs a positive number of seconds, got {seconds}")
        self.seconds = float(seconds)
        self.on_expiry = on_expiry
        self._changed = threading.Condition()
        self._label: str | None = None
        self._deadline = 0.0
        self._stopped = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        self._thread = threading.Thread(target=self._run, name="batchfrac-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def watch(self, label: str) -> Iterator[None]:
        """Watch the body of the ``with`` block under ``label`` (e.g. a file path)."""
        with self._changed:
            if self._label is not None:
                raise RuntimeError(f"already watching {self._label!r}; spans do not nest")
            self._label, self._deadline = label, time.monotonic() + self.seconds
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._label = None
                self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                if self._label is None:
                    self._changed.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                label = self._label
                self._label = None  # once per span
                self._changed.release()
                try:
                    self.on_expiry(label, self.seconds)
                finally:
                    self._changed.acquire()
