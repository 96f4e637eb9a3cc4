"""The training loop: epochs of ``train_on_batch``, validation, best-weights restore,
early stopping.

Two ways to take a step (:class:`HeadSteps`, :class:`FullSteps`):

- **transfer** (the paper's recipe, every bone head): the trunk is frozen, so each batch
  of augmented images goes once through the trunk in inference mode and only the head
  trains on the trunk's two feature tensors. Validation images are not augmented, so their
  trunk features are computed once and kept (up to a byte budget).
- **end to end** (the first head of a bundle without ImageNet weights): the whole
  EfficientNet-B0 trains; its trunk then becomes the bundle's shared frozen trunk.

Keras is used only through ``train_on_batch``/``predict_on_batch``/``get_weights``, so any
Keras backend works. Nothing is written anywhere: the caller saves the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import keras
import numpy as np
from sklearn.metrics import accuracy_score, log_loss

from ..bundle.padding import pad_batch
from ..errors import BatchfracError
from .batches import ImageBatches

DEFAULT_FEATURE_CACHE_BYTES = 2 << 30


class TrainingError(BatchfracError):
    """Training produced no usable model (e.g. the validation loss was never finite)."""


class TrainObserver(Protocol):
    """Receives progress (e.g. a rich progress display); all methods are notifications."""

    def start(self, epochs: int, steps_per_epoch: int) -> None: ...

    def batch_end(self, epoch: int, step: int, logs: Mapping[str, float]) -> None: ...

    def epoch_end(self, epoch: int, logs: Mapping[str, float], improved: bool) -> None: ...

    def stop(self) -> None: ...


class NullObserver:
    """An observer that ignores everything."""

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        """Ignore."""

    def batch_end(self, epoch: int, step: int, logs: Mapping[str, float]) -> None:
        """Ignore."""

    def epoch_end(self, epoch: int, logs: Mapping[str, float], improved: bool) -> None:
        """Ignore."""

    def stop(self) -> None:
        """Ignore."""


class Steps(Protocol):
    """One way of training: a step on a batch, predictions, and the weights to keep."""

    def train(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, float]: ...

    def predict(self, batches: ImageBatches) -> np.ndarray: ...

    def get_weights(self) -> list[np.ndarray]: ...

    def set_weights(self, weights: list[np.ndarray]) -> None: ...

    def validation_loss(self, val: ImageBatches, probs: np.ndarray) -> float: ...


def categorical_loss(val: ImageBatches, probs: np.ndarray) -> float:
    """Unweighted categorical cross-entropy of ``probs`` against ``val``'s targets."""
    return float(log_loss(val.targets, probs, labels=range(val.n_classes)))


def _step(model: keras.Model, x: object, y: np.ndarray, w: np.ndarray) -> dict[str, float]:
    model.reset_metrics()  # per-batch values; the loop averages them over the epoch
    logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
    return {k: float(v) for k, v in logs.items()}


