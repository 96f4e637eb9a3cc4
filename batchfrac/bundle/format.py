"""The model bundle on disk: one shared trunk, one head per task, and ``bundle.json``.

Layout::

    BUNDLE/bundle.json                    metadata, validated by schemas/bundle.schema.json
    BUNDLE/trunk-<sha12>.npz              trunk weights (see weightfile.py)
    BUNDLE/heads/<name>-<sha12>.npz       one file per head: router, elbow, ..., wrist

Weight files are content-addressed and never modified; ``bundle.json`` names them with
their sha256 and is replaced atomically, so it is the commit point of every change:
an interrupted :func:`write_head` leaves the bundle exactly as it was.

Loading a bundle reads and verifies metadata and hashes only; Keras is imported the
first time a network is needed (:mod:`batchfrac.bundle.runtime`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cache, cached_property
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from .. import __version__
from ..atomic import exclusive_lock, umask_mode, write_bytes, write_json
from ..defaults import DEFAULT_THRESHOLD
from ..enums import Bone, Head, Label
from ..errors import BundleError, SpecError
from ..ingest.preprocess import PreprocessSpec
from .weightfile import encode_model, sha256_bytes
from .weights import file_sha256

if TYPE_CHECKING:
    import keras
    import numpy as np

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
ROUTER_CLASSES = [bone.value for bone in Bone]
BONE_CLASSES = [label.value for label in Label]


def head_classes(name: str | Head) -> list[str]:
    """The output classes of a head: the seven bones for the router, else normal/abnormal."""
    return list(ROUTER_CLASSES if Head(name) is Head.ROUTER else BONE_CLASSES)


def _head_name(name: str | Head) -> str:
    try:
        return Head(name).value
    except ValueError:
        raise BundleError(
            f"unknown head {name!r}; expected one of {[h.value for h in Head]}"
        ) from None


def json_ready(value: Any) -> Any:
    """``value`` with numpy values and datetimes turned into plain JSON types."""
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if hasattr(value, "isoformat"):  # datetime
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads((files("batchfrac") / "schemas" / SCHEMA_NAME).read_text("utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


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
    errors = sorted(_validator().iter_errors(meta), key=lambda e: list(e.absolute_path))
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
        key = _head_name(name)
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

    def trunk_features(self, x: np.ndarray) -> list[np.ndarray]:
        """One trunk pass: ``x`` (N,S,S,3) float32 in [0,1] -> the two trunk outputs."""
        return self.runtime.features(x)

    def head_probs(self, name: str | Head, features: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` of head ``name`` on trunk features."""
        self.head_meta(name)
        return self.runtime.probs(_head_name(name), features)

    def all_head_probs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every head's probabilities on images ``x``: the trunk once and all heads, fused
        into one compiled call. More arithmetic than routing (each head sees every
        image) but one host->device copy and one call: the fast path on accelerators."""
        return self.runtime.all_probs(x, self.heads())

    def full_model(self, name: str | Head) -> keras.Model:
        """A standalone trunk+head model (the paper's one-network-per-task layout)."""
        self.head_meta(name)
        return self.runtime.full_model(_head_name(name))


def create_bundle(
    path: Path,
    trunk: keras.Model,
    *,
    spec: PreprocessSpec,
    weights_origin: dict[str, str],
    demo: bool = False,
    trunk_obtained: str | None = None,
    notice: str | None = None,
) -> None:
    """Write a new bundle at ``path`` holding only ``trunk`` (add heads with write_head).

    ``weights_origin`` is :meth:`batchfrac.bundle.weights.WeightsSource.origin`;
    ``trunk_obtained`` says how the trunk weights came about (default: ``imagenet``
    for ImageNet weights, else ``random_init``; e.g. ``router_end_to_end``). The
    bundle appears atomically; :class:`BundleError` if ``path`` exists and is not empty.
    """
    from .network import HEAD_FIRST_LAYER, HEAD_LAYER_NAMES, N_TRUNK_LAYERS, TRUNK_OUTPUT_LAYERS

    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BundleError(f"{path} already exists and is not an empty directory")
    size = int(trunk.inputs[0].shape[1])
    if size != spec.image_size:
        raise BundleError(f"trunk input size {size} != preprocess image_size {spec.image_size}")
    if trunk_obtained is None:
        trunk_obtained = "random_init" if weights_origin.get("kind") == "none" else "imagenet"
    data = encode_model(trunk)
    sha = sha256_bytes(data)
    now = _now()
    import keras

    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bundle_id": "",
        "software_version": __version__,
        "created": now,
        "updated": now,
        "demo": demo,
        "notice": notice or (DEMO_NOTICE if demo else NOTICE),
        "classes": {"router": ROUTER_CLASSES, "bone": BONE_CLASSES},
        "image_size": spec.image_size,
        "preprocess": spec.to_dict(),
        "network": {
            "architecture": "EfficientNetB0",
            "keras_version": keras.__version__,
            "trunk_outputs": list(TRUNK_OUTPUT_LAYERS),
            "trunk_output_shapes": [list(t.shape[1:]) for t in trunk.outputs],
            "head_first_layer": HEAD_FIRST_LAYER,
            "n_trunk_layers": N_TRUNK_LAYERS,
            "n_head_layers": len(HEAD_LAYER_NAMES),
            "classifier": "GlobalAveragePooling2D -> Dropout(0.2) -> Dense(softmax)",
        },
        "weights_origin": dict(weights_origin),
        "trunk": {"file": f"trunk-{sha[:12]}.npz", "sha256": sha, "obtained": trunk_obtained},
        "heads": {},
    }
    meta["bundle_id"] = compute_bundle_id(meta)
    validate_meta(meta, path / BUNDLE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staging.chmod(umask_mode(0o777))
        (staging / "heads").mkdir()
        write_bytes(staging / meta["trunk"]["file"], data)
        write_json(staging / BUNDLE_FILE, meta)
        if path.exists():
            path.rmdir()
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_head(path: Path, name: str | Head, head: keras.Model, meta: dict[str, Any]) -> None:
    """Atomically add or replace head ``name`` of the bundle at ``path``.

    ``meta`` must hold ``trunk_sha256`` (the trunk the head was trained on; it must be
    the bundle's) and may hold the training summary (``images_per_class``, ``epochs``,
    ``training_seconds``, ``validation_metrics``, ``threshold``, ``data``, ...).
    ``file``, ``sha256``, ``n_classes``, ``classes`` and ``trained_at`` are filled in.
    The weights go to a new content-addressed file; bundle.json is then replaced
    atomically (the commit point); only after that is the old head file deleted.
    """
    path = Path(path)
    key = _head_name(name)
    if not path.is_dir():
        raise BundleError(f"not a model bundle (no {BUNDLE_FILE}): {path}")
    with exclusive_lock(path / LOCK_FILE):
        current = read_meta(path)
        trunk_sha = meta.get("trunk_sha256")
        if trunk_sha is None:
            raise BundleError(f"head {key}: meta lacks trunk_sha256 (the trunk it was trained on)")
        if trunk_sha != current["trunk"]["sha256"]:
            raise BundleError(
                f"head {key} was trained on trunk {str(trunk_sha)[:12]}, but bundle {path} "
                f"has trunk {current['trunk']['sha256'][:12]}"
            )
        expected_shapes = current["network"]["trunk_output_shapes"]
        input_shapes = [list(t.shape[1:]) for t in head.inputs]
        if input_shapes != expected_shapes:
            raise BundleError(
                f"head {key} takes inputs {input_shapes}, trunk gives {expected_shapes}"
            )
        classes = head_classes(key)
        n_classes = int(head.outputs[0].shape[-1])
        if n_classes != len(classes) or meta.get("classes", classes) != classes:
            raise BundleError(f"head {key} must output {classes}, got {n_classes} classes")
        data = encode_model(head)
        sha = sha256_bytes(data)
        record = {
            **({"threshold": DEFAULT_THRESHOLD} if key != Head.ROUTER.value else {}),
            **json_ready(meta),
            "file": f"heads/{key}-{sha[:12]}.npz",
            "sha256": sha,
            "n_classes": n_classes,
            "classes": classes,
            "trained_at": json_ready(meta.get("trained_at")) or _now(),
        }
        new = {**current, "heads": {**current["heads"], key: record}, "updated": _now()}
        new["software_version"] = __version__
        new["bundle_id"] = compute_bundle_id(new)
        validate_meta(new, path / BUNDLE_FILE)
        (path / "heads").mkdir(exist_ok=True)
        write_bytes(path / record["file"], data)
        write_json(path / BUNDLE_FILE, new)
        for stale in (path / "heads").glob(f"{key}-*.npz"):
            if stale.name != Path(record["file"]).name:
                stale.unlink(missing_ok=True)


def load_trunk(path: Path) -> keras.Model:
    """The bundle's trunk as a fresh Keras model (e.g. to train a new head on)."""
    return ModelBundle.load(path).runtime.trunk


def load_head(path: Path, name: str | Head) -> keras.Model:
    """Head ``name`` of the bundle as a fresh Keras model (e.g. to continue training)."""
    bundle = ModelBundle.load(path)
    bundle.head_meta(name)
    return bundle.runtime.head(_head_name(name))
