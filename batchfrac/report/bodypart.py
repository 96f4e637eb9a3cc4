"""Cross-checks between the router's bone and the file's own (0018,0015) *Body Part Examined*.

Pure functions: the router decides the bone; the DICOM body part is recorded beside it and
only raises a flag when the two disagree (body part strings are free text in practice:
``HAND``, ``L WRIST``, ``XR_ELBOW``, ``UPPER ARM``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..defaults import DEFAULT_LOW_CONFIDENCE
from ..enums import Bone, ImageFlag

_ARM = frozenset({Bone.HUMERUS, Bone.FOREARM})

#: Normalised (0018,0015) terms -> the bones they are compatible with. DICOM PS3.16 CID 4031
#: defined terms plus spellings seen in archives. Terms that cover the whole limb
#: (``UPPER LIMB``, ``EXTREMITY``) are absent: they cannot contradict the router.
BODY_PART_BONES: Mapping[str, frozenset[Bone]] = {
    "HAND": frozenset({Bone.HAND}),
    "METACARPAL": frozenset({Bone.HAND}),
    "CARPUS": frozenset({Bone.WRIST}),
    "WRIST": frozenset({Bone.WRIST}),
    "SCAPHOID": frozenset({Bone.WRIST}),
    "FINGER": frozenset({Bone.FINGER}),
    "THUMB": frozenset({Bone.FINGER}),
    "DIGIT": frozenset({Bone.FINGER}),
    "PHALANX": frozenset({Bone.FINGER}),
    "ELBOW": frozenset({Bone.ELBOW}),
    "OLECRANON": frozenset({Bone.ELBOW}),
    "FOREARM": frozenset({Bone.FOREARM}),
    "LOWER ARM": frozenset({Bone.FOREARM}),
    "LOWERARM": frozenset({Bone.FOREARM}),
    "LOWRARM": frozenset({Bone.FOREARM}),
    "RADIUS": frozenset({Bone.FOREARM}),
    "ULNA": frozenset({Bone.FOREARM}),
    "HUMERUS": frozenset({Bone.HUMERUS}),
    "UPPER ARM": frozenset({Bone.HUMERUS}),
    "UPPERARM": frozenset({Bone.HUMERUS}),
    "UPPRARM": frozenset({Bone.HUMERUS}),
    "ARM": _ARM,
    "SHOULDER": frozenset({Bone.SHOULDER}),
    "SCAPULA": frozenset({Bone.SHOULDER}),
    "CLAVICLE": frozenset({Bone.SHOULDER}),
    "ACJOINT": frozenset({Bone.SHOULDER}),
}

_SEPARATORS = re.compile(r"[\s_\-/\\.,;:^]+")


def bones_for_body_part(value: str | None) -> frozenset[Bone] | None:
    """The bones compatible with a (0018,0015) *Body Part Examined* value, ``None`` if unknown.

    The value is upper-cased and split on separators; a whole-value match wins, then
    two-word terms (``UPPER ARM``), then single words (``L WRIST`` -> wrist). Words that map
    to different bones (``HAND WRIST``) give their union.
    """
    if not value:
        return None
    words = [w for w in _SEPARATORS.split(value.upper()) if w]
    if not words:
        return None
    whole = " ".join(words)
    if whole in BODY_PART_BONES:
        return BODY_PART_BONES[whole]
    found: set[Bone] = set()
    used: set[int] = set()
    for i in range(len(words) - 1):
        pair = f"{words[i]} {words[i + 1]}"
        if pair in BODY_PART_BONES:
            found |= BODY_PART_BONES[pair]
            used |= {i, i + 1}
    for i, word in enumerate(words):
        if i not in used and word in BODY_PART_BONES:
            found |= BODY_PART_BONES[word]
    return frozenset(found) if found else None


def routing_flags(
    body_part: str | None,
    bone: Bone,
    confidence: float,
    *,
    low_confidence: float = DEFAULT_LOW_CONFIDENCE,
) -> tuple[str, ...]:
    """Flags for one routed image: ``bodypart_mismatch`` and/or ``low_router_confidence``."""
    flags: list[str] = []
    compatible = bones_for_body_part(body_part)
    if compatible is not None and bone not in compatible:
        flags.append(ImageFlag.BODYPART_MISMATCH.value)
    if confidence < low_confidence:
        flags.append(ImageFlag.LOW_ROUTER_CONFIDENCE.value)
    return tuple(flags)
