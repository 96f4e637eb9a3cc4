"""Exporting a bundle's networks to ONNX, each graph checked against Keras.

Graphs are written when a bundle is written (:func:`batchfrac.bundle.write.create_bundle`
exports the trunk, :func:`~batchfrac.bundle.write.write_head` each head) and by
``batchfrac models export-onnx BUNDLE`` for bundles written before. Layout::

    BUNDLE/onnx/trunk-<sha12>.onnx           the trunk (NHWC image -> two NCHW features)
    BUNDLE/onnx/<head>-<sha12>.onnx          one per head (features -> probabilities)

``bundle.json["onnx"]`` lists each file with its sha256, the sha256 of the weight file
it was exported from (``source_sha256``) and the largest difference from the Keras
network measured at export. The graphs are *derived* from the weights, so they do not
enter ``bundle_id``: a bundle keeps its id when graphs are added, and a head's graph is
replaced with its weights, in the same ``bundle.json`` commit.

A graph is accepted only if ONNX Runtime and Keras agree on random inputs within
:data:`TOLERANCE` (probabilities; trunk features relative to their largest value).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BundleError
from .onnx_graph import FEATURES, GRAPH_VERSION, IMAGE_INPUT, OPSET, head_model, trunk_model
from .onnx_runtime import ONNX_SECTION, session_options
from .weightfile import assign_arrays, model_arrays, sha256_bytes, storage_array

if TYPE_CHECKING:
    import keras

ONNX_DIR = "onnx"
#: Largest difference accepted between ONNX Runtime and Keras.
TOLERANCE = 1e-4
#: Random inputs each graph is checked on.
CHECK_IMAGES = 4


def check_images(image_size: int, n: int = CHECK_IMAGES, seed: int = 0) -> np.ndarray:
    """Images to compare the backends on, like the ones a scan feeds the trunk: grey
    (three equal channels), a soft background, a bright band (a bone shaft) and mild
    noise; float32 in [0, 1], NHWC. Out-of-range inputs (uniform noise) can drive
    untrained test networks into activations of 1e4, where float32 rounding alone
    differs by more than the tolerance."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size
    out = np.empty((n, image_size, image_size, 3), np.float32)
    for i in range(n):
        angle, offset, width = rng.uniform(0, np.pi), rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.2)
        distance = np.abs((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle) + 0.5 - offset)
        grey = 0.2 + 0.2 * yy + 0.5 * (distance < width) + rng.uniform(0, 0.1, xx.shape)
        out[i] = np.clip(grey, 0.0, 1.0)[..., None]
    return out


def _session(data: bytes) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(data, session_options(None), ["CPUExecutionProvider"])


def _record(kind: str, data: bytes, source_sha256: str, max_abs_diff: float) -> dict[str, Any]:
    sha = sha256_bytes(data)
    return {
        "file": f"{ONNX_DIR}/{kind}-{sha[:12]}.onnx",
        "sha256": sha,
        "source_sha256": source_sha256,
        "max_abs_diff": float(max_abs_diff),
    }


def trunk_graph(arrays: Mapping[str, np.ndarray], image_size: int) -> bytes:
    """The serialised ONNX trunk of these weight arrays."""
    return trunk_model(arrays, image_size).SerializeToString()


def head_graph(arrays: Mapping[str, np.ndarray], feature_size: int, name: str) -> bytes:
    """The serialised ONNX graph of head ``name`` of these weight arrays."""
    return head_model(arrays, feature_size, name).SerializeToString()


def _as_nhwc(features: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(f.transpose(0, 2, 3, 1)) for f in features]


def stored_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    """``model``'s weights as its weight file stores them (float16 where large)."""
    return {key: storage_array(value) for key, value in model_arrays(model).items()}


@contextlib.contextmanager
def _computing_with(model: keras.Model, arrays: Mapping[str, np.ndarray]) -> Iterator[None]:
    """``model`` with ``arrays`` as its weights for the block, then its own again.

    A network just trained holds float32 weights; the bundle (and so its ONNX graph)
    holds them rounded to float16 where large, and the check must compare like with
    like, without building a second network.
    """
    own = model_arrays(model)
    assign_arrays(model, arrays, source="stored weights")
    try:
        yield
    finally:
        assign_arrays(model, own, source="own weights")


