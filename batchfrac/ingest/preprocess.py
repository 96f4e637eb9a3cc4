"""The preprocess stage: decoded radiograph -> model input, driven by a serialisable spec.

The *same* :func:`preprocess` and :class:`PreprocessSpec` are used in training and in
scanning (no train/serve skew); the spec travels with every model bundle and report,
identified by :attr:`PreprocessSpec.spec_id`. This module is pure: no paths, no Dask,
no Keras.

Pipeline (see :func:`preprocess`)::

    2-D float32 [0,1] --shrink long side to working_size--> filter once per distinct
    channel op --stack to 3 channels--> letterbox to image_size x image_size (pad 0)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

import cv2
import numpy as np

from .. import schemas
from ..errors import SpecError
from .filters import (
    canny,
    clahe,
    fitted_shape,
    laplacian_sharpen,
    letterbox,
    prewitt,
    resize_long_side,
    roberts,
    sobel,
)

__all__ = [
    "SPEC_VERSION",
    "SCHEMA_NAME",
    "ChannelOp",
    "LetterboxGeometry",
    "PreprocessSpec",
    "letterbox_geometry",
    "preprocess",
    "to_working_size",
    "apply_channel_op",
]

#: Version of the spec's dict form; bump when a field is added or changes meaning.
SPEC_VERSION = 1
SCHEMA_NAME = "preprocess_spec.schema.json"


class ChannelOp(str, Enum):
    """The operation that fills one model input channel (values are the spec's strings)."""

    IMAGE = "image"
    CLAHE = "clahe"
    SOBEL = "sobel"
    PREWITT = "prewitt"
    ROBERTS = "roberts"
    CANNY = "canny"
    LAPLACIAN = "laplacian"


def _validate(document: Any) -> None:
    """Raise :class:`SpecError` listing every way ``document`` violates the schema."""
    errors = sorted(
        schemas.validator(SCHEMA_NAME).iter_errors(document),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    if errors:
        parts = []
        for error in errors:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            parts.append(f"{where}: {error.message}")
        raise SpecError(f"invalid preprocess spec ({SCHEMA_NAME}): " + "; ".join(parts))


@dataclass(frozen=True)
class PreprocessSpec:
    """How a decoded radiograph becomes the model input; validated on construction.

    ``channels`` holds one :class:`ChannelOp` value per model input channel. The
    default replicates a CLAHE-equalised image into all three channels: the
    ImageNet trunk sees a natural-looking grey picture, and CLAHE evens out the
    exposure differences between sites. Edge ops (``sobel``, ``canny``, ...) are the
    paper's alternatives, e.g. ``("image", "laplacian", "sobel")``.

    ``working_size`` defaults to 512 because MURA's PNGs have a long side of about
    512 px at most: filtering archive DICOMs (2000-3000 px) at the same scale keeps edge
    widths, and so the filter responses, comparable between training and scanning.
    ``canny_low``/``canny_high`` are on the scale of the ``sobel`` channel (fraction
    of a full 0 -> 1 step edge), see :func:`batchfrac.ingest.filters.canny`. The defaults
    (0.05, 0.10) keep faint lines of 10% contrast at the working size while staying
    above the estimated noise of MURA PNGs and downscaled DICOMs (Sobel ~0.01-0.02);
    they were chosen on synthetic images, not tuned on MURA.
    """

    image_size: int = 224
    channels: tuple[str, str, str] = ("clahe", "clahe", "clahe")
    laplacian_factor: float = 1.5
    canny_low: float = 0.05
    canny_high: float = 0.1
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    working_size: int = 512

    def __post_init__(self) -> None:
        channels = self.channels
        raw = self._fields_dict()
        raw["channels"] = list(channels) if isinstance(channels, (list, tuple)) else channels
        _validate({"version": SPEC_VERSION, **raw})
        if self.canny_low > self.canny_high:
            raise SpecError(
                f"invalid preprocess spec: canny_low ({self.canny_low}) must not exceed "
                f"canny_high ({self.canny_high})"
            )
        # Canonical Python types, so equal specs have equal JSON and equal spec_id
        # (3 and 3.0, "sobel" and ChannelOp.SOBEL, list and tuple).
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "channels":
                value = tuple(ChannelOp(c).value for c in value)
            elif f.type == "float":
                value = float(value)
            elif f.type == "int":
                value = int(value)
            object.__setattr__(self, f.name, value)

    def _fields_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict form, with ``version`` (see ``schemas/preprocess_spec``)."""
        d = self._fields_dict()
        d["channels"] = list(self.channels)
        return {"version": SPEC_VERSION, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessSpec:
        """Build a spec from its dict form; raise :class:`SpecError` if it is invalid.

        ``version`` is required; omitted fields take this version's defaults.
        """
        if not isinstance(d, Mapping):
            raise SpecError(
                f"invalid preprocess spec: expected a JSON object, got {type(d).__name__}"
            )
        document = dict(d)
        _validate(document)
        del document["version"]
        return cls(**document)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): the input of :attr:`spec_id`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        """Parse JSON text (e.g. a ``--spec`` file); raise :class:`SpecError` if invalid."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"preprocess spec is not valid JSON: {exc}") from exc
        return cls.from_dict(document)

    @property
    def spec_id(self) -> str:
        """First 12 hex digits of the sha256 of :meth:`to_json`, for provenance."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:12]


_OPS: dict[str, Callable[[np.ndarray, PreprocessSpec], np.ndarray]] = {
    ChannelOp.IMAGE.value: lambda img, spec: img,
    ChannelOp.CLAHE.value: lambda img, spec: clahe(img, spec.clahe_clip, spec.clahe_tiles),
    ChannelOp.SOBEL.value: lambda img, spec: sobel(img),
    ChannelOp.PREWITT.value: lambda img, spec: prewitt(img),
    ChannelOp.ROBERTS.value: lambda img, spec: roberts(img),
    ChannelOp.CANNY.value: lambda img, spec: canny(img, spec.canny_low, spec.canny_high),
    ChannelOp.LAPLACIAN.value: lambda img, spec: laplacian_sharpen(img, spec.laplacian_factor),
}


def _check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty 2-D greyscale image, got shape {image.shape}")
    if image.dtype.kind != "f":
        raise ValueError(f"expected a float image in [0, 1], got dtype {image.dtype}")
    return np.ascontiguousarray(image, dtype=np.float32)  # OpenCV misreads strided views


def to_working_size(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Shrink ``image`` (aspect preserved) so its long side is at most ``spec.working_size``.

    Images already small enough are returned as they are (never enlarged).
    """
    image = _check_image(image)
    if max(image.shape) <= spec.working_size:
        return image
    return resize_long_side(image, spec.working_size)


def apply_channel_op(op: str | ChannelOp, working: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Apply one channel operation, with ``spec``'s parameters, to a working-size image."""
    return _OPS[ChannelOp(op).value](working, spec)


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Turn a decoded radiograph into the model input.

    ``image`` is a 2-D float image in ``[0, 1]`` in display orientation (bone bright,
    MONOCHROME1 already inverted by decode). Returns a new ``(S, S, 3)`` float32
    array in ``[0, 1]``, ``S = spec.image_size``: the image is shrunk to the working
    size, each distinct channel op is computed once, and the stacked channels are
    letterboxed (aspect preserved, centred, padded with 0). Deterministic; the
    input is not modified.
    """
    working = to_working_size(image, spec)
    computed: dict[str, np.ndarray] = {}
    for op in spec.channels:
        if op not in computed:
            computed[op] = apply_channel_op(op, working, spec)
    stacked = cv2.merge([computed[op] for op in spec.channels])
    return letterbox(stacked, spec.image_size)


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where a ``rows x columns`` image lands in the ``image_size``-square model input.

    The image fills ``height x width`` input pixels from ``(top, left)``; the rest is
    padding. Points are in pixel-index coordinates (pixel ``i`` has its centre at ``i``;
    x = column, y = row) and both resizes of :func:`preprocess` map the image's edges onto
    the content's edges, so the mapping is affine per axis (the two scales differ by the
    rounding of the resized sides).
    """

    rows: int
    columns: int
    image_size: int
    top: int
    left: int
    height: int
    width: int

    @property
    def scale_x(self) -> float:
        """Input pixels per image pixel along x."""
        return self.width / self.columns

    @property
    def scale_y(self) -> float:
        """Input pixels per image pixel along y."""
        return self.height / self.rows

    def to_image(self, u: np.ndarray | float, v: np.ndarray | float) -> tuple[Any, Any]:
        """Input point(s) ``(u, v)`` -> image point(s) ``(x, y)`` (floats)."""
        x = (np.asarray(u, dtype=np.float64) + 0.5 - self.left) / self.scale_x - 0.5
        y = (np.asarray(v, dtype=np.float64) + 0.5 - self.top) / self.scale_y - 0.5
        return x, y

    def to_input(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[Any, Any]:
        """Image point(s) ``(x, y)`` -> input point(s) ``(u, v)`` (floats)."""
        u = (np.asarray(x, dtype=np.float64) + 0.5) * self.scale_x + self.left - 0.5
        v = (np.asarray(y, dtype=np.float64) + 0.5) * self.scale_y + self.top - 0.5
        return u, v

    @property
    def content(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices of the input that hold the image (not the padding)."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def letterbox_geometry(rows: int, columns: int, spec: PreprocessSpec) -> LetterboxGeometry:
    """The geometry :func:`preprocess` gives a ``rows x columns`` image under ``spec``.

    Computed with the same rounding as the shrink to ``spec.working_size`` and the
    letterbox. For a frame decoded at reduced resolution (ingest's ``reduced_resolution``
    flag) pass the header's Rows and Columns to map to stored pixels: the decoded frame
    covers the same field, so the mapping is off by at most the rounding of one side.
    """
    if rows < 1 or columns < 1:
        raise ValueError(f"image size must be positive, got {rows} x {columns}")
    h, w = rows, columns
    if max(h, w) > spec.working_size:
        h, w = fitted_shape((h, w), spec.working_size)
    size = spec.image_size
    if max(h, w) != size:
        h, w = fitted_shape((h, w), size)
    return LetterboxGeometry(rows, columns, size, (size - h) // 2, (size - w) // 2, h, w)
