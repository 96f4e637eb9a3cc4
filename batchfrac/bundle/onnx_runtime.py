"""The ONNX side of a loaded bundle: ONNX Runtime sessions on its exported graphs.

Nothing here imports TensorFlow or Keras, so a scan on this backend starts in about a
second (onnxruntime's import and nine sessions) instead of TensorFlow's import plus
building and tracing nine Keras networks. The graphs (:mod:`.onnx_graph`) are files
listed in ``bundle.json["onnx"]`` (written by :mod:`.onnx_export`); each file's bytes
are checked against its sha256 as they are read, and each names the weight file it was
exported from (``source_sha256``), so graphs of replaced weights are never used.

The graphs take any batch size, so no call is padded (``fixed_batch`` is false) and
head sessions are created only when first needed. Features are NCHW arrays, handed
only from this trunk to these heads. On a host with onnxruntime-gpu the CUDA provider
is used first.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError
from .device import CPU_BATCH_ONNX, BackendInfo, accelerator_batch_size, gpu_free_bytes
from .onnx_graph import FEATURES, IMAGE_INPUT, PROBS_OUTPUT
from .weightfile import sha256_bytes

ONNX_SECTION = "onnx"
GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider")


def onnx_problem(meta: Mapping[str, Any]) -> str | None:
    """Why this bundle's networks cannot run on ONNX Runtime here, or ``None``."""
    section = meta.get(ONNX_SECTION)
    if not section:
        return "the bundle has no ONNX graphs (batchfrac models export-onnx adds them)"
    if section["trunk"]["source_sha256"] != meta["trunk"]["sha256"]:
        return "the bundle's ONNX trunk was exported from other trunk weights"
    for name, head in meta["heads"].items():
        record = section["heads"].get(name)
        if record is None:
            return f"the bundle has no ONNX graph of head {name}"
        if record["source_sha256"] != head["sha256"]:
            return f"the ONNX graph of head {name} was exported from other weights"
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    return None


