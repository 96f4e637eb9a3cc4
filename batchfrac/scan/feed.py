"""Feeding finished chunks to batched inference, and writing each chunk's part file.

The ok images of every finished chunk go into one :class:`~batchfrac.scan.inference.BatchQueue`,
so the trunk always sees full batches whatever the chunk sizes; a chunk's part file is
written as soon as its last image has been predicted, and pixels are dropped as soon as
their batch has run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..defaults import DEFAULT_LOW_CONFIDENCE
from ..enums import Status
from ..records import ImageResult, Prediction
from ..report.rows import ImageRow, image_row
from .chunks import NullObserver, ScanObserver
from .inference import BatchPredictor, BatchQueue
from .pictures import Pictures

log = logging.getLogger(__name__)


@dataclass
class _Chunk:
    results: list[ImageResult]
    predictions: list[Prediction | None]
    outstanding: int


class ChunkInference:
    """Feeds the ok images of finished chunks into fixed-size batches and writes parts.

    A chunk's part file is written as soon as its last image has been predicted; the
    final batch is run by :meth:`finish`.

    It also measures how long inference sat idle waiting for decoded images: from
    :meth:`ready` (the networks are built) on, the time between one :meth:`add`
    returning and the next one starting (or :meth:`finish`) is idle time.
    """

    def __init__(
        self,
        predictor: BatchPredictor,
        write_part: Callable[[list[ImageRow]], object],
        *,
        low_confidence: float = DEFAULT_LOW_CONFIDENCE,
        observer: ScanObserver | None = None,
        pictures: Pictures | None = None,
    ) -> None:
        self.queue: BatchQueue[tuple[int, int]] = BatchQueue(predictor)
        self.write_part = write_part
        self.low_confidence = low_confidence
        self.observer = observer or NullObserver()
        self.pictures = pictures
        self._chunks: dict[int, _Chunk] = {}
        self._next_id = 0
        self.files = 0
        self.decode_ms = 0.0
        self.idle_s = 0.0
        self._ready_at: float | None = None
        self._idle_since: float | None = None
        self._finished_at: float | None = None

    def ready(self) -> None:
        """The networks are ready: from now on, time without images is idle time.

        Safe to call from the thread that built the networks; only the first call counts.
        """
        if self._ready_at is None:
            self._ready_at = self._idle_since = time.perf_counter()

    @property
    def idle_share(self) -> float | None:
        """Idle share of the inference phase (ready to finish), ``None`` before then."""
        if self._ready_at is None or self._finished_at is None:
            return None
        phase = self._finished_at - self._ready_at
        return min(1.0, self.idle_s / phase) if phase > 0 else None

    def _idle_ends(self) -> None:
        if self._idle_since is not None:
            self.idle_s += max(0.0, time.perf_counter() - self._idle_since)
            self._idle_since = None

    def add(self, paths: Sequence[str], results: list[ImageResult]) -> None:
        """Take one chunk's ingest results (``>= 1`` per path)."""
        self._idle_ends()
        chunk_id, self._next_id = self._next_id, self._next_id + 1
        self.files += len(paths)
        self.decode_ms += sum(result.decode_ms for result in results)
        chunk = _Chunk(list(results), [None] * len(results), 0)
        self._chunks[chunk_id] = chunk
        ready: list[tuple[tuple[int, int], Prediction]] = []
        for index, result in enumerate(results):
            for entry in result.log:  # the file's warnings and tracebacks, for scan.log
                log.warning("%s: %s", result.file.path, entry)
            if result.status is not Status.OK:
                continue
            if result.pixels is None:
                raise ValueError(f"ok ingest result without pixels: {result.file.path}")
            chunk.outstanding += 1
            if self.pictures is not None:
                self.pictures.hold((chunk_id, index), result)
            ready += self.queue.put((chunk_id, index), result.pixels)
            chunk.results[index] = dataclasses.replace(result, pixels=None)  # free it now
        self._complete(ready)
        if chunk.outstanding == 0 and chunk_id in self._chunks:
            self._write(chunk_id)
        if self._ready_at is not None:
            self._idle_since = time.perf_counter()

    def finish(self) -> None:
        """Run the last batch and write every remaining chunk."""
        self._idle_ends()
        self._complete(self.queue.flush())
        self._finished_at = time.perf_counter()
        if self._chunks:
            raise RuntimeError(f"{len(self._chunks)} chunks still waiting after the last batch")

    def _complete(self, ready: list[tuple[tuple[int, int], Prediction]]) -> None:
        for (chunk_id, index), prediction in ready:
            chunk = self._chunks[chunk_id]
            chunk.predictions[index] = prediction
            if self.pictures is not None:
                self.pictures.predicted((chunk_id, index), prediction)
            chunk.outstanding -= 1
            if chunk.outstanding == 0:
                self._write(chunk_id)

    def _write(self, chunk_id: int) -> None:
        chunk = self._chunks.pop(chunk_id)
        rows = [
            image_row(r, p, low_confidence=self.low_confidence)
            for r, p in zip(chunk.results, chunk.predictions, strict=True)
        ]
        if self.pictures is not None:
            rows = [
                dataclasses.replace(row, thumbnail=self.pictures.thumbnail((chunk_id, index)))
                for index, row in enumerate(rows)
            ]
        self.write_part(rows)
        self.observer.chunk_written(rows)


def warm_up(predictor: BatchPredictor, inference: ChunkInference) -> Callable[[], None]:
    def work() -> None:
        predictor.warm_up()
        inference.ready()

    return work


class Background:
    """Runs ``work`` in a daemon thread; :meth:`join` waits and re-raises its exception."""

    def __init__(self, work: Callable[[], None] | None) -> None:
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if work is not None:
            self._thread = threading.Thread(
                target=self._run, args=(work,), name="batchfrac-warm-up", daemon=True
            )
            self._thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the joining thread
            self._error = exc

    def join(self) -> None:
        """Wait for the work to finish (at once if it has); raise what it raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
