"""Pixels for training and evaluation: image loading and Keras batches.

Every image reaches the network through the scanner's own preprocessing
(:func:`batchfrac.ingest.preprocess.preprocess` with the bundle's spec), so training and
scanning see identical inputs: MURA PNGs are read as 2-D greyscale in [0, 1] and
preprocessed; DICOM files go through :func:`batchfrac.ingest.entry.ingest_file` (decode + VOI
+ MONOCHROME1 inversion + preprocess), exactly as ``batchfrac scan`` does.

Data sets are small next to an archive, so preprocessed images are kept in memory up to
a byte budget (:class:`ImageLoader`) and served as numpy batches by
:class:`ImageBatches`, a :class:`keras.utils.PyDataset`.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import keras
import numpy as np

from ..datasets.archive import Fetch
from ..datasets.samples import DatasetError, Sample
from ..ingest.preprocess import PreprocessSpec, preprocess
from ..records import ImageResult
from .augment import RadiographAugment

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


def balanced_class_weight(targets: np.ndarray, n_classes: int) -> dict[int, float]:
    """``n / (k * n_c)`` per class present (scikit-learn's "balanced"); absent classes 1.0."""
    counts = np.bincount(targets, minlength=n_classes)
    present = int((counts > 0).sum())
    return {
        c: float(targets.size / (present * counts[c])) if counts[c] else 1.0
        for c in range(n_classes)
    }


class ImageBatches(keras.utils.PyDataset):
    """``(images, one-hot targets, sample weights)`` batches of a list of samples.

    With ``augment`` set, each image is augmented with a generator seeded by
    ``(seed, epoch, batch index)``, so a run is reproducible whatever the loading
    order. ``shuffle`` reorders the samples after each epoch (:meth:`on_epoch_end`).
    ``full_batches`` tops the last batch up with samples from the start of the epoch's
    order, so every batch has the same size and a compiled train step is traced once.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        targets: np.ndarray,
        n_classes: int,
        loader: ImageLoader,
        batch_size: int,
        *,
        augment: RadiographAugment | None = None,
        class_weight: dict[int, float] | None = None,
        shuffle: bool = False,
        full_batches: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(samples) != len(targets):
            raise ValueError("samples and targets differ in length")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.samples = tuple(samples)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.n_classes = n_classes
        self.loader = loader
        self.batch_size = batch_size
        self.augment = augment
        self.class_weight = class_weight
        self.shuffle = shuffle
        self.full_batches = full_batches
        self.seed = seed
        self.epoch = 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.samples))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.samples))

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.batch_size
        stop = start + self.batch_size
        if self.full_batches and len(self._order) >= self.batch_size:
            picks = np.take(self._order, np.arange(start, stop), mode="wrap")
        else:
            picks = self._order[start:stop]
        images = self.loader.load_many([self.samples[i] for i in picks])
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            images = self.augment.batch(images, rng)
        targets = self.targets[picks]
        onehot = keras.utils.to_categorical(targets, self.n_classes).astype(np.float32)
        if self.class_weight is None:
            weights = np.ones(len(picks), dtype=np.float32)
        else:
            weights = np.array([self.class_weight[int(t)] for t in targets], dtype=np.float32)
        return images, onehot, weights

    def on_epoch_end(self) -> None:
        """Advance the epoch counter (new augmentation draws) and reshuffle."""
        self.epoch += 1
        self._order = self._permutation()
