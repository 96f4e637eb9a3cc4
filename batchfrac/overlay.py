"""Pictures for an auditor's report: a grey thumbnail and a heatmap overlay, as PNG bytes.

Pure numpy/OpenCV. The inputs are the decoded display image (2-D float in [0, 1], bone
bright, at any resolution of the stored field) and a class-activation map over the model
input with the :class:`~batchfrac.preprocess.LetterboxGeometry` that produced it. The
caller names the files (from report row keys, never from DICOM values).
"""

from __future__ import annotations

import cv2
import numpy as np

from .localisation import CamGrid, cam_on_image
from .preprocess import LetterboxGeometry

#: Blend weight of the colour map where the heatmap is 1 (it falls to 0 with the map).
OVERLAY_ALPHA = 0.5


def _grey_u8(image: np.ndarray, max_side: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty 2-D display image, got shape {image.shape}")
    if max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    grey = np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0)
    rows, columns = grey.shape
    scale = max_side / max(rows, columns)
    if scale < 1.0:
        size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
        grey = np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), np.float32)
    return np.rint(grey * 255.0).astype(np.uint8)


def render_thumbnail(display_image: np.ndarray, max_side: int = 256) -> np.ndarray:
    """The display image as RGB uint8, shrunk so its long side is at most ``max_side``
    (never enlarged)."""
    return cv2.cvtColor(_grey_u8(display_image, max_side), cv2.COLOR_GRAY2RGB)


def render_overlay(
    display_image: np.ndarray,
    cam: np.ndarray,
    geometry: LetterboxGeometry,
    max_side: int = 512,
    grid: CamGrid | None = None,
) -> np.ndarray:
    """The display image (RGB uint8, long side at most ``max_side``) with ``cam`` blended
    over it in the JET colour map.

    ``cam`` (h, w) in [0, 1] covers the model input; only its image part is used (the
    letterbox padding is cut away), stretched over ``display_image``, which may be at
    any resolution of the same field (``grid``: where the map's cells sit, see
    :func:`~batchfrac.localisation.cam_on_input`). The colour's weight is ``OVERLAY_ALPHA * cam``,
    so where the map is 0 the radiograph shows unchanged.
    """
    grey = _grey_u8(display_image, max_side)
    heat = np.clip(cam_on_image(cam, geometry, grey.shape[:2], grid), 0.0, 1.0)
    colour = cv2.applyColorMap(np.rint(heat * 255.0).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB).astype(np.float32)
    base = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB).astype(np.float32)
    weight = (OVERLAY_ALPHA * heat)[..., None]
    return np.rint(base * (1.0 - weight) + colour * weight).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file bytes of an RGB (H, W, 3) or grey (H, W) uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected a uint8 grey or RGB image, got {image.dtype} {image.shape}")
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"expected 3 channels (RGB), got {image.shape[2]}")
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buffer.tobytes()
