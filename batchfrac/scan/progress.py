"""Live scan progress on the terminal (rich): files/s, images/s, ETA, counts by status.

The total is unknown while the archive is still being walked (the walk is streamed);
the bar and its ETA appear once the walk has finished.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..enums import Status
from ..report.rows import ImageRow


class ScanProgress:
    """A :class:`batchfrac.scan.chunks.ScanObserver` that draws a rich progress bar."""

    def __init__(self, console: Console | None = None, *, disable: bool = False) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]scan"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[rates]}  {task.fields[counts]}"),
            console=console or Console(stderr=True),
            transient=False,
            disable=disable,
        )
        self._task = self._progress.add_task("scan", total=None, rates="", counts="")
        self._status: Counter[str] = Counter()
        self._files = self._images = self._reused = 0
        self._started = time.perf_counter()

    def __enter__(self) -> ScanProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def file_reused(self) -> None:
        self._reused += 1
        self._progress.advance(self._task)
        if self._reused % 200 == 0:
            self._refresh()

    def chunk_written(self, rows: Sequence[ImageRow]) -> None:
        self._files += len({row.path for row in rows})
        self._images += sum(row.status == Status.OK.value for row in rows)
        self._status.update(row.status for row in rows)
        self._progress.advance(self._task, len({row.path for row in rows}))
        self._refresh()

    def walk_finished(self, files: int) -> None:
        self._progress.update(self._task, total=files)
        self._refresh()

    def _refresh(self) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        rates = f"{self._files / elapsed:.1f} files/s  {self._images / elapsed:.1f} images/s"
        counts = "  ".join(f"{s.value} {self._status[s.value]}" for s in Status)
        if self._reused:
            counts += f"  resumed {self._reused}"
        self._progress.update(self._task, rates=rates, counts=counts)
