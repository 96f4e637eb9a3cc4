"""Batched shared-trunk inference on the driver: trunk once, router head, then bone heads.

The networks are reached only through the model bundle (``bundle.trunk_features`` /
``bundle.head_probs``, on Keras or ONNX Runtime); this module itself imports numpy only,
so fakes can stand in for a bundle in tests. On a backend with compiled graphs
(``bundle.fixed_batch``: Keras) every trunk call gets exactly ``batch_size`` images (the
last batch is zero-padded) so the graph is traced once; ONNX Runtime takes any batch size,
and the last batch is run as it is.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

import numpy as np

from ..bundle.padding import pad_batch
from ..enums import Bone, Head, Label, Routing
from ..records import Prediction

K = TypeVar("K")
#: Per image of a batch: its Grad-CAM map, or ``None``.
_Cams = list["np.ndarray | None"]


class InferenceBundle(Protocol):
    """What inference needs from :class:`batchfrac.bundle.format.ModelBundle`."""

    @property
    def image_size(self) -> int: ...

    @property
    def router_classes(self) -> Sequence[str]: ...

    @property
    def fixed_batch(self) -> bool: ...

    def trunk_features(self, x: np.ndarray) -> list[np.ndarray]: ...

    def head_probs(self, name: Head, features: list[np.ndarray]) -> np.ndarray: ...

    def head_probs_and_cams(
        self, name: Head, features: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]: ...


class BatchPredictor:
    """Runs fixed-size batches through the bundle and counts the work done.

    ``trunk_images`` counts images through the trunk including padding, so
    ``trunk_images / images`` is the number of B0 trunk passes per real image.
    ``head_images[head]`` counts the images each head saw.

    With ``cams``, each prediction carries the Grad-CAM map of its bone's head where the
    bundle makes it in the same pass (``head_probs_and_cams``: ONNX Runtime), so heatmaps
    need no second trunk pass.
    """

    def __init__(
        self,
        bundle: InferenceBundle,
        *,
        batch_size: int = 32,
        routing: Routing = Routing.HARD,
        cams: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.bundle = bundle
        self.batch_size = batch_size
        self.routing = Routing(routing)
        self.cams = cams
        self.image_size = int(bundle.image_size)
        self.router_bones = [Bone(name) for name in bundle.router_classes]
        if sorted(self.router_bones) != sorted(Bone):
            raise ValueError(f"router classes {list(bundle.router_classes)} are not the 7 bones")
        self.images = 0
        self.trunk_images = 0
        self.batches = 0
        self.seconds = 0.0
        self.head_images: Counter[Head] = Counter()

    def warm_up(self) -> None:
        """Build the trunk and every head and run them once (not counted): at this batch
        size where graphs are traced per size (Keras), else on one image.

        A scan calls it in a thread while its workers start and decode the first files,
        so the seconds of network building and graph tracing overlap decoding instead of
        holding up the first batch.
        """
        size = self.image_size
        n = self.batch_size if self.bundle.fixed_batch else 1
        features = self.bundle.trunk_features(np.zeros((n, size, size, 3), "f4"))
        for head in Head:
            self.bundle.head_probs(head, features)

    @property
    def trunk_passes_per_image(self) -> float | None:
        """Trunk passes per real image (1.0 plus padding), ``None`` before any image."""
        return self.trunk_images / self.images if self.images else None

    def predict(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for any number of images, in order, in padded fixed-size batches."""
        out: list[Prediction] = []
        for start in range(0, len(images), self.batch_size):
            out.extend(self.predict_batch(images[start : start + self.batch_size]))
        return out

    def predict_batch(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for 1..batch_size images (N, S, S, 3) float32 in [0, 1]."""
        n = len(images)
        size = self.image_size
        if not 0 < n <= self.batch_size or images.shape[1:] != (size, size, 3):
            raise ValueError(
                f"expected 1..{self.batch_size} images of shape ({size}, {size}, 3), "
                f"got {images.shape}"
            )
        started = time.perf_counter()
        batch = np.asarray(images, dtype=np.float32)
        if self.bundle.fixed_batch:
            batch = pad_batch(batch, self.batch_size)
        features = [np.asarray(f)[:n] for f in self.bundle.trunk_features(batch)]
        self.trunk_images += len(batch)
        router = self._head(Head.ROUTER, features)
        best = np.argmax(router, axis=1)
        confidence = router[np.arange(n), best]
        cams: _Cams = [None] * n
        if self.routing is Routing.HARD:
            abnormal = self._hard(features, best, cams)
        else:
            abnormal = self._soft(features, router, best, cams)
        self.images += n
        self.batches += 1
        self.seconds += time.perf_counter() - started
        return [
            Prediction(self.router_bones[int(b)], float(c), float(p), cam)
            for b, c, p, cam in zip(best, confidence, abnormal, cams, strict=True)
        ]

    def _head(self, head: Head, features: list[np.ndarray]) -> np.ndarray:
        self.head_images[head] += len(features[0])
        return np.asarray(self.bundle.head_probs(head, features), dtype=np.float64)

    def _bone_head(
        self, head: Head, features: list[np.ndarray], members: np.ndarray, cams: _Cams
    ) -> np.ndarray:
        """A bone head's probabilities on ``features``, the images ``members`` of the batch
        (in that order); with :attr:`cams`, their maps go to ``cams[member]``."""
        if not self.cams:
            return self._head(head, features)
        self.head_images[head] += len(features[0])
        probs, maps = self.bundle.head_probs_and_cams(head, features)
        if maps is not None:
            for i, cam in zip(members, maps, strict=True):
                cams[int(i)] = cam
        return np.asarray(probs, dtype=np.float64)

    def _hard(self, features: list[np.ndarray], best: np.ndarray, cams: _Cams) -> np.ndarray:
        abnormal = np.empty(len(best), np.float64)
        for column, bone in enumerate(self.router_bones):
            members = np.flatnonzero(best == column)
            if members.size:
                probs = self._bone_head(bone.head, [f[members] for f in features], members, cams)
                abnormal[members] = probs[:, Label.ABNORMAL.column]
        return abnormal

    def _soft(
        self, features: list[np.ndarray], router: np.ndarray, best: np.ndarray, cams: _Cams
    ) -> np.ndarray:
        column = Label.ABNORMAL.column
        per_bone = []
        for index, bone in enumerate(self.router_bones):
            maps: _Cams = [None] * len(best)
            probs = self._bone_head(bone.head, features, np.arange(len(best)), maps)
            for i in np.flatnonzero(best == index):  # an image's map: its routed bone's head
                cams[int(i)] = maps[int(i)]
            per_bone.append(probs[:, column])
        return np.sum(router * np.stack(per_bone, axis=1), axis=1)


class BatchQueue(Generic[K]):
    """Collects images one at a time and runs a full batch whenever ``batch_size`` are waiting.

    ``put`` and ``flush`` return the ``(key, prediction)`` pairs that became ready, so a
    caller can stream images from many chunks and still feed only full batches (only the
    final ``flush`` pads).
    """

    def __init__(self, predictor: BatchPredictor) -> None:
        self.predictor = predictor
        size = predictor.image_size
        self._buffer = np.zeros((predictor.batch_size, size, size, 3), np.float32)
        self._keys: list[K] = []

    def __len__(self) -> int:
        return len(self._keys)

    def put(self, key: K, image: np.ndarray) -> list[tuple[K, Prediction]]:
        """Queue one (S, S, 3) image; returns a batch's results when the batch is full."""
        self._buffer[len(self._keys)] = image
        self._keys.append(key)
        if len(self._keys) < self.predictor.batch_size:
            return []
        return self.flush()

    def flush(self) -> list[tuple[K, Prediction]]:
        """Run whatever is queued (padded) and return its results."""
        if not self._keys:
            return []
        keys, self._keys = self._keys, []
        predictions = self.predictor.predict_batch(self._buffer[: len(keys)])
        return list(zip(keys, predictions, strict=True))
