"""Geometric primitives of the synthetic skeleton: bones as polygons in anatomy units.

Anatomy units: the radiograph's field of view is about 1 unit high, ``x`` grows to the
right and ``y`` grows downwards (image convention), ``(0, 0.5)`` is the centre. A
:class:`Piece` is one bone (or bone part) with an outer contour and a medullary contour;
:mod:`batchfrac.synth.raster` turns pieces into X-ray attenuation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike

Points = np.ndarray  # (N, 2) float64, x then y


@dataclass(frozen=True)
class Piece:
    """One bone as drawn: outer contour, optional medullary contour, density.

    ``inner`` is the medullary canal (marrow); when it is ``None`` the canal is the
    outer shape shrunk by ``cortex`` times its largest inscribed radius. ``axis``
    (start, end) and ``half_width`` describe long bones for fractures and hardware;
    ``flat`` bones (scapula) have a bright rim and a thin, even body. ``holes`` are
    regions of reduced density (the olecranon fossa).
    """

    name: str
    outer: Points
    inner: Points | None = None
    cortex: float = 0.3
    density: float = 1.0
    marrow: float = 0.45
    axis: tuple[Points, Points] | None = None
    half_width: float = 0.0
    flat: bool = False
    holes: tuple[Points, ...] = field(default=())

    def transformed(self, matrix: np.ndarray) -> Piece:
        """This piece mapped through a 2x3 similarity ``matrix`` (anatomy -> pixels)."""
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        axis = None
        if self.axis is not None:
            axis = (apply(matrix, self.axis[0]), apply(matrix, self.axis[1]))
        return replace(
            self,
            outer=apply(matrix, self.outer),
            inner=None if self.inner is None else apply(matrix, self.inner),
            axis=axis,
            half_width=self.half_width * scale,
            holes=tuple(apply(matrix, h) for h in self.holes),
        )


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) or one point (2,) mapped through a 2x3 affine ``matrix``."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """2x3 matrix: rotate by ``angle_deg`` about the origin, scale, then shift."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]], dtype=np.float64)


def direction(angle_deg: float) -> np.ndarray:
    """Unit vector at ``angle_deg`` from straight up (negative y), clockwise positive."""
    a = np.deg2rad(angle_deg)
    return np.array([np.sin(a), -np.cos(a)])


def ellipse(
    center: tuple[float, float] | np.ndarray, axes: tuple[float, float], angle_deg: float = 0.0
) -> Points:
    """Polygon of an ellipse with semi-axes ``axes`` (x, y before rotation)."""
    t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    pts = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)
    return apply(similarity(angle_deg, 1.0, (float(center[0]), float(center[1]))), pts)


def _resample(points: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points evenly spaced by arc length along a polyline, and unit tangents."""
    seg = np.diff(points, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    s = np.linspace(0.0, cum[-1], n)
    out = np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], axis=1)
    tang = np.gradient(out, axis=0)
    tang /= np.maximum(np.hypot(tang[:, 0], tang[:, 1])[:, None], 1e-9)
    return out, tang


def _profile(
    t: np.ndarray, w0: float, ws: float, w1: float, flare: tuple[float, float]
) -> np.ndarray:
    """Half-width along a long bone: ``ws`` in the shaft, flaring to ``w0``/``w1`` at the ends."""
    f0, f1 = flare
    g0 = np.clip(1.0 - t / f0, 0.0, 1.0) ** 2
    g1 = np.clip(1.0 - (1.0 - t) / f1, 0.0, 1.0) ** 2
    return ws + (w0 - ws) * g0 + (w1 - ws) * g1


def _tube(
    centre: np.ndarray, tang: np.ndarray, width: np.ndarray, caps: tuple[float, float]
) -> Points:
    """Closed polygon around a centreline with half-widths and elliptic end caps."""
    normal = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
    left = centre + normal * width[:, None]
    right = centre - normal * width[:, None]
    arc = np.linspace(0.0, np.pi, 13)[1:-1]

    def cap(p: np.ndarray, u: np.ndarray, n: np.ndarray, w: float, depth: float) -> np.ndarray:
        # half-ellipse from +n side to -n side bulging along u
        return p + np.outer(np.cos(arc), n) * w + np.outer(np.sin(arc), u) * w * depth

    end_cap = cap(centre[-1], tang[-1], normal[-1], width[-1], caps[1])
    start_cap = cap(centre[0], -tang[0], -normal[0], width[0], caps[0])
    return np.concatenate([left, end_cap, right[::-1], start_cap], axis=0)


def long_bone(
    name: str,
    path: ArrayLike,
    widths: tuple[float, float, float],
    *,
    flare: tuple[float, float] = (0.22, 0.22),
    caps: tuple[float, float] = (0.5, 0.5),
    cortex: tuple[float, float] = (0.42, 0.12),
    density: float = 1.0,
    marrow: float = 0.45,
    holes: tuple[Points, ...] = (),
) -> Piece:
    """A tubular bone along the polyline ``path`` (start -> end).

    ``widths`` = (half-width at the start, in the shaft, at the end); ``flare`` is the
    fraction of the length over which each end widens; ``caps`` the depth of the
    rounded ends relative to their width; ``cortex`` = (cortical thickness as a
    fraction of the half-width in the shaft, at the ends): thick diaphyseal cortex,
    thin shell around cancellous epiphyses.
    """
    pts = np.asarray(path, dtype=np.float64)
    centre, tang = _resample(pts, 40)
    t = np.linspace(0.0, 1.0, len(centre))
    w0, ws, w1 = widths
    width = _profile(t, w0, ws, w1, flare)
    shaftness = np.clip(1.0 - np.maximum(1.0 - t / flare[0], 1.0 - (1.0 - t) / flare[1]), 0, 1)
    frac = cortex[1] + (cortex[0] - cortex[1]) * shaftness
    inner_w = width * (1.0 - frac)
    inner_caps = (caps[0] * 0.8, caps[1] * 0.8)
    return Piece(
        name=name,
        outer=_tube(centre, tang, width, caps),
        inner=_tube(centre, tang, inner_w, inner_caps),
        density=density,
        marrow=marrow,
        axis=(pts[0].copy(), pts[-1].copy()),
        half_width=ws,
        holes=holes,
    )


def round_bone(
    name: str,
    center: tuple[float, float] | np.ndarray,
    axes: tuple[float, float],
    angle_deg: float = 0.0,
    *,
    cortex: float = 0.18,
    density: float = 1.0,
    marrow: float = 0.6,
) -> Piece:
    """A compact bone (carpal, humeral head, condyle): an ellipse with a thin cortex."""
    return Piece(
        name=name,
        outer=ellipse(center, axes, angle_deg),
        cortex=cortex,
        density=density,
        marrow=marrow,
    )


def polygon_bone(
    name: str,
    points: ArrayLike,
    *,
    cortex: float = 0.2,
    density: float = 1.0,
    marrow: float = 0.5,
    flat: bool = False,
) -> Piece:
    """A bone of arbitrary outline (scapula, glenoid), corners rounded."""
    return Piece(
        name=name,
        outer=smooth(points),
        cortex=cortex,
        density=density,
        marrow=marrow,
        flat=flat,
    )


def smooth(points: ArrayLike, iterations: int = 3) -> Points:
    """A closed polygon rounded by Chaikin corner cutting (organic outlines)."""
    pts = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    return pts
