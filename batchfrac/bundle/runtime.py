"""The Keras side of a loaded bundle: networks built once, fast batched inference.

The networks are built from the B0 structure (random init) and then filled from the
bundle's weight files, whose bytes are checked against bundle.json again as they are
read. Inference goes through ``predict_on_batch`` (one compiled call, no per-call
``predict`` machinery). Batches are padded to a small set of sizes so that each
network is traced/compiled a bounded number of times: the first size seen is used as
is (the caller's fixed batch size), smaller batches are padded to a known size at most
twice as large, else to the next power of two (at least :data:`MIN_BUCKET`). A JAX
compile of B0 on a GPU takes seconds, so new shapes are worth avoiding.

On an accelerator the per-call overhead and the host<->device copies of the trunk
features can cost more than the heads' arithmetic; :meth:`BundleRuntime.all_probs`
runs the trunk and every head in one compiled call for that case.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .device import BackendInfo, keras_info
from .network import build_backbone, build_full_model, build_head, split_backbone
from .padding import pad_batch
from .weightfile import assign_arrays, read_weight_file

MIN_BUCKET = 8
#: TensorFlow's warning that this module's planned traces set off (see below).
RETRACING_WARNING = "triggered tf.function retracing"


class _ExpectedRetracing(logging.Filter):
    """Drop TensorFlow's "N out of the last N calls ... triggered tf.function retracing".

    TensorFlow counts traces per Python code object, and every Keras model's predict
    function shares one, so the first batch of a scan (trunk, router, seven heads, each
    traced once per bucket size) looks like one function retraced nine times. The
    traces here are planned and bounded (see :class:`_Batcher`); other warnings pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return RETRACING_WARNING not in record.getMessage()


_RETRACING_FILTER = _ExpectedRetracing()


class _Batcher:
    """Pads batches to a few fixed sizes and runs one model on them."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.sizes: set[int] = set()

    def _padded_size(self, n: int) -> int:
        if n in self.sizes:
            return n
        if not self.sizes or n > max(self.sizes):
            return n
        known = [s for s in self.sizes if n <= s <= 2 * n]
        if known:
            return min(known)
        return min(max(MIN_BUCKET, 1 << (n - 1).bit_length()), max(self.sizes))

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        n = len(inputs[0])
        size = self._padded_size(n)
        self.sizes.add(size)
        inputs = [pad_batch(a, size) for a in inputs]
        outputs = self.model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return [np.asarray(out)[:n] for out in outputs]


class BundleRuntime:
    """The trunk and heads of one bundle as Keras models, built lazily and cached."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        logging.getLogger("tensorflow").addFilter(_RETRACING_FILTER)  # once: filters are a set
        self.path = Path(path)
        self.meta = meta
        self.image_size = int(meta["image_size"])
        backbone = build_backbone(None, self.image_size)
        self.trunk, self._head_body = split_backbone(backbone)
        trunk_meta = meta["trunk"]
        assign_arrays(
            self.trunk,
            read_weight_file(self.path / trunk_meta["file"], trunk_meta["sha256"]),
            source=trunk_meta["file"],
        )
        self._trunk_batcher = _Batcher(self.trunk)
        self._heads: dict[str, keras.Model] = {}
        self._head_batchers: dict[str, _Batcher] = {}
        self._full: dict[str, keras.Model] = {}
        self._fused: dict[tuple[str, ...], _Batcher] = {}

    def head(self, name: str) -> keras.Model:
        """Head ``name`` (built and filled from its weight file on first use)."""
        if name not in self._heads:
            head_meta = self.meta["heads"][name]
            head = build_head(self._head_body, int(head_meta["n_classes"]), name)
            assign_arrays(
                head,
                read_weight_file(self.path / head_meta["file"], head_meta["sha256"]),
                source=head_meta["file"],
            )
            self._heads[name] = head
            self._head_batchers[name] = _Batcher(head)
        return self._heads[name]

    def features(self, x: np.ndarray) -> list[np.ndarray]:
        """Trunk outputs for images ``x`` of shape (N, S, S, 3), float32 in [0, 1]."""
        x = self._check_images(x)
        if len(x) == 0:
            return [np.zeros((0, *t.shape[1:]), np.float32) for t in self.trunk.outputs]
        return self._trunk_batcher([x])

    def probs(self, name: str, features: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (N, n_classes) of head ``name`` on trunk ``features``."""
        head = self.head(name)
        arrays = [np.asarray(f, dtype=np.float32) for f in features]
        if len(arrays) != len(head.inputs):
            raise ValueError(f"head {name} takes {len(head.inputs)} feature arrays")
        if len(arrays[0]) == 0:
            return np.zeros((0, int(head.outputs[0].shape[-1])), np.float32)
        return self._head_batchers[name](arrays)[0]

    def all_probs(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Probabilities of every head in ``names`` on images ``x``, in one compiled call."""
        key = tuple(names)
        if key not in self._fused:
            image = keras.Input(shape=self.trunk.inputs[0].shape[1:], dtype="float32")
            features = self.trunk(image)
            outputs = [self.head(name)(features) for name in key]
            self._fused[key] = _Batcher(keras.Model(image, outputs, name="all_heads"))
        x = self._check_images(x)
        if len(x) == 0:
            return {
                name: np.zeros((0, int(self.head(name).outputs[0].shape[-1])), np.float32)
                for name in key
            }
        return dict(zip(key, self._fused[key]([x]), strict=True))

    def _check_images(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        expected = (self.image_size, self.image_size, 3)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"trunk input must be (N, {expected}), got {x.shape}")
        return x

    @property
    def device(self) -> str:
        """Where Keras places the networks: ``gpu``, ``tpu`` or ``cpu``."""
        try:  # default device type: an accelerator when there is one
            devices = keras.distribution.list_devices()
        except (AttributeError, NotImplementedError):  # a backend without distribution_lib
            return "cpu"
        kind = str(devices[0]).split(":")[0].lower() if devices else "cpu"
        return kind if kind in ("gpu", "tpu") else "cpu"

    def info(self, planned: BackendInfo | None = None) -> BackendInfo:
        """This runtime as the scan records it (``planned``: what was chosen before Keras
        was imported, e.g. its batch size and why ``auto`` fell back to Keras)."""
        planned = planned or keras_info(self.image_size)
        providers = (f"keras-{keras.config.backend()}",)
        return dataclasses.replace(planned, device=self.device, providers=providers)

    def full_model(self, name: str) -> keras.Model:
        """``head(trunk(image))`` as one model, sharing this runtime's weights."""
        if name not in self._full:
            self._full[name] = build_full_model(self.trunk, self.head(name))
        return self._full[name]
