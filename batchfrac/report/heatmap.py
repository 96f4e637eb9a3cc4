"""Heatmaps on radiographs: where a class-activation map lies on the stored image, and
the PNG pictures the report shows (thumbnails and colour overlays).

Pure numpy/OpenCV (no Keras): a map over the model input (Grad-CAM's 7 x 7 grid at
224 px, :mod:`batchfrac.bundle.gradcam`) is brought back to stored-image pixels through
the preprocessing's :class:`~batchfrac.ingest.preprocess.LetterboxGeometry`, on the cell
grid EfficientNet-B0 really uses (Keras pads its stride-2 layers one pixel less on the
top/left, so cell j is centred on input pixel 32 j + 31, not 32 j + 15.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..ingest.preprocess import LetterboxGeometry

#: Folders of a report set's pictures, relative to the output directory.
THUMBNAILS_DIR = "thumbnails"
HEATMAPS_DIR = "heatmaps"
#: Relative tolerance of a tie for the maximum (interpolation rounds in float32).
_TIE = 1e-5


@dataclass(frozen=True)
class CamGrid:
    """Where a coarse map's cells sit in the model input: cell ``(i, j)`` is centred on
    input pixel ``(offset + stride * j, offset + stride * i)`` (column, row)."""

    stride: float
    offset: float


def efficientnet_grid(image_size: int, stages: int = 5) -> CamGrid:
    """The cells of EfficientNet-B0's ``top_activation`` in a square ``image_size`` input.

    B0 halves the resolution ``stages`` times, each time with a stride-2 convolution after
    Keras' ``correct_pad``: on an even size it pads one pixel less before than after, so
    output pixel ``j`` is centred on input pixel ``2j + 1``, not ``2j + 0.5``. Over five
    stages that moves every cell half a cell down and right: at 224 px cell ``j`` is
    centred on pixel ``32 j + 31``, where a plain resize of the map would put ``32 j + 15.5``.
    """
    stride, offset, size = 1.0, 0.0, image_size
    for _ in range(stages):
        offset += stride * (1 if size % 2 == 0 else 0)
        stride *= 2.0
        size = -(-size // 2)
    return CamGrid(stride, offset)


def cam_on_input(cam: np.ndarray, image_size: int, grid: CamGrid | None = None) -> np.ndarray:
    """A coarse map (h, w) resampled bilinearly onto the ``image_size``-square model
    input, each cell's value at its centre (``grid``, default :func:`efficientnet_grid`),
    the outer cells' values carried on to the edges."""
    cam = np.ascontiguousarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"expected one 2-D map, got shape {cam.shape}")
    grid = grid or efficientnet_grid(image_size)
    inverse = np.array(  # input pixel -> cell coordinates
        [[1 / grid.stride, 0.0, -grid.offset / grid.stride],
         [0.0, 1 / grid.stride, -grid.offset / grid.stride]]
    )  # fmt: skip
    return cv2.warpAffine(
        cam,
        inverse,
        (image_size, image_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def cam_on_image(
    cam: np.ndarray,
    geometry: LetterboxGeometry,
    shape: tuple[int, int],
    grid: CamGrid | None = None,
) -> np.ndarray:
    """The map over the image alone (padding cut away), resized to ``shape`` (rows, columns):
    any picture of the same field, e.g. a display image shrunk for a report."""
    content = cam_on_input(cam, geometry.image_size, grid)[geometry.content]
    rows, columns = shape
    return cv2.resize(
        np.ascontiguousarray(content), (columns, rows), interpolation=cv2.INTER_LINEAR
    )


def heatmap_peak(
    cam: np.ndarray, geometry: LetterboxGeometry, grid: CamGrid | None = None
) -> tuple[int, int] | None:
    """The stored-image pixel ``(x, y)`` (column, row) where the map peaks.

    The map is upsampled to the model input (bilinear, :func:`cam_on_input`) and searched
    inside the image's part of it only (never the letterbox padding); the peak input
    pixel is mapped back with ``geometry`` and rounded. ``None`` when the map is zero
    there (no peak); tied maxima resolve to the middle of the tied pixels.
    """
    content = cam_on_input(cam, geometry.image_size, grid)[geometry.content]
    top = float(content.max())
    if not top > 0.0:
        return None
    # Beyond the outer cells' centres the map is flat (carried on to the edge), so the
    # maximum may be a plateau: take its middle, not its first pixel (an image corner).
    vs, us = np.nonzero(content >= top * (1.0 - _TIE))
    k = int(np.argmin((vs - vs.mean()) ** 2 + (us - us.mean()) ** 2))
    x, y = geometry.to_image(us[k] + geometry.left, vs[k] + geometry.top)
    column = min(max(int(np.floor(x + 0.5)), 0), geometry.columns - 1)
    row = min(max(int(np.floor(y + 0.5)), 0), geometry.rows - 1)
    return column, row


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
    """The display image as grey uint8 (H, W), shrunk so its long side is at most
    ``max_side`` (never enlarged). A grey PNG is about a third of the RGB one's bytes and
    half its encoding time."""
    return _grey_u8(display_image, max_side)


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
