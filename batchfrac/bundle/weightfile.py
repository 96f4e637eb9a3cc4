"""The framework-independent weight file of a trunk or a head: a deterministic ``.npz``.

One array per model variable, keyed ``<layer name>/<variable name>`` (e.g.
``top_bn/moving_variance``). Large float arrays (kernels) are stored as float16,
which halves the bundle and changes outputs by far less than 1e-3; small ones (biases,
BatchNormalization statistics, the input normalisation) stay float32 because they are
cheap and some, like BN variances, span a range where float16 is coarse. Every array
is cast back to the variable's dtype on load.

The zip members carry a fixed timestamp, so the same weights always give the same
bytes and the same sha256: file names and bundle ids are content addresses.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import BundleError

FLOAT16_MIN_SIZE = 4096
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def storage_array(array: np.ndarray) -> np.ndarray:
    """The array as it is stored: float16 when large and representable, else as is."""
    if (
        array.dtype.kind == "f"
        and array.size >= FLOAT16_MIN_SIZE
        and np.all(np.abs(array) <= _FLOAT16_MAX)
    ):
        return array.astype(np.float16)
    return array


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Deterministic ``.npz`` bytes of ``arrays`` (sorted keys, fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(
                member, np.asarray(storage_array(arrays[key]), order="C"), allow_pickle=False
            )
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE), member.getvalue())
    return buffer.getvalue()


def read_weight_file(path: Path, sha256: str) -> dict[str, np.ndarray]:
    """The arrays of a weight file whose bytes must hash to ``sha256``.

    Raises :class:`BundleError` when the file is unreadable, altered or not an ``.npz``.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read weight file {path}: {exc}") from exc
    if sha256_bytes(data) != sha256:
        raise BundleError(f"sha256 of {path} does not match bundle.json")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(f"unreadable weight file {path}: {exc}") from exc


def model_arrays(model: object) -> dict[str, np.ndarray]:
    """``<layer>/<variable>`` -> numpy value, for every weight of every (nested) layer."""
    from .network import iter_leaf_layers

    arrays: dict[str, np.ndarray] = {}
    for layer in iter_leaf_layers(model):
        for variable in layer.weights:
            key = f"{layer.name}/{variable.name}"
            if key in arrays:
                raise ValueError(f"duplicate weight name {key} in model {model!r}")
            arrays[key] = np.asarray(variable.numpy())
    return arrays


def encode_model(model: object) -> bytes:
    """The weight-file bytes of ``model``."""
    return encode_arrays(model_arrays(model))


def model_sha256(model: object) -> str:
    """sha256 of ``model``'s weight file: a trunk's value is what heads record as
    ``trunk_sha256`` (equal for the trunk written and the trunk loaded back)."""
    return sha256_bytes(encode_model(model))


def assign_arrays(model: object, arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Set every weight of ``model`` from ``arrays``; the key sets must match exactly.

    Raises :class:`BundleError` naming ``source`` on missing/extra keys or a shape
    mismatch. Layers that cache derived state (``Normalization``) are refreshed.
    """
    from .network import iter_leaf_layers

    expected = model_arrays(model)
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise BundleError(
            f"{source} does not fit the network: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for layer in iter_leaf_layers(model):
        for variable in layer.weights:
            key = f"{layer.name}/{variable.name}"
            value = arrays[key]
            if tuple(value.shape) != tuple(variable.shape):
                raise BundleError(
                    f"{source}: {key} has shape {value.shape}, the network {variable.shape}"
                )
            variable.assign(value.astype(variable.dtype))
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
