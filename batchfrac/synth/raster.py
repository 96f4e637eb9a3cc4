"""Pieces (in pixels) -> X-ray attenuation maps, with OpenCV fills and distance transforms.

A bone is modelled as a tube: the path length of a ray through a cylinder of radius
``R`` at distance ``d`` from its edge is ``2 * sqrt(2 R d - d^2)``. Subtracting the
medullary tube from the outer tube gives the bright cortical walls and darker canal
of a real radiograph. Attenuation is expressed in units of a typical shaft diameter
so that every study type gets similar contrast.
"""

from __future__ import annotations

import cv2
import numpy as np

from .anatomy import Tissue
from .shapes import Piece, Points

_SHIFT = 4  # fixed-point bits for sub-pixel polygon filling


def fill(
    mask: np.ndarray, polygon: Points, offset: tuple[int, int] = (0, 0), value: int = 1
) -> None:
    """Fill ``polygon`` (pixel coords, x/y) into the uint8 ``mask`` in place."""
    pts = (np.asarray(polygon) - np.asarray(offset)) * (1 << _SHIFT)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], value, cv2.LINE_8, _SHIFT)


def chord(mask: np.ndarray) -> np.ndarray:
    """Path length through the region ``mask`` modelled as a tube (pixels)."""
    d = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    radius = float(d.max())
    if radius <= 0:
        return d
    return 2.0 * np.sqrt(np.clip(2.0 * radius * d - d * d, 0.0, None))


