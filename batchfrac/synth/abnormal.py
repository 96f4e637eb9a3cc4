"""Abnormalities drawn into a synthetic radiograph: displaced fractures and metal hardware.

An :class:`Injury` is drawn once per study from its own random stream (before any
geometry is known), so every view of one study shows the same injury of the same
bone. Sizes have floors relative to the image height so that a fracture gap or a
screw stays several pixels wide after downscaling to 224 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from .raster import fill
from .shapes import Piece

_LINE_SHIFT = 4  # fixed-point bits for sub-pixel line drawing


class Abnormality(str, Enum):
    """Kind of abnormality in an abnormal study (the ``abnormality`` CSV column)."""

    FRACTURE = "fracture"
    HARDWARE = "hardware"


@dataclass(frozen=True)
class Injury:
    """Random parameters of one study's abnormality, independent of the view geometry."""

    kind: Abnormality
    target: float  # which target piece, as a fraction of the target list
    where: float  # position along the visible part of the bone (0..1)
    cut_angle: float  # degrees from perpendicular to the bone axis
    angulation: float  # degrees the distal fragment turns
    shift: float  # lateral displacement, in bone half-widths (signed)
    gap: float  # distraction along the axis, in bone half-widths
    jag: tuple[float, ...]  # jitter of the fracture line
    device: float  # which hardware device (plate / wires / nail)
    count: float  # how many screws or wires
    side: float  # which side of the bone a plate lies on (signed)

    @classmethod
    def draw(cls, kind: Abnormality | str, rng: np.random.Generator) -> Injury:
        """Draw the parameters of an abnormality of ``kind``."""
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return cls(
            kind=Abnormality(kind),
            target=float(rng.random()),
            where=float(rng.uniform(0.2, 0.8)),
            cut_angle=float(rng.uniform(-35.0, 35.0)),
            angulation=float(rng.choice([-1.0, 1.0]) * rng.uniform(10.0, 22.0)),
            shift=float(sign * rng.uniform(0.5, 1.0)),
            gap=float(rng.uniform(0.35, 0.7)),
            jag=tuple(float(x) for x in rng.uniform(-1.0, 1.0, 9)),
            device=float(rng.random()),
            count=float(rng.random()),
            side=float(rng.choice([-1.0, 1.0])),
        )

    def pick(self, targets: tuple[str, ...]) -> str:
        """The name of the injured piece among ``targets``."""
        return targets[min(int(self.target * len(targets)), len(targets) - 1)]


