"""Deflated data sets (*Deflated Explicit VR Little Endian*, 1.2.840.10008.1.2.1.99,
PS3.5 A.5) read as a stream, never whole in memory.

``dcmread`` inflates such a data set whole (``zlib.decompress(fp.read())``): a 1.5 MB
file can hold 1.5 GB of zeros. :class:`InflatingReader` is a read-only file object over
the inflated bytes that inflates only as far as it is read, keeping a small window
behind its position, since pydicom seeks back a few bytes at most (a peeked tag, an
element header at ``stop_when``); a forward seek inflates and discards. With values
larger than ``defer_size`` skipped (:func:`read_deflated_header`), reading a header
costs the values it keeps, and reading pixel data costs one frame at a time
(:mod:`batchfrac.ingest.sources`); a data set that inflates past ``limit`` stops with
:class:`~batchfrac.ingest.bounded_io.InflateLimitExceeded`.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from .bounded_io import (
    DEFAULT_DEFER_SIZE,
    DeflatedStreamError,
    InflateLimitExceeded,
    read_file_meta,
    stop_at_pixel_data,
)

__all__ = ["DEFAULT_INFLATE_LIMIT", "InflatingReader", "is_deflated", "read_deflated_header"]

#: Inflated bytes a deflated file may hold in all: a bound on the time spent inflating
#: (a 1,000:1 zero bomb reaches it in a few seconds), far above any radiograph's size.
DEFAULT_INFLATE_LIMIT = 4 << 30
_WINDOW = 1 << 16  # inflated bytes kept behind the position, for pydicom's small rewinds
_CHUNK = 1 << 20  # compressed bytes read, and inflated bytes produced, per step


class InflatingReader:
    """Read-only file object over the raw deflate stream (RFC 1951) that ``src`` holds
    from its current position; offsets count inflated bytes from 0.

    Raises :class:`DeflatedStreamError` for a corrupt stream or one that ends early,
    :class:`InflateLimitExceeded` past ``limit`` inflated bytes, and ``OSError`` for a
    seek back beyond the window kept.
    """

    def __init__(self, src: BinaryIO, *, limit: int = DEFAULT_INFLATE_LIMIT) -> None:
        self._src = src
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buffer = bytearray()
        self._start = 0  # offset of self._buffer[0]
        self._position = 0
        self._limit = limit

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence not in (0, 1):
            raise OSError("a deflated stream cannot seek from its end")
        target = offset + (self._position if whence == 1 else 0)
        if target < self._start:
            raise OSError(f"cannot seek back to byte {target:,} of a deflated stream")
        self._position = target
        return target

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` inflated bytes (all that remain when negative), fewer at the end."""
        end = self._limit + 1 if size is None or size < 0 else self._position + size
        self._fill(end)
        begin = self._position - self._start
        data = bytes(self._buffer[begin : begin + max(end - self._position, 0)])
        self._position += len(data)
        self._discard_before(self._position - _WINDOW)
        return data

    def close(self) -> None:
        self._buffer = bytearray()

    @property
    def _end(self) -> int:
        return self._start + len(self._buffer)

    def _fill(self, end: int) -> None:
        """Inflate until the buffer reaches ``end`` or the stream ends, keeping only the
        window before the position (or before ``end``, on the way past a skipped value)."""
        keep_from = min(self._position, end) - _WINDOW
        while self._end < end and not self._inflater.eof:
            data = self._inflater.unconsumed_tail or self._src.read(_CHUNK)
            if not data:
                raise DeflatedStreamError(
                    f"the deflated stream ends after {self._end:,} inflated bytes"
                )
            try:
                self._buffer += self._inflater.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise DeflatedStreamError(f"corrupt deflated stream: {exc}") from exc
            if self._end > self._limit:
                raise InflateLimitExceeded(self._limit)
            self._discard_before(keep_from)

    def _discard_before(self, offset: int) -> None:
        drop = min(offset - self._start, len(self._buffer))
        if drop > 0:
            del self._buffer[:drop]
            self._start += drop


def is_deflated(fp: BinaryIO, *, force: bool) -> bool:
    """Whether the file at ``fp`` (position 0) declares the deflated transfer syntax in
    its File Meta Information; ``fp`` is left at position 0."""
    try:
        return read_file_meta(fp, force=force).get("TransferSyntaxUID") == (
            DeflatedExplicitVRLittleEndian
        )
    finally:
        fp.seek(0)


def read_deflated_header(
    fp: BinaryIO,
    *,
    force: bool = False,
    defer_size: int = DEFAULT_DEFER_SIZE,
    limit: int = DEFAULT_INFLATE_LIMIT,
) -> tuple[Dataset, InflatingReader]:
    """The data set of a deflated file up to its pixel data (values over ``defer_size``
    skipped: they read as ``None``), and the stream left at the pixel data element
    (or at its end). ``fp`` is at position 0; File Meta Information is never deflated
    (PS3.10 7.1)."""
    meta = read_file_meta(fp, force=force)
    stream = InflatingReader(fp, limit=limit)
    ds = read_dataset(
        stream,  # type: ignore[arg-type]  # read/seek/tell are all pydicom calls
        is_implicit_VR=False,
        is_little_endian=True,
        stop_when=stop_at_pixel_data,
        defer_size=defer_size,
    )
    ds.file_meta = meta
    ds.set_original_encoding(False, True)
    return ds, stream
