"""Pure image filters of the preprocess stage (Patel et al.: Sobel, Prewitt, Roberts,
Canny, Laplacian sharpening; plus CLAHE and the resize/letterbox geometry).

Every filter takes a 2-D ``float32`` image in ``[0, 1]`` (display orientation, bone
bright) and returns a new ``float32`` image in ``[0, 1]`` of the same shape; inputs are
never modified. The work is done by OpenCV on ``float32`` (or ``uint8`` where the
OpenCV algorithm needs it) and in-place numpy, without Python loops or ``float64``
copies, because scanning runs these on every image of an archive. Results are
bitwise reproducible (they do not depend on the input buffer's memory alignment).

Edge magnitudes are normalised by a *fixed*, image-independent constant: the
filter's response to an ideal axis-aligned unit step (0 -> 1). A full-contrast
edge therefore maps to 1.0 whatever the rest of the image looks like, a
constant image maps to exactly 0, and the same edge contrast gives the same value
in a dark and in a bright image (contrast itself is normalised earlier, by the
VOI window in decode). Corners and one-pixel lines can respond slightly above a
unit step (at most 1.118x for Sobel, 1.054x for Prewitt); those values are
clipped to 1.0. Per-image max normalisation is deliberately avoided: it would
amplify noise on flat images and make the scale depend on the brightest edge.

Borders use OpenCV's default ``BORDER_REFLECT_101``, so a constant image has zero
gradient everywhere, borders included.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "SOBEL_UNIT_STEP",
    "PREWITT_UNIT_STEP",
    "ROBERTS_UNIT_STEP",
    "sobel",
    "prewitt",
    "roberts",
    "canny",
    "laplacian_sharpen",
    "clahe",
    "resize_long_side",
    "letterbox",
]

_DERIVATIVE = np.array([-1, 0, 1], dtype=np.float32)
_BOX = np.array([1, 1, 1], dtype=np.float32)
_ROBERTS_A = np.array([[1, 0], [0, -1]], dtype=np.float32)
_ROBERTS_B = np.array([[0, 1], [-1, 0]], dtype=np.float32)

#: Gradient magnitude of each operator on an axis-aligned 0 -> 1 step edge.
SOBEL_UNIT_STEP = 4.0
PREWITT_UNIT_STEP = 3.0
ROBERTS_UNIT_STEP = math.sqrt(2.0)
#: Magnitudes below this (in unit steps) are float32 rounding residue of flat areas
#: (e.g. 0.2 + 0.2 + 0.2 summed in two orders) and are set to exactly 0.
_RESIDUE = 1e-6


def _as_float_image(img: np.ndarray) -> np.ndarray:
    """``img`` as a C-contiguous 2-D float32 array (no copy when it already is one).

    OpenCV misreads strided views (a transposed or ``[:, ::2]`` array), hence the
    contiguity requirement.
    """
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale image, got shape {img.shape}")
    if img.size == 0:
        raise ValueError("expected a non-empty image")
    return np.ascontiguousarray(img, dtype=np.float32)


def _normalised_magnitude(gx: np.ndarray, gy: np.ndarray, unit_step: float) -> np.ndarray:
    # numpy, not cv2.magnitude: OpenCV's SIMD sqrt differs by an ulp depending on
    # the buffers' memory alignment, which would make outputs non-reproducible.
    mag = np.multiply(gx, gx, out=gx)
    mag += np.multiply(gy, gy, out=gy)
    np.sqrt(mag, out=mag)
    mag *= np.float32(1.0 / unit_step)
    cv2.threshold(mag, _RESIDUE, 0.0, cv2.THRESH_TOZERO, dst=mag)
    cv2.threshold(mag, 1.0, 1.0, cv2.THRESH_TRUNC, dst=mag)
    return mag


def sobel(img: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude (3x3), divided by :data:`SOBEL_UNIT_STEP`, clipped to 1."""
    img = _as_float_image(img)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    return _normalised_magnitude(gx, gy, SOBEL_UNIT_STEP)


def prewitt(img: np.ndarray) -> np.ndarray:
    """Prewitt gradient magnitude (3x3), divided by :data:`PREWITT_UNIT_STEP`, clipped to 1."""
    img = _as_float_image(img)
    gx = cv2.sepFilter2D(img, cv2.CV_32F, _DERIVATIVE, _BOX)
    gy = cv2.sepFilter2D(img, cv2.CV_32F, _BOX, _DERIVATIVE)
    return _normalised_magnitude(gx, gy, PREWITT_UNIT_STEP)


