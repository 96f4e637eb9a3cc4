"""How long a scan of an archive will take on this machine: ``batchfrac doctor``'s forecast.

:func:`measure` times, on this machine, what a scan's cost is made of: the ingest (header,
decode, preprocessing) of a few sample files of every transfer syntax and size class the
archive holds (:attr:`batchfrac.doctor.DoctorReport.work`), one full inference batch, and
the fixed cost of a scan (the model bundle loaded and its networks built and traced, the
Dask cluster started). :func:`estimate` turns those into the expected wall time; it is pure
arithmetic, tested on its own:

- decoding costs ``sum(files x seconds per file)`` CPU seconds, spread over the workers;
- inference costs ``images x seconds per image`` on the driver, while workers decode;
- both share the machine's cores, so the streaming part lasts at least
  ``(decode + inference) / cores``; with ``--workers 0`` it is their sum;
- the fixed cost comes on top: the longer of building the networks and starting the
  cluster (a scan does both at once), plus :data:`OVERHEAD_S`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..enums import Backend
from .config import inference_threads

if TYPE_CHECKING:
    from ..doctor import DoctorReport

log = logging.getLogger(__name__)

#: Seconds that a scan spends outside the measured parts: the interpreter starting, the
#: walk, the reports (a few hundred ms on the sample archive); small beside the rest.
OVERHEAD_S = 2.0


@dataclass(frozen=True)
class GroupCost:
    """What one transfer syntax and size class costs: measured on its samples."""

    transfer_syntax: str
    size_class: str
    files: int
    images: int
    seconds_per_file: float
    sampled: int


@dataclass(frozen=True)
class Forecast:
    """The expected wall time of a scan and its parts (seconds)."""

    seconds: float
    decode_s: float
    inference_s: float
    fixed_s: float
    decode_cpu_s: float
    images: int
    files: int
    workers: int
    cores: int
    batch_size: int
    backend: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded to the millisecond (``doctor --json``'s ``estimate``)."""
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def estimate(
    groups: list[GroupCost],
    *,
    seconds_per_image: float,
    fixed_s: float,
    workers: int,
    cores: int,
    batch_size: int,
    backend: str = "",
) -> Forecast:
    """The expected wall time of a scan from measured costs (see the module docstring)."""
    decode_cpu = sum(g.files * g.seconds_per_file for g in groups)
    images = sum(g.images for g in groups)
    inference = images * seconds_per_image
    if workers == 0:
        decode_wall = decode_cpu
        streaming = decode_cpu + inference
    else:
        decode_wall = decode_cpu / min(workers, cores)
        streaming = max(decode_wall, inference, (decode_cpu + inference) / cores)
    return Forecast(
        seconds=fixed_s + streaming,
        decode_s=decode_wall,
        inference_s=inference,
        fixed_s=fixed_s,
        decode_cpu_s=decode_cpu,
        images=images,
        files=sum(g.files for g in groups),
        workers=workers,
        cores=cores,
        batch_size=batch_size,
        backend=backend,
    )


def measure(
    report: DoctorReport,
    bundle_path: Path,
    *,
    workers: int,
    batch_size: int | None,
    backend: Backend = Backend.AUTO,
    chunk_size: int = 16,
    cores: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> tuple[Forecast, list[GroupCost]]:
    """Time this machine on ``report``'s samples and one batch of the bundle's networks,
    run as the scan would run them: on ``backend`` (the scan's ``--backend``) with the
    threads it would get next to ``workers``, in batches of ``batch_size`` (``None``:
    the backend's default).

    Only transfer syntaxes an installed plugin decodes are counted (the others are error
    rows at once). ``on_step`` is told what is being measured (progress display).
    """
    say = on_step or (lambda _text: None)
    say("loading the bundle and making its networks")
    started = time.perf_counter()
    predictor, spec, used = _predictor(bundle_path, batch_size, backend, inference_threads(workers))
    predictor.warm_up()
    batch_size = predictor.batch_size
    fixed = time.perf_counter() - started
    say("timing one inference batch")
    seconds_per_image = _time_batch(predictor)
    groups = []
    decodable = {s.uid for s in report.syntaxes if s.decodable}
    for (syntax, size), group in sorted(report.work.items()):
        if syntax not in decodable or not group.samples:
            continue
        say(f"timing {len(group.samples)} file(s): {syntax}, {size}")
        groups.append(
            GroupCost(syntax, size, group.files, group.images,
                      _time_ingest(group.samples, spec), len(group.samples))
        )  # fmt: skip
    if workers > 0:
        # A scan starts no more decoding processes than the archive has chunks, and makes
        # its networks in a thread while its cluster starts: the longer of the two counts.
        started_workers = min(workers, max(1, -(-report.files // chunk_size)))
        say(f"starting a cluster of {started_workers} worker(s)")
        fixed = max(fixed, _time_cluster(started_workers))
    cores = cores or _cores()
    forecast = estimate(groups, seconds_per_image=seconds_per_image, fixed_s=fixed + OVERHEAD_S,
                        workers=workers, cores=cores, batch_size=batch_size,
                        backend=used)  # fmt: skip
    return forecast, groups


def _predictor(
    bundle_path: Path, batch_size: int | None, backend: Backend, threads: int
) -> tuple[Any, Any, str]:
    from .inference import BatchPredictor
    from .run import load_bundle

    bundle = load_bundle(bundle_path)
    chosen = bundle.use_backend(backend, threads=threads)
    predictor = BatchPredictor(bundle, batch_size=batch_size or chosen.batch_size)
    return predictor, bundle.spec, chosen.name


def _time_batch(predictor: Any, repeats: int = 2) -> float:
    """Seconds per image of a full batch, best of ``repeats`` (after the warm-up)."""
    import numpy as np

    size = predictor.image_size
    batch = np.random.default_rng(0).random((predictor.batch_size, size, size, 3), "float32")
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_batch(batch)
        best = min(best, time.perf_counter() - started)
    return best / predictor.batch_size


def _time_ingest(samples: list[str], spec: Any) -> float:
    """Mean seconds of ``ingest_file`` (header, decode, preprocessing) per sample file."""
    from ..ingest.entry import IngestConfig, ingest_file

    config = IngestConfig(spec=spec)
    started = time.perf_counter()
    for path in samples:
        ingest_file(Path(path), config)
    return (time.perf_counter() - started) / len(samples)


def _time_cluster(workers: int) -> float:
    """Seconds a scan's own LocalCluster of ``workers`` processes costs beside the work:
    starting it (and its fork server), each worker's first task, and closing it."""
    from .cluster import connect

    started = time.perf_counter()
    with connect(workers, None) as client:
        client.gather(client.map(_import_ingest, range(workers), pure=False))
    return time.perf_counter() - started


def _import_ingest(_index: int) -> None:
    """A worker's first task: the imports every decoding task needs."""
    import batchfrac.ingest.entry  # noqa: F401


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def format_seconds(seconds: float) -> str:
    """``"1 h 02 min"``, ``"3 min 05 s"`` or ``"42 s"``."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def parts_table(forecast: Forecast, groups: list[GroupCost]) -> Mapping[str, Any]:
    """The forecast with its measured groups, for ``doctor --json``."""
    return {
        **forecast.as_dict(),
        "groups": [{**asdict(g), "seconds_per_file": round(g.seconds_per_file, 4)} for g in groups],
    }
