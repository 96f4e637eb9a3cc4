"""Skeletons of the hand region: finger (close-up), hand (five rays), wrist.

Drawn for a left hand with the thumb towards +x and the fingertips up; the renderer
mirrors right-sided images.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Skeleton, View, jitter
from .shapes import Piece, direction, long_bone, round_bone

# (length, (base, shaft, head) half-widths) of metacarpal, proximal, middle, distal
_RAYS = {
    "2": ((0.25, (0.018, 0.011, 0.019)), (0.14, (0.017, 0.010, 0.014)),
          (0.085, (0.013, 0.008, 0.011)), (0.060, (0.011, 0.006, 0.008))),
    "3": ((0.24, (0.018, 0.011, 0.019)), (0.155, (0.017, 0.010, 0.014)),
          (0.100, (0.013, 0.008, 0.011)), (0.065, (0.011, 0.006, 0.008))),
    "4": ((0.22, (0.016, 0.010, 0.017)), (0.145, (0.016, 0.009, 0.013)),
          (0.095, (0.012, 0.007, 0.010)), (0.062, (0.010, 0.006, 0.008))),
    "5": ((0.20, (0.015, 0.009, 0.016)), (0.115, (0.014, 0.008, 0.012)),
          (0.070, (0.011, 0.007, 0.009)), (0.055, (0.009, 0.005, 0.007))),
}  # fmt: skip
_THUMB = ((0.15, (0.020, 0.012, 0.018)), (0.10, (0.016, 0.010, 0.013)),
          (0.07, (0.013, 0.007, 0.009)))  # fmt: skip
# (name, x, y, semi-axes, angle) of the carpal bones, hand scale, centred on the wrist
_CARPALS = (
    ("trapezium", 0.075, -0.035, (0.024, 0.020), 20.0),
    ("trapezoid", 0.040, -0.042, (0.018, 0.017), 0.0),
    ("capitate", 0.002, -0.035, (0.021, 0.030), 0.0),
    ("hamate", -0.045, -0.028, (0.023, 0.026), -10.0),
    ("scaphoid", 0.060, 0.020, (0.017, 0.031), -50.0),
    ("lunate", 0.012, 0.030, (0.021, 0.019), 0.0),
    ("triquetrum", -0.035, 0.018, (0.019, 0.017), 10.0),
    ("pisiform", -0.050, 0.010, (0.011, 0.011), 0.0),
)


def _chain(
    prefix: str,
    base: np.ndarray,
    angle: float,
    bones: tuple[tuple[float, tuple[float, float, float]], ...],
    bends: list[float],
    scale: float,
    rng: np.random.Generator,
) -> list[Piece]:
    """Bones end to end from ``base`` upwards, each turned by the next ``bends`` angle."""
    gap = 0.005 * scale
    pieces = []
    start = np.asarray(base, dtype=np.float64)
    for i, (length, widths) in enumerate(bones):
        angle += bends[i]
        end = start + direction(angle) * jitter(rng, length * scale, 0.05)
        w = tuple(x * scale for x in widths)
        pieces.append(
            long_bone(
                f"{prefix}{i}",
                [start, end],
                (w[0], w[1], w[2]),
                flare=(0.3, 0.3),
                caps=(0.35, 0.6),
                cortex=(0.45, 0.15),
                marrow=0.32,
            )
        )
        start = end + direction(angle) * (
            gap + 0.6 * w[2] + 0.35 * bones[min(i + 1, len(bones) - 1)][1][0] * scale
        )
    return pieces


def _carpals(center: np.ndarray, scale: float, spread: float, rng: np.random.Generator) -> list:
    pieces = []
    for name, x, y, axes, angle in _CARPALS:
        pos = center + np.array([x * spread, y]) * scale
        ax = (jitter(rng, axes[0] * scale * 1.3), jitter(rng, axes[1] * scale * 1.3))
        pieces.append(round_bone(name, pos, ax, angle, cortex=0.16, marrow=0.62))
    return pieces


def _forearm_ends(scale: float, spread: float, top: float, rng: np.random.Generator) -> list:
    """Distal radius and ulna, ending at ``top``, reaching down out of the field."""
    rx, ux = 0.05 * scale * spread + 0.01, -0.05 * scale * spread
    radius = long_bone(
        "radius",
        [(rx, top + 0.45 * scale), (rx - 0.005, top)],
        (0.03 * scale, 0.03 * scale, jitter(rng, 0.06 * scale)),
        flare=(0.02, 0.55),
        caps=(0.3, 0.28),
        cortex=(0.4, 0.1),
        density=0.8,
        marrow=0.38,
    )
    ulna = long_bone(
        "ulna",
        [(ux, top + 0.45 * scale), (ux + 0.003, top + 0.012 * scale)],
        (0.024 * scale, 0.022 * scale, jitter(rng, 0.026 * scale)),
        flare=(0.02, 0.35),
        caps=(0.3, 0.6),
        cortex=(0.4, 0.12),
    )
    return [radius, ulna]


def hand(view: View, rng: np.random.Generator) -> Skeleton:
    """PA/OBL/LAT hand: five rays of metacarpals and phalanges, carpals, distal forearm."""
    s = view.spread
    scale = jitter(rng, 1.0, 0.04)
    fan = rng.uniform(0.8, 1.3)
    pieces: list[Piece] = []
    bases = {"2": (0.055, 0.70, 6.0), "3": (0.015, 0.69, 0.0), "4": (-0.025, 0.70, -6.0),
             "5": (-0.062, 0.72, -13.0)}  # fmt: skip
    for ray, (x, y, angle) in bases.items():
        base = np.array([x * s * scale, 0.5 + (y - 0.5) * scale])
        a = angle * fan * max(s, 0.3)
        bends = [0.0, a * 0.5 + rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-3, 3)]
        pieces += _chain(f"mc{ray}_", base, a, _RAYS[ray], bends, scale, rng)
    thumb_base = np.array([(0.095 * s + 0.02) * scale, 0.5 + 0.235 * scale])
    thumb_angle = rng.uniform(30, 45) if s > 0.5 else rng.uniform(15, 30)
    pieces += _chain("mc1_", thumb_base, thumb_angle, _THUMB, [0.0, 8.0, 5.0], scale, rng)
    wrist_centre = np.array([0.012 * s * scale, 0.5 + 0.29 * scale])
    pieces += _carpals(wrist_centre, scale, max(s, 0.35), rng)
    pieces += _forearm_ends(scale, max(s, 0.3), 0.5 + 0.36 * scale, rng)
    return Skeleton(
        pieces=tuple(pieces),
        margin=0.032 * scale,
        ref_width=0.011,
        aspect=0.82,
        fracture_targets=("mc2_0", "mc3_0", "mc4_0", "mc5_0", "mc3_1", "mc4_1", "mc5_1"),
        hardware_targets=("mc2_0", "mc3_0", "mc4_0", "mc5_0"),
    )


def finger(view: View, rng: np.random.Generator) -> Skeleton:
    """Close-up of one finger: distal, middle and proximal phalanges, metacarpal head."""
    scale = jitter(rng, 1.9, 0.06)
    bend = {View.PA: (0.0, 4.0), View.OBL: (4.0, 12.0), View.LAT: (12.0, 24.0)}[view]
    bones = tuple(reversed(_RAYS["3"][:4]))  # distal first, going down to the metacarpal
    pieces = []
    start = np.array([0.0, 0.5 - 0.22 * scale])
    angle = 180.0 + rng.uniform(-4, 4)
    gap = 0.005 * scale
    sign = rng.choice([-1.0, 1.0])
    for i, (length, (w_base, w_shaft, w_head)) in enumerate(bones):
        if i:
            angle += sign * rng.uniform(*bend)
        ln = length * scale * (0.7 if i == 3 else 1.0)
        end = start + direction(angle) * jitter(rng, ln, 0.05)
        # drawn tip -> base, so the widths of the table are reversed
        pieces.append(
            long_bone(
                ("distal", "middle", "proximal", "metacarpal")[i],
                [start, end],
                (w_head * scale, w_shaft * scale, w_base * scale),
                flare=(0.3, 0.3),
                caps=(0.6, 0.35),
                cortex=(0.45, 0.15),
                marrow=0.32,
            )
        )
        nxt = bones[min(i + 1, 3)][1]
        start = end + direction(angle) * (gap + (0.35 * w_base + 0.6 * nxt[2]) * scale)
    return Skeleton(
        pieces=tuple(pieces),
        margin=0.03 * scale,
        ref_width=0.011 * scale,
        aspect=0.7,
        fracture_targets=("proximal", "middle", "proximal"),
        hardware_targets=("proximal", "middle"),
    )


def wrist(view: View, rng: np.random.Generator) -> Skeleton:
    """PA/LAT/OBL wrist: distal radius and ulna, carpal cluster, metacarpal bases."""
    s = view.spread
    scale = jitter(rng, 2.1, 0.05)
    centre = np.array([0.0, 0.5 + rng.uniform(-0.03, 0.03)])
    pieces: list[Piece] = _carpals(centre, scale, max(s, 0.35), rng)
    for ray, x, angle in (("2", 0.052, 6.0), ("3", 0.012, 0.0), ("4", -0.027, -6.0),
                          ("5", -0.062, -13.0)):  # fmt: skip
        base = centre + np.array([x * max(s, 0.3), -0.072]) * scale
        pieces += _chain(f"mc{ray}_", base, angle * s, _RAYS[ray][:1], [0.0], scale, rng)
    thumb = centre + np.array([0.09 * max(s, 0.4), -0.055]) * scale
    pieces += _chain("mc1_", thumb, rng.uniform(25, 40), _THUMB[:1], [0.0], scale, rng)
    pieces += _forearm_ends(scale, max(s, 0.3), centre[1] + 0.066 * scale, rng)
    return Skeleton(
        pieces=tuple(pieces),
        margin=0.035 * scale,
        ref_width=0.011 * scale,
        aspect=0.8,
        fracture_targets=("radius", "radius", "ulna", "mc3_0"),
        hardware_targets=("radius",),
    )
