"""Per-file ingest: walk stat -> header -> decode -> preprocess, one file at a time.

This is the unit of work a Dask worker runs (:func:`ingest_chunk` on a chunk of
paths); it imports neither Dask nor Keras. Every file comes back as at least one
:class:`~batchfrac.records.ImageResult`: a rejected file is a ``skipped``/``error``
row with its reason, never an exception, whatever raised it, so one bad file never
stops, hangs or crashes a scan (a codec that aborts the process is kept away by
:mod:`batchfrac.ingest.plugins`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from time import perf_counter

import numpy as np

from ..enums import ImageFlag, Reason, Status
from ..errors import FileRejected
from ..records import DicomHeader, FileStat, ImageResult
from .capture import FATAL, FileLog, captured, describe, format_traceback
from .decode import decode
from .header import check_image, read_header
from .preprocess import PreprocessSpec, preprocess
from .settings import DecodePolicy, FramePolicy, IngestConfig
from .walk import file_stat

__all__ = ["IngestConfig", "ingest_chunk", "ingest_file"]


def ingest_file(path: Path, config: IngestConfig) -> list[ImageResult]:
    """Turn one file into its image rows: one per decoded frame, or one rejection row.

    ``ok`` rows carry ``pixels = preprocess(frame, config.spec)`` (finite), the frame
    index, and ``decode_ms``: the wall time of decoding the file, shared equally between
    its frames, plus that frame's preprocessing (so a file's rows sum to its cost), and
    the ``reduced_resolution`` flag when the frame was decoded smaller than Rows x
    Columns (see :attr:`IngestConfig.decode_policy`). Frames are decoded one at a time;
    when one fails, the file is one rejection row. ``skipped``/``error`` rows carry the
    ``FileRejected`` reason and detail, and the header when it was read. A file that
    cannot even be stat'ed is an ``error``/``read_error`` row with ``size = -1``.

    Never raises, except ``KeyboardInterrupt`` and ``SystemExit``: any other exception
    (``BaseException`` included: a Rust codec's ``PanicException``, ``RecursionError``,
    ``MemoryError``) becomes one ``error`` row, ``read_error`` when it happened before
    the header was parsed and ``decode_error`` after, with ``"<Type>: <message>"`` as
    its detail. The first row's ``log`` holds that exception's traceback and the
    warnings and ``pydicom`` log records of the file (:mod:`batchfrac.ingest.capture`),
    none of which reaches stderr.
    """
    log = FileLog()
    with captured(log):
        rows = _ingest(path, config, log)
    entries = log.entries()
    return [replace(rows[0], log=entries), *rows[1:]] if entries else rows


def ingest_chunk(paths: Sequence[str], config: IngestConfig) -> list[ImageResult]:
    """:func:`ingest_file` over a chunk of paths, rows in path order (one Dask task)."""
    return [result for path in paths for result in ingest_file(Path(path), config)]


def _ingest(path: Path, config: IngestConfig, log: FileLog) -> list[ImageResult]:
    stat, header = FileStat(str(path), -1, 0), None
    try:
        try:
            stat = file_stat(path)
        except OSError as exc:
            return [_rejected(stat, FileRejected(Reason.READ_ERROR, describe(exc)))]
        header = read_header(path)
        check_image(header, config.modalities)
        return _decoded_rows(path, stat, header, config)
    except FileRejected as rejection:
        return [_rejected(stat, rejection, header)]
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - one file's failure, whatever raised it
        log.add(format_traceback(exc))
        reason = Reason.READ_ERROR if header is None else Reason.DECODE_ERROR
        return [_rejected(stat, FileRejected(reason, describe(exc)), header)]


def _decoded_rows(
    path: Path, stat: FileStat, header: DicomHeader, config: IngestConfig
) -> list[ImageResult]:
    """One ``ok`` row per frame, decoded and preprocessed one frame at a time."""
    policy = config.decode_policy
    frames: list[tuple[np.ndarray, bool, float]] = []  # pixels, reduced, preprocess s
    decode_s = 0.0
    with decode(path, header, policy) as images:
        start = perf_counter()
        for image in images:
            decode_s += perf_counter() - start
            start = perf_counter()
            reduced = image.shape[0] < header.rows or image.shape[1] < header.columns
            pixels = _preprocessed(image, config.spec, len(frames))
            frames.append((pixels, reduced, perf_counter() - start))
            start = perf_counter()
        decode_s += perf_counter() - start
    flags = (*_flags(header, policy), *images.flags)
    decode_ms = decode_s * 1000 / max(len(frames), 1)
    return [
        ImageResult(
            file=stat,
            status=Status.OK,
            reason=None,
            header=header,
            frame=index,
            decode_ms=decode_ms + preprocess_s * 1000,
            flags=(*flags, ImageFlag.REDUCED_RESOLUTION.value) if reduced else flags,
            pixels=pixels,
        )
        for index, (pixels, reduced, preprocess_s) in enumerate(frames)
    ]


def _preprocessed(image: np.ndarray, spec: PreprocessSpec, index: int) -> np.ndarray:
    pixels = preprocess(image, spec)
    if not np.isfinite(pixels).all():  # an ok row always holds finite pixels
        raise FileRejected(
            Reason.DECODE_ERROR, f"frame {index}: preprocessing gave non-finite values"
        )
    return pixels


def _rejected(
    stat: FileStat, rejection: FileRejected, header: DicomHeader | None = None
) -> ImageResult:
    flags = _flags(header, None) if header is not None else ()
    return ImageResult(
        file=stat,
        status=rejection.status,
        reason=rejection.reason,
        header=header,
        detail=rejection.detail,
        flags=flags,
    )


def _flags(header: DicomHeader, policy: DecodePolicy | None) -> tuple[str, ...]:
    flags = []
    if not header.has_preamble:
        flags.append(ImageFlag.NO_PREAMBLE.value)
    if policy is not None:
        photometric = (header.photometric_interpretation or "").upper()
        if photometric and not photometric.startswith("MONOCHROME"):
            flags.append(ImageFlag.COLOUR_TO_GREY.value)
        if policy.frames is FramePolicy.FIRST and header.number_of_frames > 1:
            flags.append(ImageFlag.FIRST_FRAME_ONLY.value)
    return tuple(flags)
