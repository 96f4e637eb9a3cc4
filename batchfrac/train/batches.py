"""Keras batches for training: :class:`ImageBatches`, a :class:`keras.utils.PyDataset` of
augmented, class-weighted batches, and the balanced class weights.

Pixels come from :class:`batchfrac.datasets.loader.ImageLoader`, which runs the scanner's
own decoding and preprocessing (no train/serve skew).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

from ..datasets.loader import ImageLoader
from ..datasets.samples import Sample
from .augment import RadiographAugment


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
