"""The model bundle on disk: one shared trunk, one head per task, and ``bundle.json``.

Layout::

    BUNDLE/bundle.json                    metadata, validated by schemas/bundle.schema.json
    BUNDLE/trunk-<sha12>.npz              trunk weights (see weightfile.py)
    BUNDLE/heads/<name>-<sha12>.npz       one file per head: router, elbow, ..., wrist

Weight files are content-addressed and never modified; ``bundle.json`` names them with
their sha256 (how bundles are written: :mod:`batchfrac.bundle.write`).

    BUNDLE/onnx/<network>-<sha12>.onnx    ONNX graphs of the same networks (optional)

Loading a bundle reads and verifies metadata and hashes only. Its networks run on Keras
(:mod:`batchfrac.bundle.runtime`; imported the first time a network is needed) unless
:meth:`ModelBundle.use_backend` picks ONNX Runtime (:mod:`batchfrac.bundle.onnx_runtime`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import schemas
from ..defaults import DEFAULT_THRESHOLD
from ..enums import Backend, Bone, Head
from ..errors import BundleError, SpecError
from ..ingest.preprocess import PreprocessSpec
from .weights import file_sha256

if TYPE_CHECKING:
    import keras
    import numpy as np

    from .device import BackendInfo
    from .onnx_runtime import OnnxRuntime
    from .runtime import BundleRuntime

BUNDLE_FILE = "bundle.json"
#: Serialises writers of one bundle (two ``train`` runs adding heads at once).
LOCK_FILE = ".lock"
SCHEMA_NAME = "bundle.schema.json"
FORMAT = "batchfrac-bundle"
FORMAT_VERSION = 1
DEMO_NOTICE = "DEMO bundle trained on synthetic radiographs - not for clinical use"
NOTICE = (
    "Screening aid for research use; not a medical device. Every finding needs review "
    "by a qualified reader."
)


def head_classes(name: str | Head) -> list[str]:
    """The output classes of a head as bundle.json lists them (:attr:`Head.classes`)."""
    return list(Head(name).classes)


def head_name(name: str | Head) -> str:
    try:
        return Head(name).value
    except ValueError:
        raise BundleError(
            f"unknown head {name!r}; expected one of {[h.value for h in Head]}"
        ) from None


def compute_bundle_id(meta: dict[str, Any]) -> str:
    """First 16 hex digits of the sha256 of what determines the bundle's outputs: weights,
    decision thresholds, preprocessing, classes and input size (not dates or metrics)."""
    content = {
        "format_version": meta["format_version"],
        "trunk": meta["trunk"]["sha256"],
        "heads": {name: head["sha256"] for name, head in meta["heads"].items()},
        "thresholds": {name: head.get("threshold") for name, head in meta["heads"].items()},
        "preprocess": meta["preprocess"],
        "classes": meta["classes"],
        "image_size": meta["image_size"],
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def validate_meta(meta: Any, where: Path) -> None:
    """Raise :class:`BundleError` unless ``meta`` is a valid, self-consistent bundle.json."""
    errors = sorted(
        schemas.validator(SCHEMA_NAME).iter_errors(meta), key=lambda e: list(e.absolute_path)
    )
    if errors:
        parts = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]
        raise BundleError(f"{where} does not match {SCHEMA_NAME}: " + "; ".join(parts[:10]))
    try:
        spec = PreprocessSpec.from_dict(meta["preprocess"])
    except SpecError as exc:
        raise BundleError(f"{where}: {exc}") from exc
    if spec.image_size != meta["image_size"]:
        raise BundleError(
            f"{where}: image_size {meta['image_size']} != preprocess image_size {spec.image_size}"
        )
    for name, head in meta["heads"].items():
        if head["classes"] != head_classes(name) or head["n_classes"] != len(head["classes"]):
            raise BundleError(f"{where}: head {name} has classes {head['classes']}")
        if head["trunk_sha256"] != meta["trunk"]["sha256"]:
            raise BundleError(f"{where}: head {name} was trained on another trunk")
    if meta["bundle_id"] != compute_bundle_id(meta):
        raise BundleError(f"{where}: bundle_id does not match the bundle's content (edited?)")


def read_meta(path: Path) -> dict[str, Any]:
    """Read and validate ``path/bundle.json`` (without checking the weight files)."""
    meta_path = Path(path) / BUNDLE_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"not a model bundle (no {BUNDLE_FILE}): {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"unreadable {meta_path}: {exc}") from exc
    validate_meta(meta, meta_path)
    return dict(meta)


class ModelBundle:
    """A loaded, verified bundle: metadata, provenance and (lazily) the networks."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta
        self.bundle_id: str = meta["bundle_id"]
        self.image_size: int = meta["image_size"]
        self.demo: bool = meta["demo"]
        self.router_classes: list[str] = list(meta["classes"]["router"])
        self.trunk_sha256: str = meta["trunk"]["sha256"]
        self.spec = PreprocessSpec.from_dict(meta["preprocess"])
        self._onnx: OnnxRuntime | None = None
        self._backend: BackendInfo | None = None

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        """Load ``path``: validate bundle.json and the sha256 of every weight file.

        Raises :class:`BundleError` when anything is missing, malformed or altered.
        """
        path = Path(path)
        meta = read_meta(path)
        bundle = cls(path, meta)
        for file_name, expected in bundle.weights_sha256().items():
            file_path = path / file_name
            if not file_path.is_file():
                raise BundleError(f"{path}: weight file {file_name} is missing")
            if file_sha256(file_path) != expected:
                raise BundleError(f"{path}: sha256 of {file_name} does not match bundle.json")
        return bundle

    def heads(self) -> list[str]:
        """Names of the heads present, in :class:`Head` order (router first)."""
        return [head.value for head in Head if head.value in self.meta["heads"]]

    def head_meta(self, name: str | Head) -> dict[str, Any]:
        """The bundle.json record of head ``name``; :class:`BundleError` if absent."""
        key = head_name(name)
        if key not in self.meta["heads"]:
            raise BundleError(f"bundle {self.path} has no {key} head (has {self.heads()})")
        return dict(self.meta["heads"][key])

    def threshold(self, bone: str | Bone | Head) -> float:
        """Decision threshold on P(abnormal) of a bone head (default 0.5)."""
        value = bone.value if isinstance(bone, (Bone, Head)) else bone
        return float(self.head_meta(value).get("threshold", DEFAULT_THRESHOLD))

    def weights_sha256(self) -> dict[str, str]:
        """Weight file name (relative to the bundle) -> sha256, trunk first."""
        shas = {self.meta["trunk"]["file"]: self.trunk_sha256}
        for name in self.heads():
            head = self.meta["heads"][name]
            shas[head["file"]] = head["sha256"]
        return shas

    @property
    def notice(self) -> str:
        """The plain-text intended-use notice of the bundle."""
        return str(self.meta["notice"])

    @cached_property
    def runtime(self) -> BundleRuntime:
        """The Keras networks of this bundle, built on first use."""
        from .runtime import BundleRuntime

        return BundleRuntime(self.path, self.meta)

    def use_backend(self, backend: Backend | str, *, threads: int | None = None) -> BackendInfo:
        """Run :meth:`trunk_features` and :meth:`head_probs` on ``backend`` from now on.

        ``auto`` picks ONNX Runtime when the bundle has ONNX graphs of its current
        weights and onnxruntime is installed, else Keras (the returned record's ``note``
        says why). ``onnx`` raises :class:`BundleError` when it cannot be used.
        ``threads``: ONNX Runtime's intra-op threads (``None``: one per core).
        Switching backends does not mix features: call it before inference.
        """
        from .device import keras_info
        from .onnx_runtime import OnnxRuntime, onnx_problem

        choice = Backend(backend)
        problem = onnx_problem(self.meta) if choice is not Backend.KERAS else None
        if choice is Backend.ONNX and problem is not None:
            raise BundleError(f"{self.path}: cannot run on ONNX Runtime: {problem}")
        if choice is Backend.KERAS or problem is not None:
            self._onnx = None
            self._backend = keras_info(self.image_size, note=problem)
        else:
            self._onnx = OnnxRuntime(self.path, self.meta, threads=threads)
            self._backend = self._onnx.info()
        return self._backend

    @property
    def backend(self) -> BackendInfo:
        """What runs the networks (Keras until :meth:`use_backend` says otherwise); for
        Keras, the device it found once the networks are built."""
        from .device import keras_info

        if self._backend is None:
            self._backend = keras_info(self.image_size)
        if self._onnx is None and "runtime" in self.__dict__:  # built: ask Keras itself
            return self.runtime.info(self._backend)
        return self._backend

    @property
    def fixed_batch(self) -> bool:
        """Whether every trunk call should get the same batch size (Keras' traced graphs)."""
        return self._onnx is None

    def _engine(self) -> BundleRuntime | OnnxRuntime:
        return self._onnx if self._onnx is not None else self.runtime

    def trunk_features(self, x: np.ndarray) -> list[np.ndarray]:
        """One trunk pass: ``x`` (N,S,S,3) float32 in [0,1] -> the two trunk outputs
        (NHWC on Keras, NCHW on ONNX: hand them only to :meth:`head_probs`)."""
        return self._engine().features(x)

    def head_probs(self, name: str | Head, features: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` of head ``name`` on trunk features."""
        self.head_meta(name)
        return self._engine().probs(head_name(name), features)

    @property
    def gradcam_method(self) -> str:
        """How :meth:`gradcam` computes its maps on the backend in use."""
        return "onnx-numpy" if self._onnx is not None else "keras-autodiff"

    def gradcam(self, name: str | Head, features: Sequence[np.ndarray]) -> np.ndarray:
        """Grad-CAM maps float32 (N, h, w) in [0, 1] of the abnormal class of head
        ``name`` on trunk features (``log_odds`` score): in numpy from the ONNX graph's
        ``top_activation`` on ONNX Runtime (:mod:`.onnx_cam`, no TensorFlow), with
        :func:`batchfrac.bundle.gradcam.gradcam` on Keras."""
        self.head_meta(name)
        if self._onnx is not None:
            return self._onnx.gradcam(head_name(name), features)
        from .gradcam import gradcam

        return gradcam(self.runtime.head(head_name(name)), features)

    def head_probs_and_cams(
        self, name: str | Head, features: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`head_probs` and, on ONNX Runtime, the :meth:`gradcam` maps from the same
        head pass (a few ms more per batch, where :meth:`gradcam` alone would run the head
        again); on Keras the maps are ``None`` (Grad-CAM needs autodiff: call
        :meth:`gradcam` for the images that need one)."""
        self.head_meta(name)
        if self._onnx is not None:
            return self._onnx.probs_and_cams(head_name(name), features)
        return self.runtime.probs(head_name(name), features), None

    def all_head_probs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every head's probabilities on images ``x``: the trunk once and all heads, fused
        into one compiled call on Keras. More arithmetic than routing (each head sees every
        image) but one host->device copy and one call: the fast path on accelerators."""
        return self._engine().all_probs(x, self.heads())

    def full_model(self, name: str | Head) -> keras.Model:
        """A standalone trunk+head Keras model (the paper's one-network-per-task layout)."""
        self.head_meta(name)
        return self.runtime.full_model(head_name(name))
