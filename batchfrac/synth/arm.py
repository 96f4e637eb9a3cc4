"""Skeletons of the arm: forearm, elbow, humerus, shoulder.

Drawn for the left side with lateral towards +x and proximal up; the renderer mirrors
right-sided images.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Skeleton, Tissue, View, jitter
from .shapes import Piece, direction, ellipse, long_bone, polygon_bone, round_bone


def _condyles(centre: np.ndarray, scale: float, spread: float) -> list[Piece]:
    """Capitellum and trochlea of the distal humerus (superimposed when lateral)."""
    cx, cy = centre
    return [
        round_bone("capitellum", (cx + 0.05 * scale * spread, cy), (0.045 * scale, 0.04 * scale),
                   density=0.55),
        round_bone("trochlea", (cx - 0.035 * scale * spread, cy + 0.006 * scale),
                   (0.05 * scale, 0.038 * scale), density=0.55),
    ]  # fmt: skip


def _distal_humerus(top: float, joint: np.ndarray, scale: float, spread: float) -> list[Piece]:
    fossa = ellipse(joint + np.array([0.0, -0.06]) * scale, (0.035 * scale * spread, 0.035 * scale))
    shaft = long_bone(
        "humerus",
        np.array([(joint[0] - 0.01 * scale, top), joint + np.array([0.0, -0.035]) * scale]),
        (0.045 * scale, 0.045 * scale, 0.05 * scale + 0.07 * scale * spread),
        flare=(0.02, 0.22),
        caps=(0.3, 0.45),
        cortex=(0.4, 0.1),
        holes=(fossa,) if spread > 0.5 else (),
    )
    return [shaft, *_condyles(joint, scale, spread)]


def forearm(view: View, rng: np.random.Generator) -> Skeleton:
    """AP/LAT forearm: radius and ulna over the full field, elbow above, wrist below."""
    s = max(view.spread, 0.3)
    scale = jitter(rng, 1.0, 0.04)
    bow = rng.uniform(0.008, 0.02)
    rx, ux = 0.065 * s, -0.055 * s
    radius = long_bone(
        "radius",
        [(rx, 0.09), (rx + bow + 0.02 * s, 0.5), (rx + 0.025 * s, 0.93)],
        (0.030, 0.02, jitter(rng, 0.052)),
        flare=(0.12, 0.3),
        caps=(0.25, 0.3),
    )
    ulna = long_bone(
        "ulna",
        [(ux, 0.035), (ux - 0.01 * s, 0.5), (ux - 0.025 * s, 0.945)],
        (jitter(rng, 0.042), 0.018, 0.022),
        flare=(0.22, 0.12),
        caps=(0.5, 0.5),
    )
    humerus = long_bone(
        "humerus",
        [(0.0, -0.4), (0.0, 0.02)],
        (0.04, 0.04, 0.04 + 0.07 * s),
        flare=(0.02, 0.35),
        caps=(0.3, 0.25),
    )
    carpals = [
        round_bone(f"carpal{i}", (x * s + 0.01, 1.0 + 0.01 * i), (0.03, 0.025))
        for i, x in enumerate((-0.05, 0.0, 0.05))
    ]
    return Skeleton(
        pieces=(humerus, radius, ulna, *carpals),
        margin=0.07 * scale,
        ref_width=0.02,
        aspect=0.62,
        fracture_targets=("radius", "ulna", "radius"),
        hardware_targets=("radius", "ulna"),
    )


def elbow(view: View, rng: np.random.Generator) -> Skeleton:
    """AP/OBL: straight; LAT: flexed ~90 degrees. Distal humerus, radial head, ulna."""
    scale = jitter(rng, 1.0, 0.05)
    s = view.spread
    joint = np.array([0.0, 0.45])
    pieces = _distal_humerus(-0.3, joint, scale, s)
    flex = {View.AP: rng.uniform(-4, 4), View.OBL: rng.uniform(25, 45),
            View.LAT: rng.uniform(75, 105)}[view]  # fmt: skip
    down = 180.0 - flex  # forearm direction, clockwise from up
    d = direction(down)
    n = np.array([d[1], -d[0]])  # towards the capitellum
    r0 = joint + (0.06 * s * n + 0.068 * d) * scale
    u0 = joint + (-0.045 * s * n + 0.02 * d) * scale
    pieces.append(
        long_bone(
            "radius",
            [r0, r0 + d * 0.9],
            (0.048 * scale, 0.03 * scale, 0.035 * scale),
            flare=(0.12, 0.1),
            caps=(0.15, 0.4),
            cortex=(0.42, 0.12),
        )
    )
    pieces.append(
        long_bone(
            "ulna",
            [u0 - d * 0.06 * scale, u0 + d * 0.9],
            (0.055 * scale, 0.032 * scale, 0.03 * scale),
            flare=(0.18, 0.1),
            caps=(0.6, 0.4),
            cortex=(0.42, 0.12),
        )
    )
    return Skeleton(
        pieces=tuple(pieces),
        margin=0.1 * scale,
        ref_width=0.03,
        aspect=0.85,
        fracture_targets=("radius", "humerus", "ulna"),
        hardware_targets=("humerus", "ulna"),
    )


def humerus(view: View, rng: np.random.Generator) -> Skeleton:
    """AP/LAT humerus: one long thick bone with a round head above and condyles below."""
    scale = jitter(rng, 1.0, 0.04)
    s = max(view.spread, 0.3)
    head_c = np.array([0.02 * s, 0.1])
    tub_side = 1.0 if view is not View.LAT else -0.6
    shaft = long_bone(
        "humerus",
        [(0.01, 0.13), (0.0, 0.5), (-0.005, 0.84)],
        (0.07, jitter(rng, 0.036), 0.045 + 0.05 * s),
        flare=(0.2, 0.25),
        caps=(0.3, 0.2),
        cortex=(0.45, 0.12),
    )
    head = round_bone("head", head_c, (0.082, 0.088), cortex=0.12, marrow=0.55)
    tub = round_bone("tuberosity", head_c + np.array([0.07 * tub_side, 0.03]), (0.035, 0.05))
    glenoid = polygon_bone(
        "glenoid",
        ellipse(head_c + np.array([-0.1 - 0.02 * s, -0.005]), (0.03, 0.085)),
        cortex=0.3,
    )
    pieces = [shaft, head, tub, glenoid, *_condyles(np.array([0.0, 0.89]), 0.75, s)]
    pieces.append(
        long_bone("radius_head", [(0.06 * s, 0.955), (0.07 * s, 1.3)], (0.035, 0.022, 0.022))
    )
    pieces.append(
        long_bone("ulna_head", [(-0.04 * s, 0.92), (-0.05 * s, 1.3)], (0.04, 0.022, 0.022))
    )
    return Skeleton(
        pieces=tuple(pieces),
        margin=0.11 * scale,
        ref_width=0.036,
        aspect=0.55,
        fracture_targets=("humerus", "humerus"),
        hardware_targets=("humerus",),
    )


def _ribs(rng: np.random.Generator, x0: float, x1: float) -> list[Piece]:
    ribs = []
    for i, y in enumerate(np.arange(0.3, 1.3, 0.17) + rng.uniform(-0.03, 0.03)):
        path = [(x0, y), (0.6 * x0 + 0.4 * x1, y - 0.01), (0.25 * x0 + 0.75 * x1, y + 0.06),
                (x1, y + 0.2)]  # fmt: skip
        ribs.append(
            long_bone(f"rib{i}", path, (0.016, 0.014, 0.016), density=0.45, cortex=(0.3, 0.3))
        )
    return ribs


def shoulder(view: View, rng: np.random.Generator) -> Skeleton:
    """AP/OBL: humeral head, glenoid, scapula, clavicle, ribs. LAT: scapular Y view."""
    head_c = np.array([0.18 + (0.03 if view is View.OBL else 0.0), jitter(rng, 0.42, 0.03)])
    shaft = long_bone(
        "humerus",
        [head_c + (0.04, 0.13), head_c + (0.07, 0.9)],
        (0.075, 0.058, 0.06),
        flare=(0.15, 0.01),
        caps=(0.15, 0.5),
    )
    head = round_bone("head", head_c, (jitter(rng, 0.125), 0.135), cortex=0.1, marrow=0.5)
    tub = round_bone("tuberosity", head_c + (0.1, 0.03), (0.05, 0.07), density=0.5)
    clav = long_bone(
        "clavicle",
        [(-0.75, 0.27), (-0.45, 0.17), (-0.15, 0.15), (0.1, 0.2)],
        (0.035, 0.026, 0.04),
        flare=(0.12, 0.15),
    )
    if view is View.LAT:
        scap = polygon_bone(
            "scapula",
            [(-0.02, 0.42), (-0.35, 0.12), (-0.28, 0.08), (0.0, 0.33), (0.2, 0.12), (0.26, 0.16),
             (0.04, 0.45), (0.02, 1.1), (-0.07, 1.1)],
            cortex=0.05,
            flat=True,
        )  # fmt: skip
        head = round_bone("head", (0.0, head_c[1]), (0.125, 0.135), cortex=0.1, marrow=0.5)
        shaft = long_bone("humerus", [(0.0, head_c[1] + 0.05), (0.05, 1.35)], (0.1, 0.06, 0.06))
        pieces = [scap, head, tub, shaft, *_ribs(rng, -0.7, 0.1)]
    else:
        gw = 0.035 if view is View.AP else 0.018
        glenoid = polygon_bone(
            "glenoid", ellipse(head_c + (-0.115, 0.02), (gw, 0.11)), cortex=0.35, density=1.1
        )
        scap = polygon_bone(
            "scapula",
            [(head_c[0] - 0.16, 0.36), (-0.1, 0.32), (-0.45, 0.25), (-0.3, 0.75), (-0.18, 1.05),
             (-0.1, 0.95), (head_c[0] - 0.17, 0.6)],
            cortex=0.05,
            flat=True,
        )  # fmt: skip
        acromion = long_bone(
            "acromion",
            [(-0.25, 0.31), (0.05, 0.25), (0.27, 0.26)],
            (0.028, 0.03, 0.04),
            density=0.9,
        )
        coracoid = long_bone("coracoid", [(-0.02, 0.38), (0.06, 0.3)], (0.03, 0.025, 0.03))
        pieces = [scap, glenoid, acromion, coracoid, head, tub, shaft, *_ribs(rng, -0.8, -0.02)]
    torso = np.array([(-1.0, 0.0), (-0.1, 0.05), (0.25, 0.18), (0.38, 0.35), (0.42, 0.7),
                      (0.4, 1.2), (-1.0, 1.2)])  # fmt: skip
    lung = ellipse((-0.6, 0.78), (0.38, 0.5), 10.0)
    return Skeleton(
        pieces=(clav, *pieces),
        margin=0.08,
        ref_width=0.05,
        aspect=1.2,
        fracture_targets=("humerus", "clavicle", "clavicle"),
        hardware_targets=("clavicle", "humerus"),
        tissue=(Tissue(torso, 1.0), Tissue(lung, -0.5)),
    )