def _frame(piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    if piece.axis is None:
        raise ValueError(f"piece {piece.name!r} has no axis; only long bones can be injured")
    p0, p1 = piece.axis
    length = float(np.hypot(*(p1 - p0)))
    u = (p1 - p0) / max(length, 1e-6)
    n = np.array([-u[1], u[0]])
    return p0, u, n, length


def visible_span(piece: Piece, shape: tuple[int, int], inset: float = 0.1) -> tuple[float, float]:
    """The part of the bone's axis (as fractions 0..1) inside the canvas minus ``inset``."""
    p0, u, _, length = _frame(piece)
    t = np.linspace(0.0, 1.0, 101)
    pts = p0 + np.outer(t * length, u)
    h, w = shape
    inside = (
        (pts[:, 0] > inset * w)
        & (pts[:, 0] < (1 - inset) * w)
        & (pts[:, 1] > inset * h)
        & (pts[:, 1] < (1 - inset) * h)
    )
    if not inside.any():
        return 0.3, 0.7
    return float(t[inside].min()), float(t[inside].max())


def fracture_site(piece: Piece, injury: Injury, shape: tuple[int, int]) -> np.ndarray:
    """Pixel position of the fracture (or of the hardware centre) on ``piece``'s axis."""
    p0, u, _, length = _frame(piece)
    lo, hi = visible_span(piece, shape)
    return p0 + u * length * (lo + injury.where * (hi - lo))


def cut_line(piece: Piece, injury: Injury, shape: tuple[int, int]) -> np.ndarray:
    """The jagged fracture line across ``piece`` (N, 2 pixel points), longer than the bone
    is wide: the bone's outline clips it."""
    _, u, n, _ = _frame(piece)
    site = fracture_site(piece, injury, shape)
    w = max(piece.half_width, 2.0)
    a = np.deg2rad(injury.cut_angle)
    cut = np.cos(a) * n + np.sin(a) * u
    reach = 3.0 * w / max(np.cos(a), 0.5)
    s = np.linspace(-reach, reach, len(injury.jag))
    line: np.ndarray = site + np.outer(s, cut) + np.outer(np.asarray(injury.jag) * 0.3 * w, u)
    return line


def fragment_motion(
    piece: Piece, injury: Injury, shape: tuple[int, int], height: int
) -> np.ndarray:
    """2x3 pixel matrix that moves the far fragment: turn about the fracture point, then
    slide apart along the axis and sideways."""
    _, u, n, _ = _frame(piece)
    site = fracture_site(piece, injury, shape)
    w = max(piece.half_width, 2.0)
    gap = max(injury.gap * w, 0.03 * height)
    shift = np.sign(injury.shift) * max(abs(injury.shift) * w, 0.025 * height)
    # cap the swing of a long fragment's far end at a few bone widths
    far_len = float(np.hypot(*(piece.axis[1] - site))) if piece.axis is not None else w
    limit = float(np.degrees(np.arctan(4.0 * w / max(far_len, 1.0))))
    angle = float(np.sign(injury.angulation) * min(abs(injury.angulation), max(limit, 6.0)))
    rot = cv2.getRotationMatrix2D((float(site[0]), float(site[1])), angle, 1.0)
    rot[:, 2] += u * gap + n * shift
    return rot


def fracture(att: np.ndarray, piece: Piece, injury: Injury, height: int) -> np.ndarray:
    """``att`` (this piece's attenuation alone) with the bone cut and one fragment moved.

    The cut is a jagged line across the bone (:func:`cut_line`); the fragment on the far
    side of the axis turns by ``angulation`` about the fracture point, slides sideways and
    apart (:func:`fragment_motion`), leaving a dark gap with sharp edges (or a bright
    overlap where fragments override).
    """
    _, u, _, _ = _frame(piece)
    line = cut_line(piece, injury, att.shape)
    far = 4.0 * max(att.shape)
    side = np.concatenate([line, [line[-1] + u * far, line[0] + u * far]])
    mask = np.zeros(att.shape, np.uint8)
    fill(mask, side)
    moving = att * mask
    staying = att * (1 - mask)
    rot = fragment_motion(piece, injury, att.shape, height)
    moved = cv2.warpAffine(
        moving, rot, (att.shape[1], att.shape[0]), flags=cv2.INTER_LINEAR, borderValue=0.0
    )
    return staying + moved


def fracture_extent(att: np.ndarray, piece: Piece, injury: Injury, height: int) -> np.ndarray:
    """Where :func:`fracture` breaks ``piece``: float32 0/1 mask of the cut edges of both
    fragments (the fracture line clipped to the bone, and its copy moved with the far
    fragment). Its bounding box also holds the gap or overlap between the fragments.
    """
    line = cut_line(piece, injury, att.shape)
    drawn = np.zeros(att.shape, np.uint8)
    pts = np.round(line * (1 << _LINE_SHIFT)).astype(np.int32)
    # 3 px wide: the last bone pixels on both sides of the cut
    cv2.polylines(drawn, [pts], False, 1, 3, cv2.LINE_8, _LINE_SHIFT)
    edges = (drawn * (att > 0)).astype(np.float32)
    rot = fragment_motion(piece, injury, att.shape, height)
    moved = cv2.warpAffine(
        edges, rot, (att.shape[1], att.shape[0]), flags=cv2.INTER_LINEAR, borderValue=0.0
    )
    return np.maximum(edges, (moved >= 0.5).astype(np.float32))


def _rect(centre: np.ndarray, along: np.ndarray, half_len: float, half_w: float) -> np.ndarray:
    across = np.array([-along[1], along[0]])
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    return np.array([centre + along * half_len * i + across * half_w * j for i, j in corners])


def _screw(head: np.ndarray, along: np.ndarray, length: float, width: float) -> np.ndarray:
    """Outline of a threaded screw from ``head`` along ``along`` (zig-zag thread)."""
    across = np.array([-along[1], along[0]])
    k = max(int(length / max(width * 0.8, 1.0)), 4)
    s = np.linspace(0.0, length, 2 * k + 1)
    tooth = np.where(np.arange(len(s)) % 2 == 1, 0.35 * width, 0.0)
    tooth[0] = tooth[-1] = 0.0
    half = width / 2 + tooth
    half[-1] = width * 0.15  # pointed tip
    left = head + np.outer(s, along) + np.outer(half, across)
    right = head + np.outer(s, along) - np.outer(half, across)
    return np.concatenate([left, right[::-1]])


def hardware(
    shape: tuple[int, int], piece: Piece, injury: Injury, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Metal attenuation map of the fixation device on ``piece``, and its centre.

    Long thick bones get a plate with screws or an intramedullary nail; small bones
    get Kirschner wires. Metal is far denser than bone, so it saturates the display.
    """
    _, u, n, length = _frame(piece)
    site = fracture_site(piece, injury, shape)
    w = max(piece.half_width, 2.0)
    lo, hi = visible_span(piece, shape)
    visible = (hi - lo) * length
    metal = np.zeros(shape, np.uint8)
    dense = np.zeros(shape, np.uint8)
    thin = w < 0.013 * height
    if thin or injury.device < 0.25:  # crossed Kirschner wires
        wire = max(0.2 * w, 0.006 * height)
        for i in range(2 + int(injury.count * 2)):
            a = np.deg2rad((25.0 + 12.0 * i) * (1 if i % 2 == 0 else -1))
            along = np.cos(a) * u + np.sin(a) * n
            centre = site + u * (i - 1) * 1.2 * w
            half_len = max(2.5 * w, 0.07 * height) / max(np.cos(a), 0.5)
            fill(dense, _rect(centre, along, half_len, wire / 2), value=255)
    elif injury.device < 0.5 and w > 0.02 * height:  # intramedullary nail
        centre = site - u * visible * 0.05
        fill(metal, _rect(centre, u, visible * 0.45, 0.5 * w), value=255)
        for k in (-0.38, 0.38):
            head = centre + u * visible * k - n * 1.4 * w
            fill(dense, _screw(head, n, 2.8 * w, max(0.3 * w, 0.008 * height)), value=255)
    else:  # plate and screws
        half_len = max(visible * 0.22, 4.0 * w)
        plate_w = float(np.clip(0.6 * w, 0.02 * height, 0.04 * height))
        centre = site + n * injury.side * 0.35 * w
        fill(metal, _rect(centre, u, half_len, plate_w / 2), value=255)
        screws = 3 + int(injury.count * 4)
        screw_w = float(np.clip(0.3 * w, 0.008 * height, 0.016 * height))
        for s in np.linspace(-0.85, 0.85, screws):
            head = centre + u * s * half_len + n * injury.side * 0.9 * w
            fill(dense, _screw(head, -n * injury.side, 2.2 * w, screw_w), value=255)
    metal_f = cv2.GaussianBlur(metal.astype(np.float32) / 255.0, (0, 0), 0.7)
    dense_f = cv2.GaussianBlur(dense.astype(np.float32) / 255.0, (0, 0), 0.7)
    return 3.5 * metal_f + 4.5 * dense_f, site
