"""Pixels of labelled samples, for training and evaluation alike.

Every image reaches the network through the scanner's own preprocessing
(:func:`batchfrac.ingest.preprocess.preprocess` with the bundle's spec), so training,
evaluation and scanning see identical inputs: MURA PNGs are read as 2-D greyscale in
[0, 1] and preprocessed; DICOM files go through :func:`batchfrac.ingest.entry.ingest_file`
(decode + VOI + MONOCHROME1 inversion + preprocess), exactly as ``batchfrac scan`` does.
Data sets are small next to an archive, so preprocessed images are kept in memory up to a
byte budget (:class:`ImageLoader`). No Keras here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ..ingest.preprocess import PreprocessSpec, preprocess
from ..records import ImageResult
from .archive import Fetch, read_labeled_archive
from .mura import read_mura
from .samples import Dataset, DatasetError, Sample


def load_labelled(data: Path, labels: Path | None, split: str, loader: ImageLoader) -> Dataset:
    """A MURA split (``labels`` None) or a labelled DICOM archive (decoded into ``loader``)."""
    if labels is None:
        return read_mura(data, split)
    return read_labeled_archive(data, labels, ingest_fetcher(loader.spec), keep=loader.remember)


DEFAULT_CACHE_BYTES = 2 << 30


def read_greyscale(path: Path) -> np.ndarray:
    """Read a PNG/JPEG radiograph as a 2-D float32 image in [0, 1] (8 or 16 bit, grey
    or colour; colour is converted to grey)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DatasetError(f"cannot read image {path}")
    if raw.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if raw.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        raw = cv2.cvtColor(raw, code)
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / 255.0
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) / 65535.0
    raise DatasetError(f"unsupported pixel type {raw.dtype} in {path}")


def ingest_fetcher(spec: PreprocessSpec) -> Fetch:
    """A ``Fetch`` (see :mod:`.labelled_archive`) that decodes DICOM files like the scanner."""
    from ..ingest.entry import IngestConfig, ingest_file

    config = IngestConfig(spec=spec)

    def fetch(path: Path) -> list[ImageResult]:
        return list(ingest_file(path, config))

    return fetch


class ImageLoader:
    """Preprocessed model inputs of :class:`Sample`\\ s, cached up to ``cache_bytes``.

    :meth:`load_many` reads and preprocesses a batch with ``workers`` threads (OpenCV and
    numpy release the GIL), so the accelerator is not kept waiting on PNG decoding.
    """

    def __init__(
        self,
        spec: PreprocessSpec,
        fetch: Fetch | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        workers: int | None = None,
    ) -> None:
        self.spec = spec
        self._fetch = fetch
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._budget = cache_bytes
        self._lock = threading.Lock()
        self.workers = workers or min(8, os.cpu_count() or 1)

    def remember(self, sample: Sample, pixels: np.ndarray) -> None:
        """Cache already-preprocessed pixels of ``sample`` (while the budget lasts)."""
        key = (sample.path, sample.frame)
        with self._lock:
            if key not in self._cache and pixels.nbytes <= self._budget:
                self._cache[key] = np.asarray(pixels, dtype=np.float32)
                self._budget -= pixels.nbytes

    def load(self, sample: Sample) -> np.ndarray:
        """The ``(S, S, 3)`` float32 model input of one sample."""
        cached = self._cache.get((sample.path, sample.frame))
        if cached is not None:
            return cached
        if self._fetch is None:
            pixels = preprocess(read_greyscale(Path(sample.path)), self.spec)
        else:
            pixels = self._fetch_frame(sample)
        self.remember(sample, pixels)
        return pixels

    def load_many(self, samples: Sequence[Sample]) -> np.ndarray:
        """``(N, S, S, 3)`` float32 inputs of ``samples``, in order."""
        size = self.spec.image_size
        out = np.empty((len(samples), size, size, 3), dtype=np.float32)
        if self.workers < 2 or len(samples) < 2:
            for i, sample in enumerate(samples):
                out[i] = self.load(sample)
            return out
        with ThreadPoolExecutor(min(self.workers, len(samples))) as pool:
            for i, pixels in enumerate(pool.map(self.load, samples)):
                out[i] = pixels
        return out

    def _fetch_frame(self, sample: Sample) -> np.ndarray:
        assert self._fetch is not None
        for result in self._fetch(Path(sample.path)):
            if result.frame == sample.frame and result.pixels is not None:
                return result.pixels
        raise DatasetError(f"{sample.rel} (frame {sample.frame}) can no longer be decoded")
