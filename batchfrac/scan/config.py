"""``ScanConfig``: everything ``batchfrac scan`` was asked to do, checked once at the edge."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..defaults import (
    DEFAULT_HEATMAPS_MAX,
    DEFAULT_LOW_CONFIDENCE,
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MODALITIES,
    DEFAULT_TIMEOUT_S,
)
from ..enums import Backend, InferOn, Routing


def inference_threads(local_workers: int) -> int:
    """ONNX Runtime threads on the driver next to ``local_workers`` decoding processes on
    this machine (see :attr:`ScanConfig.inference_threads`)."""
    return max(1, default_workers() - local_workers)


def default_workers() -> int:
    """One decoding process per CPU core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: A Dask scheduler address: ``[protocol://]host:port`` (IPv6 hosts in brackets).
_SCHEDULER_ADDRESS = re.compile(
    r"^(?:(?:tcp|tls|ucx|ws|wss)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r":(?P<port>[0-9]{1,5})$"
)


def valid_scheduler_address(address: str) -> bool:
    """Whether ``address`` names a Dask scheduler (``tcp://host:8786``, ``host:8786``,
    ``tls://[::1]:8786``); checked before anything starts, so a typo is a clear error."""
    match = _SCHEDULER_ADDRESS.match(address.strip())
    return match is not None and 1 <= int(match["port"]) <= 65535


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
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    csv: bool = False
    low_confidence: float = DEFAULT_LOW_CONFIDENCE
    window: int | None = None
    timeout: float | None = DEFAULT_TIMEOUT_S
    retry_errors: bool = False
    previous: Path | None = None
    previous_errors: bool = False
    pseudonymize_key_file: Path | None = None
    """Key file for keyed pseudonyms of identifiers and paths (its path is recorded in
    ``run.json``, the key itself never)."""
    backend: Backend = Backend.AUTO
    #: At most this many Grad-CAM heatmaps per run (0: none), abnormal images first.
    heatmaps_max: int = DEFAULT_HEATMAPS_MAX
    #: Heatmaps also for the N images scored normal closest to their bone's threshold.
    heatmaps_uncertain: int = 0
    #: Where the networks run: this process, or the ``--scheduler`` cluster's workers.
    infer_on: InferOn = InferOn.DRIVER

    def __post_init__(self) -> None:
        checks = {
            "--workers must be >= 0": self.workers >= 0,
            "--batch-size must be >= 1": self.batch_size is None or self.batch_size >= 1,
            "--chunk-size must be >= 1": self.chunk_size >= 1,
            "--heatmaps-max must be >= 0": self.heatmaps_max >= 0,
            "--heatmaps-uncertain must be >= 0": self.heatmaps_uncertain >= 0,
            "--max-frame-pixels must be >= 1": self.max_frame_pixels >= 1,
            "--max-frames must be >= 1": self.max_frames >= 1,
            "--max-decoded-mb must be >= 1": self.max_decoded_bytes >= 1 << 20,
            "--modalities must name at least one modality": bool(self.modalities),
            "the window must be >= 1": self.window is None or self.window >= 1,
            "low_confidence must be in [0, 1]": 0.0 <= self.low_confidence <= 1.0,
            "--timeout must not be negative": self.timeout is None or self.timeout > 0,
            f"--scheduler {self.scheduler!r} is not a Dask scheduler address such as "
            "tcp://host:8786": self.scheduler is None or valid_scheduler_address(self.scheduler),
            "--infer-on workers needs --scheduler (the workers of an existing Dask "
            "cluster)": InferOn(self.infer_on) is InferOn.DRIVER or self.scheduler is not None,
            "--previous must be another night's folder, not --out (a rerun on the same --out "
            "resumes by itself)": self.previous is None
            or os.path.realpath(self.previous) != os.path.realpath(self.out),
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))
        object.__setattr__(self, "routing", Routing(self.routing))
        object.__setattr__(self, "backend", Backend(self.backend))
        object.__setattr__(self, "infer_on", InferOn(self.infer_on))
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
        return inference_threads(self.local_workers)

    @property
    def local_workers(self) -> int:
        """Decoding processes this scan may start on this machine (fewer for a small
        archive): none with ``--scheduler`` (the cluster's workers decode) or
        ``--workers 0`` (this process decodes)."""
        return 0 if self.scheduler else self.workers

    def arguments(self) -> dict[str, Any]:
        """JSON-ready arguments for ``run.json``."""
        out = dataclasses.asdict(self)
        out.update(
            archive=str(self.archive),
            out=str(self.out),
            bundle=str(self.bundle),
            previous=str(self.previous) if self.previous is not None else None,
            routing=self.routing.value,
            backend=self.backend.value,
            infer_on=self.infer_on.value,
            modalities=list(self.modalities),
            pseudonymize_key_file=(
                None if self.pseudonymize_key_file is None else str(self.pseudonymize_key_file)
            ),
        )
        return out
