"""What a scan's driver hands its decoding workers: the settings (:class:`IngestConfig`,
with its :class:`DecodePolicy`) and the task (:func:`ingest_task`).

Nothing here imports pydicom or a codec, so a scan's driver, which only sends these,
never loads them; the workers do, on their first file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from ..defaults import (
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MIN_SIDE,
    DEFAULT_MODALITIES,
)
from ..records import ImageResult
from .preprocess import PreprocessSpec

__all__ = ["DecodePolicy", "FramePolicy", "IngestConfig", "ingest_task"]


class FramePolicy(str, Enum):
    """Which frames of a multi-frame image are decoded.

    Every decoded frame becomes its own image row (``ImageResult.frame`` is its
    0-based index). ``all``: every frame; ``first``: frame 0 only (cheaper on
    archives that store cine-like multi-frame radiographs).
    """

    ALL = "all"
    FIRST = "first"


@dataclass(frozen=True)
class DecodePolicy:
    """Limits and choices for :func:`batchfrac.ingest.decode.decode`.

    The caps are checked from the header before any pixel data is read, because a
    codec allocates its whole output up front: one hostile or broken header (65535 x
    65535 x 1000 frames) must not exhaust a worker's memory.

    - ``max_frame_pixels``: Rows x Columns x Samples per Pixel of one frame;
    - ``max_frames``: frames decoded from one file (those ``frames`` asks for);
    - ``max_decoded_bytes``: the stored values of those frames together (Bits
      Allocated rounded up to whole bytes);
    - ``min_side``: a Rows or Columns under this is too small to score (``too_small``,
      skipped): 1 x 1 or 8 x 8 "radiographs" are not images the models can read;
    - ``frames``: a :class:`FramePolicy` value;
    - ``min_long_side``: decoders may return a smaller image whose long side is still
      at least this many pixels (``None``: always full resolution). Only JPEG 2000 and
      HTJ2K greyscale frames use it, by dropping wavelet levels
      (:mod:`batchfrac.ingest.j2k`). Set it to the size preprocessing shrinks to
      anyway, so no detail it keeps is lost.
    """

    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    min_side: int = DEFAULT_MIN_SIDE
    frames: str = FramePolicy.ALL
    min_long_side: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_frame_pixels", "max_frames", "max_decoded_bytes", "min_side"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.min_long_side is not None and self.min_long_side <= 0:
            raise ValueError(f"min_long_side must be positive, got {self.min_long_side}")
        try:
            frames = FramePolicy(self.frames)
        except ValueError:
            choices = ", ".join(policy.value for policy in FramePolicy)
            raise ValueError(f"frames must be one of {choices}, got {self.frames!r}") from None
        object.__setattr__(self, "frames", frames)

    def frames_wanted(self, number_of_frames: int) -> int:
        """How many of a file's frames are decoded."""
        return number_of_frames if self.frames is FramePolicy.ALL else min(number_of_frames, 1)


@dataclass(frozen=True)
class IngestConfig:
    """Everything a worker needs to turn a path into image rows (picklable, immutable).

    ``reduce_resolution``: let the decoder return images whose long side is still at
    least ``spec.working_size`` (``decode.min_long_side``, unless that is set
    explicitly), since preprocessing shrinks to that size first anyway. JPEG 2000
    then skips its finest wavelet levels, several times faster on radiographs;
    ``False`` always decodes at full resolution.
    """

    modalities: tuple[str, ...] = DEFAULT_MODALITIES
    decode: DecodePolicy = field(default_factory=DecodePolicy)
    spec: PreprocessSpec = field(default_factory=PreprocessSpec)
    reduce_resolution: bool = True

    @property
    def decode_policy(self) -> DecodePolicy:
        """The policy :func:`batchfrac.ingest.entry.ingest_file` decodes with (``decode``
        plus the reduction)."""
        if not self.reduce_resolution or self.decode.min_long_side is not None:
            return self.decode
        return replace(self.decode, min_long_side=self.spec.working_size)


def ingest_task(paths: Sequence[str], config: IngestConfig) -> list[ImageResult]:
    """:func:`batchfrac.ingest.entry.ingest_chunk`, imported where it runs: the Dask task
    a scan submits (and its in-process loop with ``--workers 0``)."""
    from .entry import ingest_chunk

    return ingest_chunk(paths, config)
