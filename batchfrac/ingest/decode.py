"""The **decode** stage: the pixel data of one file -> grey frames ready for preprocessing.

:func:`decode` yields one 2-D float32 image in ``[0, 1]`` per frame, in display
orientation (rows top to bottom, columns left to right, as stored: nothing is
flipped) with bone bright, decoding **one frame at a time** and reading only the bytes
that frame needs, so memory is bounded by the frame, not by the file. Before anything
is read, the header's geometry is checked (:func:`check_geometry`): images too small to
score are ``skipped``/``too_small``, and the per-frame, per-file and decoded-byte caps
of :class:`DecodePolicy` make an over-large image ``too_large``.

The parts: :mod:`batchfrac.ingest.sources` reads each frame's bytes (and never the
surplus after the last declared frame, which is flagged instead);
:mod:`batchfrac.ingest.frames` checks a compressed frame's stream header and decodes it
with the plugins of :mod:`batchfrac.ingest.plugins` (fastest first; never one that can
abort the process while another is installed), or at a reduced JPEG 2000 level with
``min_long_side`` (:mod:`batchfrac.ingest.j2k`); :mod:`batchfrac.ingest.display` applies
the display transforms. An image that comes out non-finite is a ``decode_error``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import UID

from ..enums import ImageFlag, Reason
from ..errors import FileRejected
from ..records import DicomHeader
from .display import to_display
from .frames import FrameDecoder
from .image_pixel import ImagePixel
from .plugins import pixel_decoder
from .settings import DecodePolicy, FramePolicy
from .sources import open_pixel_source

__all__ = ["DecodePolicy", "DecodedFrames", "FramePolicy", "check_geometry", "decode"]

#: The limits :func:`decode` applies unless given others.
DEFAULT_POLICY = DecodePolicy()


def check_geometry(header: DicomHeader, policy: DecodePolicy) -> None:
    """Reject, from the header alone, an image too small to score or over a cap.

    Raises ``FileRejected``: ``too_small`` when (0028,0010) *Rows* or (0028,0011)
    *Columns* is under ``policy.min_side``; ``too_large`` past ``max_frame_pixels``,
    ``max_frames`` (of (0028,0008) *Number of Frames*, those decoded) or
    ``max_decoded_bytes`` (with (0028,0101) *Bits Stored* as the sample size; the
    exact check on *Bits Allocated* follows when the file is opened).
    """
    rows, columns = header.rows, header.columns
    if rows < policy.min_side or columns < policy.min_side:
        raise FileRejected(
            Reason.TOO_SMALL,
            f"Rows x Columns = {rows} x {columns}: a side under {policy.min_side} pixels "
            "is too small to score",
        )
    sample_bytes = -(-(header.bits_stored or 8) // 8)
    frames = policy.frames_wanted(header.number_of_frames)
    _check_caps(rows, columns, header.samples_per_pixel, frames, sample_bytes, policy)


def decode(path: Path, header: DicomHeader, policy: DecodePolicy = DEFAULT_POLICY) -> DecodedFrames:
    """Decode the pixel data of ``path`` into 2-D float32 images in ``[0, 1]``, bone bright,
    one frame at a time as the result is iterated (see :class:`DecodedFrames`).

    Per frame, in order: the modality LUT ((0028,3000) *Modality LUT Sequence*, or
    (0028,1053) *Rescale Slope* / (0028,1052) *Rescale Intercept*); the VOI LUT
    ((0028,3010) *VOI LUT Sequence*, or the first (0028,1050) *Window Center* /
    (0028,1051) *Window Width* with (0028,1056) *VOI LUT Function*), or without either
    the modality output range onto ``[0, 1]``; MONOCHROME1 inverted after VOI; RGB,
    YBR_FULL, YBR_FULL_422 and PALETTE COLOR reduced to BT.601 luma. See
    :mod:`batchfrac.ingest.display`. Images are Rows x Columns, except greyscale JPEG
    2000 with ``policy.min_long_side`` set, which may come back smaller.

    ``header`` is the file's :func:`batchfrac.ingest.header.read_header` record. Raised
    here, before the file is opened: ``FileRejected`` ``too_small`` / ``too_large``
    (:func:`check_geometry`), ``unsupported_transfer_syntax`` (no installed plugin
    decodes the syntax; the detail lists each plugin's missing dependency) and
    ``decode_error`` (no transfer syntax). Raised while iterating: ``no_pixel_data``,
    ``truncated`` (less pixel data than the header announces), ``too_large`` (an
    encoded frame larger than its image), ``read_error``, and ``decode_error`` (a
    plugin failed, an attribute is missing or unusable, the image is not finite).
    """
    check_geometry(header, policy)
    if not header.transfer_syntax_uid:
        raise FileRejected(Reason.DECODE_ERROR, "no Transfer Syntax UID and unknown encoding")
    decoder, detail = pixel_decoder(header.transfer_syntax_uid)
    if decoder is None:
        raise FileRejected(Reason.UNSUPPORTED_TRANSFER_SYNTAX, detail)
    return DecodedFrames(path, header, policy, decoder)


class DecodedFrames:
    """The display images of one file's frames, decoded as they are iterated (once).

    ``flags`` holds ``surplus_pixel_data`` once iteration has found native pixel data
    longer than its frames. Use it as a context manager, or iterate it to the end, so
    that the file is closed.
    """

    def __init__(
        self, path: Path, header: DicomHeader, policy: DecodePolicy, decoder: Decoder
    ) -> None:
        self.flags: tuple[str, ...] = ()
        self._path, self._header, self._policy, self._decoder = path, header, policy, decoder
        self._images: Generator[np.ndarray, None, None] | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._images is None:
            self._images = self._generate()
        return self._images

    def close(self) -> None:
        """Close the file (an unfinished iteration stops here)."""
        if self._images is not None:
            self._images.close()

    def __enter__(self) -> DecodedFrames:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _generate(self) -> Generator[np.ndarray, None, None]:
        syntax = UID(self._decoder.UID)
        with open_pixel_source(self._path, self._header.has_preamble, syntax) as source:
            pixel = source.pixel
            wanted = self._policy.frames_wanted(pixel.number_of_frames)
            _check_caps_exactly(pixel, wanted, self._policy)
            if source.surplus > 0:
                self.flags = (ImageFlag.SURPLUS_PIXEL_DATA.value,)
            decode_frame = FrameDecoder(
                self._decoder, pixel, source.where.vr, self._policy.min_long_side
            )
            for index, data in enumerate(source.frames(wanted)):
                stored, photometric = decode_frame(data, index)
                del data
                image = to_display(stored, source.dataset, photometric)
                del stored
                _require_finite(image, index)
                yield image


def _check_caps_exactly(pixel: ImagePixel, frames: int, policy: DecodePolicy) -> None:
    """The caps again, on the validated module (Bits Allocated, not Bits Stored)."""
    sample_bytes = -(-pixel.bits_allocated // 8)
    _check_caps(pixel.rows, pixel.columns, pixel.samples_per_pixel, frames, sample_bytes, policy)


def _check_caps(
    rows: int, columns: int, samples: int, frames: int, sample_bytes: int, policy: DecodePolicy
) -> None:
    frame_pixels = rows * columns * samples
    if frame_pixels > policy.max_frame_pixels:
        raise FileRejected(
            Reason.TOO_LARGE,
            f"Rows x Columns x Samples per Pixel = {rows} x {columns} x {samples} = "
            f"{frame_pixels:,} pixels per frame, over the limit of {policy.max_frame_pixels:,}",
        )
    if frames > policy.max_frames:
        raise FileRejected(
            Reason.TOO_LARGE,
            f"{frames:,} frames to decode, over the limit of {policy.max_frames:,} per file",
        )
    decoded = frame_pixels * frames * sample_bytes
    if decoded > policy.max_decoded_bytes:
        raise FileRejected(
            Reason.TOO_LARGE,
            f"{frames:,} frames of {frame_pixels:,} {sample_bytes}-byte samples decode to "
            f"{decoded:,} bytes, over the limit of {policy.max_decoded_bytes:,}",
        )


def _require_finite(image: np.ndarray, index: int) -> None:
    # One sum is cheaper than an isfinite mask; display output lies in [0, 1], so the
    # sum is not finite only if some value is NaN or infinite.
    if not np.isfinite(image.sum()):
        raise FileRejected(
            Reason.DECODE_ERROR,
            f"frame {index}: the display transforms gave non-finite values "
            "(check (0028,1052-1053) Rescale and (0028,1050-1051) Window)",
        )