def roberts(img: np.ndarray) -> np.ndarray:
    """Roberts cross gradient magnitude (2x2), divided by :data:`ROBERTS_UNIT_STEP`.

    The 2x2 kernels are anchored at their top-left cell, so the response to an edge
    between columns ``c`` and ``c + 1`` lands in column ``c``. Its maximum is exactly
    a unit step, so nothing is clipped.
    """
    img = _as_float_image(img)
    ga = cv2.filter2D(img, cv2.CV_32F, _ROBERTS_A, anchor=(0, 0))
    gb = cv2.filter2D(img, cv2.CV_32F, _ROBERTS_B, anchor=(0, 0))
    return _normalised_magnitude(ga, gb, ROBERTS_UNIT_STEP)


def canny(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edge map: 1.0 on edge pixels, 0.0 elsewhere.

    ``low`` and ``high`` are the hysteresis thresholds on the same scale as
    :func:`sobel`'s output (gradient magnitude as a fraction of a full 0 -> 1 step),
    so ``high=0.2`` seeds edges only where a step has at least a fifth of full
    contrast; OpenCV's customary ``Canny(u8, 100, 200)`` is roughly ``(0.1, 0.2)``
    here. The image is quantised to ``uint8`` (OpenCV's Canny needs it) and no
    extra smoothing is applied: the aspect-preserving downscale to the working size
    already averages noise. Uses the L2 gradient norm and a 3x3 Sobel aperture.
    """
    if not 0.0 <= low <= high:
        raise ValueError(f"canny thresholds must satisfy 0 <= low <= high, got {low}, {high}")
    u8 = cv2.convertScaleAbs(_as_float_image(img), alpha=255.0)
    scale = 255.0 * SOBEL_UNIT_STEP
    edges = cv2.Canny(u8, low * scale, high * scale, apertureSize=3, L2gradient=True)
    return (edges > 0).astype(np.float32)


def laplacian_sharpen(img: np.ndarray, factor: float) -> np.ndarray:
    """Laplacian sharpening ``img - factor * laplacian(img)``, clipped to ``[0, 1]``.

    Uses the 4-neighbour Laplacian ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` folded into a
    single 3x3 kernel (one ``filter2D`` pass). ``factor=0`` is the identity; the paper
    shows 1.5 and 3.0. Clipping means a full-contrast (0 -> 1) edge cannot gain
    contrast; mid-grey edges do.
    """
    img = _as_float_image(img)
    f = float(factor)
    kernel = np.array([[0.0, -f, 0.0], [-f, 1.0 + 4.0 * f, -f], [0.0, -f, 0.0]], dtype=np.float32)
    out = cv2.filter2D(img, cv2.CV_32F, kernel)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def clahe(img: np.ndarray, clip: float, tiles: int) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation on a ``tiles x tiles`` grid.

    Runs on ``uint8`` on purpose: OpenCV scales ``clip`` by the tile area over the
    histogram size, so on ``uint16`` (65536 bins) a clip of 2.0 collapses to one
    count per bin and means something else entirely. With 256 bins ``clip`` has its
    usual meaning (2.0 = a bin may hold twice the uniform share). The output is
    therefore quantised to 256 levels.
    """
    u8 = cv2.convertScaleAbs(_as_float_image(img), alpha=255.0)
    equalised = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(tiles, tiles)).apply(u8)
    out = equalised.astype(np.float32)
    out *= np.float32(1.0 / 255.0)
    return out


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width * height < img.shape[0] * img.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(img), (width, height), interpolation=interpolation)


def fitted_shape(shape: tuple[int, ...], n: int) -> tuple[int, int]:
    """(height, width) with the long side ``n`` and the aspect ratio of ``shape``."""
    h, w = shape[0], shape[1]
    scale = n / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_long_side(img: np.ndarray, n: int) -> np.ndarray:
    """Resize so the long side is ``n`` pixels, keeping the aspect ratio.

    Shrinks with ``INTER_AREA`` (averages, no aliasing), enlarges with
    ``INTER_LINEAR`` (no overshoot, so ``[0, 1]`` stays ``[0, 1]``). Works on
    (H, W) and (H, W, C) arrays and keeps the dtype. Returns ``img`` itself when
    its long side is already ``n``.
    """
    if n < 1:
        raise ValueError(f"target size must be positive, got {n}")
    if max(img.shape[0], img.shape[1]) == n:
        return img
    h, w = fitted_shape(img.shape, n)
    return _resize(img, w, h)


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """Fit ``img`` into a ``size x size`` square, aspect preserved, centred, padded with 0.

    The long side becomes ``size``; the short side is padded equally on both sides
    (the extra pixel, if any, goes after). Works on (H, W) and (H, W, C) arrays and
    keeps the dtype.
    """
    if size < 1:
        raise ValueError(f"letterbox size must be positive, got {size}")
    fitted = resize_long_side(img, size)
    h, w = fitted.shape[0], fitted.shape[1]
    out = np.zeros((size, size, *img.shape[2:]), dtype=img.dtype)
    top, left = (size - h) // 2, (size - w) // 2
    out[top : top + h, left : left + w] = fitted.reshape(h, w, *img.shape[2:])
    return out
