"""Writing model bundles: a new bundle with its trunk, then heads added one at a time.

Weight files are content-addressed and never modified; ``bundle.json`` names them with
their sha256 and is replaced atomically, so it is the commit point of every change:
an interrupted :func:`write_head` leaves the bundle exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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
        new["bundle_id"] = compute_bundle_id(new)
        validate_meta(new, path / BUNDLE_FILE)
        (path / "heads").mkdir(exist_ok=True)
        write_bytes(path / record["file"], data)
        write_json(path / BUNDLE_FILE, new)
        for stale in (path / "heads").glob(f"{key}-*.npz"):
            if stale.name != Path(record["file"]).name:
                stale.unlink(missing_ok=True)
    return str(new["bundle_id"])