def texture_field(shape: tuple[int, int], rng: np.random.Generator, grain: float) -> np.ndarray:
    """Band-pass noise that looks like trabecular bone (zero mean, unit-ish spread)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    fine = cv2.GaussianBlur(noise, (0, 0), max(grain, 0.6))
    coarse = cv2.GaussianBlur(noise, (0, 0), max(grain * 3.0, 1.5))
    band = fine - coarse
    return band / (float(band.std()) + 1e-6)


def _roi(polygon: Points, shape: tuple[int, int], pad: int) -> tuple[int, int, int, int] | None:
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + pad
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, shape[1]), min(y1, shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def piece_attenuation(
    piece: Piece, shape: tuple[int, int], unit: float, texture: np.ndarray
) -> np.ndarray:
    """Full-canvas attenuation of one piece; ``unit`` = pixels per attenuation unit."""
    out = np.zeros(shape, np.float32)
    add_piece(out, piece, unit, texture)
    return out


def add_piece(canvas: np.ndarray, piece: Piece, unit: float, texture: np.ndarray) -> None:
    """Add the attenuation of ``piece`` (pixel coordinates) to ``canvas`` in place.

    The canal is the ``inner`` polygon, or the outer shape shrunk by ``cortex`` of its
    inscribed radius. Marrow is modulated by the trabecular ``texture``.
    """
    roi = _roi(piece.outer, canvas.shape, pad=3)
    if roi is None:
        return
    x0, y0, x1, y1 = roi
    # the distance transform needs the whole shape: draw on the unclipped bounding box
    bx0, by0 = np.floor(piece.outer.min(axis=0)).astype(int) - 3
    bx1, by1 = np.ceil(piece.outer.max(axis=0)).astype(int) + 3
    outer = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    fill(outer, piece.outer, (bx0, by0))
    dist = cv2.distanceTransform(outer, cv2.DIST_L2, 5)
    radius = float(dist.max())
    if radius <= 0.5:
        return
    if piece.inner is not None:
        inner = np.zeros_like(outer)
        fill(inner, piece.inner, (bx0, by0))
        inner &= outer
    else:
        inner = (dist > piece.cortex * radius).astype(np.uint8)
    tex = np.zeros(outer.shape, np.float32)
    ty0, tx0 = y0 - by0, x0 - bx0
    tex[ty0 : ty0 + (y1 - y0), tx0 : tx0 + (x1 - x0)] = texture[y0:y1, x0:x1]
    cancellous = _epiphyses(piece, (bx0, by0), outer.shape)
    marrow_density = piece.marrow * (0.85 + 0.25 * cancellous) * (1.0 + 0.3 * cancellous * tex)
    if piece.flat:
        # a thin plate seen face-on: even body, brighter rim where the edge is thick
        thickness = 0.2 * radius
        rim = cv2.GaussianBlur((outer - inner).astype(np.float32), (0, 0), 1.5)
        att = (1.4 * rim + 0.8 * marrow_density * inner) * thickness
    else:
        c_out = 2.0 * np.sqrt(np.clip(2.0 * radius * dist - dist * dist, 0.0, None))
        c_in = chord(inner)
        att = (c_out - c_in) + marrow_density * c_in
    att = att * (piece.density / unit)
    for hole in piece.holes:
        lucent = np.zeros_like(outer)
        fill(lucent, hole, (bx0, by0))
        soft = cv2.GaussianBlur(lucent.astype(np.float32), (0, 0), max(radius * 0.15, 1.0))
        att *= 1.0 - 0.55 * soft
    canvas[y0:y1, x0:x1] += att[ty0 : ty0 + (y1 - y0), tx0 : tx0 + (x1 - x0)]


def _epiphyses(piece: Piece, origin: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """Weight of cancellous (trabecular) bone: 1 near the ends of a long bone, else 1."""
    if piece.axis is None:
        return np.ones(shape, np.float32)
    p0, p1 = piece.axis
    axis = p1 - p0
    length2 = float(axis @ axis) + 1e-6
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    t = ((xx + origin[0] - p0[0]) * axis[0] + (yy + origin[1] - p0[1]) * axis[1]) / length2
    end = np.minimum(t, 1.0 - t) * np.sqrt(length2) / max(piece.half_width, 1.0)
    return np.clip(1.6 - end / 2.5, 0.0, 1.0).astype(np.float32)


def bone_mask(pieces: list[Piece], shape: tuple[int, int]) -> np.ndarray:
    """Union of the outer contours (uint8 0/1)."""
    mask = np.zeros(shape, np.uint8)
    for p in pieces:
        fill(mask, p.outer)
    return mask


def soft_tissue(
    bones: np.ndarray, margin_px: float, extra: list[Tissue], rng: np.random.Generator
) -> np.ndarray:
    """Soft-tissue thickness map (0..1): an envelope ``margin_px`` around the bones.

    ``extra`` regions (pixel coordinates) add tissue (torso) or remove it (lung).
    """
    shape = bones.shape
    dist = cv2.distanceTransform(1 - bones, cv2.DIST_L2, 5)
    envelope = (dist < margin_px).astype(np.float32)
    weights = np.zeros(shape, np.float32)
    for region in extra:
        m = np.zeros(shape, np.uint8)
        fill(m, region.outline)
        if region.weight > 0:
            envelope = np.maximum(envelope, m.astype(np.float32))
        else:
            weights += region.weight * m
    sigma = max(margin_px * 0.4, 1.5)
    envelope = (cv2.GaussianBlur(envelope, (0, 0), sigma) > 0.5).astype(np.uint8)
    thick = chord(envelope).astype(np.float32)
    thick /= float(thick.max()) + 1e-6
    noise = rng.standard_normal(shape, dtype=np.float32)
    lumps = np.asarray(cv2.GaussianBlur(noise, (0, 0), sigma * 2), dtype=np.float32)
    lumps /= float(np.abs(lumps).max()) + 1e-6
    thick *= 1.0 + 0.15 * lumps
    if extra:
        # flatten (a torso is not a cylinder), then thin it where there is air (lung)
        thick = np.where(envelope > 0, 0.55 + 0.45 * np.clip(thick, 0, 1), 0.0)
        thick = thick * (1.0 + cv2.GaussianBlur(weights, (0, 0), sigma * 3))
    return np.clip(thick, 0.0, None).astype(np.float32)