def default_providers() -> list[str]:
    """ONNX Runtime's execution providers to use: an installed GPU provider first."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in GPU_PROVIDERS if p in available][:1] + ["CPUExecutionProvider"]


def session_options(threads: int | None) -> Any:
    """Sessions that share the CPU politely with the scan's decoding processes.

    Spinning is off: ONNX Runtime's idle pool threads would otherwise busy-wait after
    every parallel section on cores that Dask workers need. One inter-op thread: the
    graphs are chains, there is nothing to run side by side.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxRuntime:
    """The trunk and heads of one bundle as ONNX Runtime sessions."""

    fixed_batch = False

    def __init__(
        self,
        path: Path,
        meta: Mapping[str, Any],
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        problem = onnx_problem(meta)
        if problem is not None:
            raise BundleError(f"{path}: {problem}")
        self.path = Path(path)
        self.meta = meta
        self.image_size = int(meta["image_size"])
        self.threads = threads
        self._options = session_options(threads)
        self._providers = list(providers or default_providers())
        self._records = meta[ONNX_SECTION]
        self.trunk = self._session(self._records["trunk"])
        self.providers = tuple(self.trunk.get_providers())
        self._heads: dict[str, Any] = {}
        self._n_classes = {name: int(head["n_classes"]) for name, head in meta["heads"].items()}

    def _read(self, record: Mapping[str, Any]) -> bytes:
        file = self.path / record["file"]
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read ONNX graph {file}: {exc}") from exc
        if sha256_bytes(data) != record["sha256"]:
            raise BundleError(f"sha256 of {file} does not match bundle.json")
        return data

    def _session(self, record: Mapping[str, Any], data: bytes | None = None) -> Any:
        import onnxruntime

        file = self.path / record["file"]
        data = self._read(record) if data is None else data
        try:
            return onnxruntime.InferenceSession(data, self._options, providers=self._providers)
        except Exception as exc:  # onnxruntime raises its own, undocumented types
            raise BundleError(f"ONNX Runtime cannot load {file}: {exc}") from exc

    @property
    def device(self) -> str:
        """``gpu`` when a GPU provider runs the graphs, else ``cpu``."""
        return "gpu" if self.providers and self.providers[0] in GPU_PROVIDERS else "cpu"

    def info(self) -> BackendInfo:
        """This runtime as the scan records it."""
        if self.device == "gpu":
            batch = accelerator_batch_size(gpu_free_bytes(), self.image_size)
        else:
            batch = CPU_BATCH_ONNX
        graphs = [self._records["trunk"], *self._records["heads"].values()]
        return BackendInfo(
            name="onnx",
            device=self.device,
            providers=self.providers,
            batch_size=batch,
            fixed_batch=False,
            threads=self.threads,
            graphs_sha256={g["file"]: g["sha256"] for g in graphs},
        )

    def head(self, name: str) -> Any:
        """The session of head ``name``, created on first use; its graph also outputs
        what Grad-CAM needs (:func:`~.onnx_cam.with_cam_output`), computed only when asked."""
        from .onnx_cam import with_cam_output

        if name not in self._heads:
            if name not in self._records["heads"]:
                raise BundleError(f"{self.path}: no ONNX graph of head {name}")
            record = self._records["heads"][name]
            self._heads[name] = self._session(record, with_cam_output(self._read(record)))
        return self._heads[name]

    def features(self, x: np.ndarray) -> list[np.ndarray]:
        """Trunk outputs (NCHW) for images ``x`` of shape (N, S, S, 3), float32 in [0, 1]."""
        x = np.asarray(x, dtype=np.float32)
        expected = (self.image_size, self.image_size, 3)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"trunk input must be (N, {expected}), got {x.shape}")
        if len(x) == 0:
            shapes = [o.shape[1:] for o in self.trunk.get_outputs()]
            return [np.zeros((0, *shape), np.float32) for shape in shapes]
        return list(self.trunk.run(list(FEATURES), {IMAGE_INPUT: np.ascontiguousarray(x)}))

    def probs(self, name: str, features: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (N, n_classes) of head ``name`` on trunk ``features``."""
        inputs = self._head_inputs(name, features)
        if inputs is None:
            return np.zeros((0, self._n_classes[name]), np.float32)
        return np.asarray(self.head(name).run([PROBS_OUTPUT], inputs)[0])

    def probs_and_cams(
        self, name: str, features: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N, n_classes) of head ``name`` and the Grad-CAM maps (N, h, w) of
        its abnormal class, from one pass, in numpy from the head's ``top_activation``
        (:mod:`.onnx_cam`)."""
        from .onnx_cam import CAM_OUTPUT, KERNEL, numpy_gradcam

        inputs = self._head_inputs(name, features)
        if inputs is None:
            return np.zeros((0, self._n_classes[name]), np.float32), np.zeros((0, 0, 0), "f4")
        probs, activation, kernel = self.head(name).run([PROBS_OUTPUT, CAM_OUTPUT, KERNEL], inputs)
        return np.asarray(probs), numpy_gradcam(activation, np.asarray(kernel, np.float64), probs)

    def gradcam(self, name: str, features: Sequence[np.ndarray]) -> np.ndarray:
        """Grad-CAM maps (N, h, w) of the abnormal class of head ``name`` on trunk
        ``features`` (see :meth:`probs_and_cams`)."""
        return self.probs_and_cams(name, features)[1]

    def _head_inputs(
        self, name: str, features: Sequence[np.ndarray]
    ) -> dict[str, np.ndarray] | None:
        """The head's input feed, or ``None`` for no images."""
        arrays = [np.ascontiguousarray(f, dtype=np.float32) for f in features]
        if len(arrays) != len(FEATURES):
            raise ValueError(f"head {name} takes {len(FEATURES)} feature arrays")
        if len(arrays[0]) == 0:
            return None
        return dict(zip(FEATURES, arrays, strict=True))

    def all_probs(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Probabilities of every head in ``names`` on images ``x`` (one trunk pass)."""
        features = self.features(x)
        return {name: self.probs(name, features) for name in names}