def _keras_outputs(
    model: keras.Model, arrays: Mapping[str, np.ndarray], inputs: list[np.ndarray]
) -> list[np.ndarray]:
    with _computing_with(model, arrays):
        out = model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def export_trunk(trunk: keras.Model, source_sha256: str) -> tuple[bytes, dict[str, Any]]:
    """The ONNX graph of a Keras trunk and its ``bundle.json`` record, checked against it.

    Raises :class:`BundleError` when the two differ by more than :data:`TOLERANCE`
    relative to the largest feature value.
    """
    size = int(trunk.inputs[0].shape[1])
    arrays = stored_arrays(trunk)
    data = trunk_graph(arrays, size)
    x = check_images(size)
    ours = _as_nhwc(_session(data).run(list(FEATURES), {IMAGE_INPUT: x}))
    theirs = _keras_outputs(trunk, arrays, [x])
    diff = max(_relative_diff(a, b) for a, b in zip(ours, theirs, strict=True))
    if not diff <= TOLERANCE:
        raise BundleError(f"ONNX trunk differs from Keras by {diff:.2e} (> {TOLERANCE})")
    return data, _record("trunk", data, source_sha256, diff)


def _relative_diff(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.max(np.abs(ours - theirs)) / max(1.0, float(np.max(np.abs(theirs)))))


def export_head(
    name: str, head: keras.Model, source_sha256: str, trunk_onnx: bytes, image_size: int
) -> tuple[bytes, dict[str, Any]]:
    """The ONNX graph of a Keras head and its record, checked against it on the features
    that the bundle's ONNX trunk (``trunk_onnx``) gives for random images.

    Raises :class:`BundleError` when the probabilities differ by more than :data:`TOLERANCE`.
    """
    feature_size = int(head.inputs[0].shape[1])
    arrays = stored_arrays(head)
    data = head_graph(arrays, feature_size, name)
    features = _session(trunk_onnx).run(list(FEATURES), {IMAGE_INPUT: check_images(image_size)})
    ours = _session(data).run(None, dict(zip(FEATURES, features, strict=True)))[0]
    theirs = _keras_outputs(head, arrays, _as_nhwc(features))[0]
    diff = float(np.max(np.abs(ours - theirs)))
    if not diff <= TOLERANCE:
        raise BundleError(f"ONNX head {name} differs from Keras by {diff:.2e} (> {TOLERANCE})")
    return data, _record(name, data, source_sha256, diff)


def onnx_section(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``meta``'s ONNX section, or an empty one."""
    section = meta.get(ONNX_SECTION) or {}
    return {
        "graph_version": GRAPH_VERSION,
        "opset": OPSET,
        "trunk": dict(section["trunk"]) if "trunk" in section else None,
        "heads": {k: dict(v) for k, v in section.get("heads", {}).items()},
    }


def read_trunk_graph(path: Path, meta: Mapping[str, Any]) -> bytes | None:
    """The bundle's ONNX trunk bytes (verified), or ``None`` when it has none for its
    current trunk weights."""
    record = (meta.get(ONNX_SECTION) or {}).get("trunk")
    if not record or record["source_sha256"] != meta["trunk"]["sha256"]:
        return None
    data = (Path(path) / record["file"]).read_bytes()
    if sha256_bytes(data) != record["sha256"]:
        raise BundleError(f"sha256 of {path / record['file']} does not match bundle.json")
    return data


def export_bundle(path: Path) -> dict[str, Any]:
    """Write ONNX graphs of every network of the bundle at ``path`` (``batchfrac models
    export-onnx``), each checked against Keras; return the new ``onnx`` section.

    Graphs that already match their weights are kept. ``bundle.json`` is replaced
    atomically; its ``bundle_id`` does not change.
    """
    from .format import read_meta
    from .runtime import BundleRuntime
    from .write import commit_onnx

    meta = read_meta(path)
    runtime = BundleRuntime(Path(path), meta)
    files: dict[str, bytes] = {}
    section = onnx_section(meta)
    trunk_sha = meta["trunk"]["sha256"]
    trunk_data = read_trunk_graph(path, meta)
    if trunk_data is None:
        trunk_data, section["trunk"] = export_trunk(runtime.trunk, trunk_sha)
        files[section["trunk"]["file"]] = trunk_data
    for name, head_meta in meta["heads"].items():
        current = section["heads"].get(name)
        if current and current["source_sha256"] == head_meta["sha256"]:
            continue
        data, record = export_head(
            name, runtime.head(name), head_meta["sha256"], trunk_data, runtime.image_size
        )
        section["heads"][name] = record
        files[record["file"]] = data
    commit_onnx(Path(path), section, files, expected=meta)
    return section
