"""Writing model bundles: a new bundle with its trunk, then heads added one at a time.

Weight files are content-addressed and never modified; ``bundle.json`` names them with
their sha256 and is replaced atomically, so it is the commit point of every change:
an interrupted :func:`write_head` leaves the bundle exactly as it was.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..atomic import exclusive_lock, umask_mode, write_bytes, write_json
from ..defaults import DEFAULT_THRESHOLD
from ..enums import Head
from ..errors import BundleError
from ..ingest.preprocess import PreprocessSpec
from .format import (
    BUNDLE_FILE,
    DEMO_NOTICE,
    FORMAT,
    FORMAT_VERSION,
    LOCK_FILE,
    NOTICE,
    compute_bundle_id,
    head_classes,
    head_name,
    read_meta,
    validate_meta,
)
from .weightfile import encode_model, sha256_bytes

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)
#: Folder of a bundle's ONNX graphs (:mod:`batchfrac.bundle.onnx_export`).
ONNX_DIR = "onnx"


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


def create_bundle(
    path: Path,
    trunk: keras.Model,
    *,
    spec: PreprocessSpec,
    weights_origin: dict[str, str],
    demo: bool = False,
    trunk_obtained: str | None = None,
    notice: str | None = None,
) -> str:
    """Write a new bundle at ``path`` holding only ``trunk`` (add heads with write_head);
    return the trunk's sha256 (what a head's ``trunk_sha256`` must name).

    ``weights_origin`` is :meth:`batchfrac.bundle.weights.WeightsSource.origin`;
    ``trunk_obtained`` says how the trunk weights came about (default: ``imagenet``
    for ImageNet weights, else ``random_init``; e.g. ``router_end_to_end``). The
    bundle appears atomically; :class:`BundleError` if ``path`` exists and is not empty.
    """
    from .layout import HEAD_FIRST_LAYER, TRUNK_OUTPUT_LAYERS
    from .network import HEAD_LAYER_NAMES, N_TRUNK_LAYERS

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
    onnx_trunk = _exported("trunk", lambda: _export_trunk(trunk, sha))
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
        "classes": {"router": head_classes(Head.ROUTER), "bone": head_classes(Head.HAND)},
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
    if onnx_trunk is not None:
        meta["onnx"] = _onnx_meta(trunk=onnx_trunk[1], heads={})
    meta["bundle_id"] = compute_bundle_id(meta)
    validate_meta(meta, path / BUNDLE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staging.chmod(umask_mode(0o777))
        (staging / "heads").mkdir()
        write_bytes(staging / meta["trunk"]["file"], data)
        if onnx_trunk is not None:
            (staging / ONNX_DIR).mkdir()
            write_bytes(staging / onnx_trunk[1]["file"], onnx_trunk[0])
        write_json(staging / BUNDLE_FILE, meta)
        if path.exists():
            path.rmdir()
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sha


def write_head(path: Path, name: str | Head, head: keras.Model, meta: dict[str, Any]) -> str:
    """Atomically add or replace head ``name`` of the bundle at ``path``; return the
    bundle's new id.

    ``meta`` must hold ``trunk_sha256`` (the trunk the head was trained on; it must be
    the bundle's) and may hold the training summary (``images_per_class``, ``epochs``,
    ``training_seconds``, ``validation_metrics``, ``threshold``, ``data``, ...).
    ``file``, ``sha256``, ``n_classes``, ``classes`` and ``trained_at`` are filled in.
    The weights go to a new content-addressed file; bundle.json is then replaced
    atomically (the commit point); only after that is the old head file deleted.
    """
    path = Path(path)
    key = head_name(name)
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
        onnx_head = None
        if "onnx" in current:  # the head's graph is replaced with its weights, or dropped
            onnx_head = _exported(key, lambda: _export_head(path, current, key, head, sha))
            heads = {k: v for k, v in current["onnx"]["heads"].items() if k != key}
            if onnx_head is not None:
                heads[key] = onnx_head[1]
            new["onnx"] = _onnx_meta(trunk=current["onnx"]["trunk"], heads=heads)
        new["bundle_id"] = compute_bundle_id(new)
        validate_meta(new, path / BUNDLE_FILE)
        (path / "heads").mkdir(exist_ok=True)
        write_bytes(path / record["file"], data)
        if onnx_head is not None:
            (path / ONNX_DIR).mkdir(exist_ok=True)
            write_bytes(path / onnx_head[1]["file"], onnx_head[0])
        write_json(path / BUNDLE_FILE, new)
        for stale in (path / "heads").glob(f"{key}-*.npz"):
            if stale.name != Path(record["file"]).name:
                stale.unlink(missing_ok=True)
        _remove_unlisted_graphs(path, new)
    return str(new["bundle_id"])


Exported = tuple[bytes, dict[str, Any]]


def _exported(what: str, export: Callable[[], Exported]) -> Exported | None:
    """``export()``, or ``None`` with a warning: a bundle without an ONNX graph still
    works (scans fall back to Keras and say so); training must not fail for it."""
    try:
        return export()
    except (ImportError, BundleError) as exc:
        log.warning("no ONNX graph of the %s: %s", what, exc)
        return None


def _export_trunk(trunk: keras.Model, sha: str) -> Exported:
    from .onnx_export import export_trunk

    return export_trunk(trunk, sha)


def _export_head(
    path: Path, meta: Mapping[str, Any], name: str, head: keras.Model, sha: str
) -> Exported:
    from .onnx_export import export_head, read_trunk_graph

    trunk = read_trunk_graph(path, meta)
    if trunk is None:
        raise BundleError("the bundle has no ONNX trunk (batchfrac models export-onnx)")
    return export_head(name, head, sha, trunk, int(meta["image_size"]))


def _onnx_meta(trunk: Mapping[str, Any], heads: Mapping[str, Any]) -> dict[str, Any]:
    from .onnx_graph import GRAPH_VERSION, OPSET

    return {"graph_version": GRAPH_VERSION, "opset": OPSET, "trunk": dict(trunk),
            "heads": {k: dict(v) for k, v in heads.items()}}  # fmt: skip


def _remove_unlisted_graphs(path: Path, meta: Mapping[str, Any]) -> None:
    """Delete ONNX files that ``meta`` (just committed) no longer lists."""
    section = meta.get("onnx") or {}
    records = [section.get("trunk"), *section.get("heads", {}).values()]
    listed = {Path(record["file"]).name for record in records if record}
    for graph in (path / ONNX_DIR).glob("*.onnx"):
        if graph.name not in listed:
            graph.unlink(missing_ok=True)


def commit_onnx(
    path: Path, section: Mapping[str, Any], files: Mapping[str, bytes], expected: Mapping[str, Any]
) -> None:
    """Write ONNX ``files`` into the bundle at ``path`` and list ``section`` in bundle.json.

    ``expected`` is the bundle.json the graphs were exported from; if the bundle's
    weights changed meanwhile (a head was retrained), :class:`BundleError`: run again.
    """

    def weights(meta: Mapping[str, Any]) -> object:
        return meta["trunk"]["sha256"], {k: h["sha256"] for k, h in meta["heads"].items()}

    with exclusive_lock(path / LOCK_FILE):
        current = read_meta(path)
        if weights(current) != weights(expected):
            raise BundleError(f"{path} changed while its ONNX graphs were exported; run again")
        new = {**current, "onnx": _onnx_meta(section["trunk"], section["heads"])}
        new["updated"] = _now()
        validate_meta(new, path / BUNDLE_FILE)
        (path / ONNX_DIR).mkdir(exist_ok=True)
        for name, data in files.items():
            write_bytes(path / name, data)
        write_json(path / BUNDLE_FILE, new)
        _remove_unlisted_graphs(path, new)