class HeadSteps:
    """Transfer learning: frozen trunk in inference mode, only ``head`` trains."""

    def __init__(
        self,
        trunk: keras.Model,
        head: keras.Model,
        feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
    ) -> None:
        self.trunk = trunk
        self.head = head
        self._budget = feature_cache_bytes
        self._features: dict[int, list[np.ndarray]] = {}

    def _trunk(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(f) for f in self.trunk.predict_on_batch(x)]

    def train(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, float]:
        """Trunk features of the (augmented) batch, then one step of the head."""
        return _step(self.head, self._trunk(x), y, w)

    def predict(self, batches: ImageBatches) -> np.ndarray:
        """Head probabilities of every sample of ``batches`` (not shuffled, not augmented);
        trunk features are computed once per batch index and cached while the budget lasts."""
        out = []
        for index in range(len(batches)):
            features = self._features.get(index)
            if features is None:
                images = batches[index][0]
                features = self._trunk(pad_batch(images, batches.batch_size))
                size = sum(f.nbytes for f in features)
                if size <= self._budget:
                    self._features[index] = features
                    self._budget -= size
            out.append(np.asarray(self.head.predict_on_batch(features)))
        return np.concatenate(out)[: len(batches.samples)]

    def get_weights(self) -> list[np.ndarray]:
        """The head's weights (the trunk never changes)."""
        return [np.array(w, copy=True) for w in self.head.get_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Restore the head's weights."""
        self.head.set_weights(weights)

    def validation_loss(self, val: ImageBatches, probs: np.ndarray) -> float:
        """The head's cross-entropy on ``val``."""
        return categorical_loss(val, probs)


class FullSteps:
    """End to end: the whole network (trunk and head, shared in place) trains."""

    def __init__(self, full: keras.Model) -> None:
        self.full = full

    def train(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, float]:
        """One step of the full network."""
        return _step(self.full, x, y, w)

    def outputs(self, batches: ImageBatches) -> np.ndarray:
        """The network's output for every sample of ``batches`` (not augmented), in order."""
        size = batches.batch_size
        out = [
            np.asarray(self.full.predict_on_batch(pad_batch(batches[i][0], size)))
            for i in range(len(batches))
        ]
        return np.concatenate(out)[: len(batches.samples)]

    def predict(self, batches: ImageBatches) -> np.ndarray:
        """Probabilities of every sample of ``batches``."""
        return self.outputs(batches)

    def get_weights(self) -> list[np.ndarray]:
        """All weights (the trunk's included)."""
        return [np.array(w, copy=True) for w in self.full.get_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Restore all weights."""
        self.full.set_weights(weights)

    def validation_loss(self, val: ImageBatches, probs: np.ndarray) -> float:
        """The network's cross-entropy on ``val``."""
        return categorical_loss(val, probs)


@dataclass(frozen=True)
class FitResult:
    """What the loop did: per-epoch logs, the epoch whose weights were kept, the time."""

    history: tuple[dict[str, float], ...]
    best_epoch: int
    stopped_early: bool
    seconds: float
    val_probs: np.ndarray = field(repr=False)

    @property
    def epochs_run(self) -> int:
        """Number of epochs completed."""
        return len(self.history)


def _prefetched(batches: ImageBatches) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batches in order, loading batch i+1 in a thread while batch i trains (OpenCV and
    numpy release the GIL)."""
    if len(batches) == 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchfrac-load") as pool:
        pending: Future[tuple[np.ndarray, np.ndarray, np.ndarray]] = pool.submit(
            batches.__getitem__, 0
        )
        for index in range(1, len(batches) + 1):
            current = pending.result()
            if index < len(batches):
                pending = pool.submit(batches.__getitem__, index)
            yield current


def fit(
    steps: Steps,
    train: ImageBatches,
    val: ImageBatches,
    *,
    epochs: int,
    patience: int,
    observer: TrainObserver | None = None,
) -> FitResult:
    """Train for up to ``epochs``; keep the weights of the best validation loss.

    Validation loss is ``steps.validation_loss``: the unweighted categorical cross-entropy
    on ``val`` (scikit-learn ``log_loss``), plus the auxiliary task's when there is one.
    Training stops after ``patience`` epochs without improvement; the best epoch's weights
    are restored before returning. An exception (or Ctrl-C) propagates
    untouched: the loop has no side effects outside the models it trains.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    observer = observer or NullObserver()
    n_classes = val.n_classes
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_weights = math.inf, -1, steps.get_weights()
    best_probs = np.empty((0, n_classes))
    waited = 0
    started = time.perf_counter()
    observer.start(epochs, len(train))
    try:
        for epoch in range(epochs):
            sums: dict[str, float] = {}
            seen = 0
            for step, (x, y, w) in enumerate(_prefetched(train)):
                logs = steps.train(x, y, w)
                seen += len(x)
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value * len(x)
                observer.batch_end(epoch, step, {k: v / seen for k, v in sums.items()})
            train.on_epoch_end()
            probs = steps.predict(val)
            epoch_logs = {k: v / max(seen, 1) for k, v in sums.items()}
            epoch_logs["val_loss"] = steps.validation_loss(val, probs)
            epoch_logs["val_accuracy"] = float(accuracy_score(val.targets, probs.argmax(axis=1)))
            history.append(epoch_logs)
            improved = epoch_logs["val_loss"] < best_loss
            if improved:
                best_loss, best_epoch, best_weights = (
                    epoch_logs["val_loss"],
                    epoch,
                    steps.get_weights(),
                )
                best_probs = probs
                waited = 0
            else:
                waited += 1
            observer.epoch_end(epoch, epoch_logs, improved)
            if waited >= patience:
                break
    finally:
        observer.stop()
    if best_epoch < 0:
        raise TrainingError(
            f"validation loss was never finite ({history[-1]['val_loss']}): training diverged"
        )
    steps.set_weights(best_weights)
    return FitResult(
        history=tuple(history),
        best_epoch=best_epoch,
        stopped_early=len(history) < epochs,
        seconds=time.perf_counter() - started,
        val_probs=best_probs,
    )
