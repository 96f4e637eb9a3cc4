"""``ScanConfig``: everything ``batchfrac scan`` was asked to do, checked once at the edge."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..defaults import DEFAULT_LOW_CONFIDENCE, DEFAULT_MODALITIES, DEFAULT_TIMEOUT_S
from ..enums import Backend, Routing


def default_workers() -> int:
    """One decoding process per CPU core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ScanConfig:
    """Everything ``batchfrac scan`` was asked to do."""

    archive: Path
    out: Path
    bundle: Path
    workers: int = field(default_factory=default_workers)
    #: Images per inference batch; ``None``: what suits the backend's device
    #: (:mod:`batchfrac.bundle.device`).
    batch_size: int | None = None
    chunk_size: int = 16
    scheduler: str | None = None
    routing: Routing = Routing.HARD
    modalities: tuple[str, ...] = DEFAULT_MODALITIES
    max_pixels: int | None = None
    csv: bool = False
    low_confidence: float = DEFAULT_LOW_CONFIDENCE
    window: int | None = None
    timeout: float | None = DEFAULT_TIMEOUT_S
    backend: Backend = Backend.AUTO

    def __post_init__(self) -> None:
        checks = {
            "--workers must be >= 0": self.workers >= 0,
            "--batch-size must be >= 1": self.batch_size is None or self.batch_size >= 1,
            "--chunk-size must be >= 1": self.chunk_size >= 1,
            "--max-pixels must be >= 1": self.max_pixels is None or self.max_pixels >= 1,
            "--modalities must name at least one modality": bool(self.modalities),
            "the window must be >= 1": self.window is None or self.window >= 1,
            "low_confidence must be in [0, 1]": 0.0 <= self.low_confidence <= 1.0,
            "--timeout must not be negative": self.timeout is None or self.timeout > 0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))
        object.__setattr__(self, "routing", Routing(self.routing))
        object.__setattr__(self, "backend", Backend(self.backend))
        object.__setattr__(self, "modalities", tuple(self.modalities))

    @property
    def in_flight(self) -> int:
        """Chunks submitted but not yet consumed: enough to keep every worker busy."""
        return self.window or max(2, 2 * max(self.workers, 1))

    @property
    def inference_threads(self) -> int:
        """ONNX Runtime threads on the driver: the cores that this scan's decoding
        processes leave free, at least one (all of them when decoding runs in this
        process, between batches, or on another machine's cluster)."""
        cores = default_workers()
        if self.workers == 0 or self.scheduler:
            return cores
        return max(1, cores - self.workers)

    def arguments(self) -> dict[str, Any]:
        """JSON-ready arguments for ``run.json``."""
        out = dataclasses.asdict(self)
        out.update(
            archive=str(self.archive),
            out=str(self.out),
            bundle=str(self.bundle),
            routing=self.routing.value,
            backend=self.backend.value,
            modalities=list(self.modalities),
        )
        return out
