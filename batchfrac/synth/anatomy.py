"""Per-bone skeletons of the seven MURA study types, in anatomy units.

:func:`build_skeleton` returns the bones of one radiographic view with small random
variations (sizes, angles, finger spread). The layouts live in :mod:`.hand`
(finger, hand, wrist) and :mod:`.arm` (forearm, elbow, humerus, shoulder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..enums import Bone
from .shapes import Piece, Points


class View(str, Enum):
    """Radiographic projection, written to (0018,5101) *View Position*."""

    AP = "AP"
    PA = "PA"
    LAT = "LAT"
    OBL = "OBL"

    @property
    def spread(self) -> float:
        """How far side-by-side bones stay apart: 1 frontal, small when superimposed."""
        return {View.AP: 1.0, View.PA: 1.0, View.OBL: 0.55, View.LAT: 0.18}[self]


#: The projections a real department takes for each study type (first = the default).
VIEWS: dict[Bone, tuple[View, ...]] = {
    Bone.ELBOW: (View.AP, View.LAT, View.OBL),
    Bone.FINGER: (View.PA, View.LAT, View.OBL),
    Bone.FOREARM: (View.AP, View.LAT),
    Bone.HAND: (View.PA, View.OBL, View.LAT),
    Bone.HUMERUS: (View.AP, View.LAT),
    Bone.SHOULDER: (View.AP, View.OBL, View.LAT),
    Bone.WRIST: (View.PA, View.LAT, View.OBL),
}


@dataclass(frozen=True)
class Tissue:
    """An extra soft-tissue region: ``weight`` > 0 adds tissue, < 0 removes it (lung)."""

    outline: Points
    weight: float


@dataclass(frozen=True)
class Skeleton:
    """The bones of one view and how to draw the soft tissue around them.

    ``margin`` is the soft-tissue thickness around the bones (anatomy units);
    ``ref_width`` the typical shaft half-width, used to normalise bone contrast;
    ``aspect`` the natural width/height of the field; ``fracture_targets`` and
    ``hardware_targets`` name the pieces an abnormality may involve (stable across
    views of one study type, so one study's views show the same injury).
    """

    pieces: tuple[Piece, ...]
    margin: float
    ref_width: float
    aspect: float
    fracture_targets: tuple[str, ...]
    hardware_targets: tuple[str, ...]
    tissue: tuple[Tissue, ...] = ()

    def piece(self, name: str) -> Piece:
        """The piece called ``name``."""
        for p in self.pieces:
            if p.name == name:
                return p
        raise KeyError(name)


Builder = Callable[[View, np.random.Generator], Skeleton]


def jitter(rng: np.random.Generator, value: float, rel: float = 0.06) -> float:
    """``value`` varied by a relative amount (uniform in +-``rel``)."""
    return float(value * (1.0 + rng.uniform(-rel, rel)))


def build_skeleton(bone: Bone, view: View, rng: np.random.Generator) -> Skeleton:
    """The skeleton of ``bone`` seen in ``view``, with random anatomical variation."""
    from . import arm, hand

    builders: dict[Bone, Builder] = {
        Bone.FINGER: hand.finger,
        Bone.HAND: hand.hand,
        Bone.WRIST: hand.wrist,
        Bone.FOREARM: arm.forearm,
        Bone.ELBOW: arm.elbow,
        Bone.HUMERUS: arm.humerus,
        Bone.SHOULDER: arm.shoulder,
    }
    return builders[Bone(bone)](View(view), rng)
