"""A rich progress display for :func:`batchfrac.train.loop.fit` (a ``TrainObserver``).

Two bars: epochs, and batches of the current epoch with the running loss/accuracy;
after each epoch one line with the epoch's training and validation numbers (``*`` marks
the best validation loss so far, whose weights are kept).
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def format_logs(logs: Mapping[str, float]) -> str:
    """``loss 0.512  accuracy 0.750  val_loss ...`` in a stable order."""
    order = ["loss", "accuracy", "val_loss", "val_accuracy"]
    keys = [k for k in order if k in logs] + sorted(k for k in logs if k not in order)
    return "  ".join(f"{k} {logs[k]:.4f}" for k in keys)


class RichTrainProgress:
    """Epoch bar + batch bar with live metrics, on ``console`` (stderr by default)."""

    def __init__(self, console: Console | None = None, title: str = "training") -> None:
        self.console = console or Console(stderr=True)
        self.title = title
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            transient=False,
        )
        self._epochs: TaskID | None = None
        self._batches: TaskID | None = None

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        """Show the bars."""
        self._progress.start()
        self._epochs = self._progress.add_task(self.title, total=epochs, metrics="")
        self._batches = self._progress.add_task("epoch 1", total=steps_per_epoch, metrics="")

    def batch_end(self, epoch: int, step: int, logs: Mapping[str, float]) -> None:
        """Advance the batch bar and show the running means."""
        if self._batches is None:
            return
        self._progress.update(
            self._batches,
            completed=step + 1,
            description=f"epoch {epoch + 1}",
            metrics=format_logs(logs),
        )

    def epoch_end(self, epoch: int, logs: Mapping[str, float], improved: bool) -> None:
        """Advance the epoch bar and print the epoch's summary line."""
        if self._epochs is None or self._batches is None:
            return
        mark = " [green]*[/green]" if improved else ""
        self._progress.console.print(f"epoch {epoch + 1}: {format_logs(logs)}{mark}")
        self._progress.update(self._epochs, advance=1, metrics=format_logs(logs))
        self._progress.reset(self._batches, description=f"epoch {epoch + 2}", metrics="")

    def stop(self) -> None:
        """Drop the batch bar and end the live display (also after an error or Ctrl-C)."""
        if self._batches is not None:
            self._progress.remove_task(self._batches)
            self._batches = None
        self._progress.stop()
