"""The deterministic plan of a synthetic archive: patients, studies, series, images.

Everything here is a pure function of the :class:`SynthConfig`: UIDs are name-based
UUIDs of the seed and indices, dates come from the seeded generator, never from
the clock.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import numpy as np

from ..enums import Bone
from .abnormal import Abnormality
from .anatomy import VIEWS, View
from .config import Syntax, SynthConfig

#: Natural width/height of each study type's images (shoulder films are landscape).
ASPECT: dict[Bone, float] = {
    Bone.ELBOW: 0.85,
    Bone.FINGER: 0.7,
    Bone.FOREARM: 0.65,
    Bone.HAND: 0.8,
    Bone.HUMERUS: 0.6,
    Bone.SHOULDER: 1.25,
    Bone.WRIST: 0.8,
}
_BITS = (10, 10, 12, 12, 12, 12, 14, 14, 15, 16)
_EPOCH = dt.date(2015, 1, 5)


_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://batchfrac.invalid/synth")


def uid(seed: int, *parts: object) -> str:
    """A UID that depends only on ``seed`` and ``parts``: ``2.25.<name-based UUID>``.

    (``pydicom.uid.generate_uid(prefix=None, entropy_srcs=...)`` ignores the
    entropy in pydicom 3 and returns a random UUID, so a version-5 UUID of the
    seed and indices is used, which is what the 2.25 arc is for.)
    """
    name = "/".join(["batchfrac-synth", str(seed), *map(str, parts)])
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


def stream(seed: int, *parts: int) -> np.random.Generator:
    """An independent random stream for ``(seed, *parts)``."""
    return np.random.default_rng([seed, *parts])


@dataclass(frozen=True)
class Patient:
    """One synthetic patient: identity shared by all of their studies."""

    index: int
    patient_id: str
    name: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class ImagePlan:
    """One image (one file) of a study."""

    number: int  # (0020,0013) Instance Number, 1-based within the study
    series: int  # (0020,0011) Series Number
    view: View
    visible: bool  # the study's abnormality is drawn in this image
    rows: int
    columns: int
    syntax: Syntax
    photometric: str
    bits_stored: int
    sop_instance_uid: str
    series_instance_uid: str


@dataclass(frozen=True)
class StudyPlan:
    """One study: a bone, a label, 1-4 views in one or two series."""

    index: int
    patient: Patient
    bone: Bone
    abnormality: Abnormality | None
    side: str  # "L" or "R"
    modality: str  # "CR" or "DX"
    body_part: str | None  # (0018,0015) as written: sometimes missing or wrong
    study_date: str
    study_time: str
    accession: str
    study_instance_uid: str
    images: tuple[ImagePlan, ...]

    @property
    def label(self) -> str:
        """``"abnormal"`` or ``"normal"`` (MURA: positive / negative)."""
        return "normal" if self.abnormality is None else "abnormal"


def bone_sequence(n: int, rng: np.random.Generator) -> list[Bone]:
    """``n`` bones, each block of seven a permutation: every type appears when n >= 7."""
    bones: list[Bone] = []
    while len(bones) < n:
        bones += [list(Bone)[i] for i in rng.permutation(len(Bone))]
    return bones[:n]


def abnormal_flags(bones: list[Bone], fraction: float, rng: np.random.Generator) -> list[bool]:
    """Which studies are abnormal: ``fraction`` of each bone type, spread evenly.

    Each bone type runs its own accumulator; their phases are spread evenly over
    [0, 1), so the total is also within a study or two of ``fraction`` of all.
    """
    offset = rng.random()
    order = rng.permutation(len(Bone))
    phase = {b: (offset + order[i] / len(Bone)) % 1.0 for i, b in enumerate(Bone)}
    seen: dict[Bone, int] = dict.fromkeys(Bone, 0)
    flags = []
    for b in bones:
        k = seen[b]
        flags.append(int((k + 1) * fraction + phase[b]) > int(k * fraction + phase[b]))
        seen[b] += 1
    return flags


def image_size(bone: Bone, rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int]:
    """(rows, columns) with both sides in [lo, hi] and the bone's usual aspect."""
    long_side = int(rng.integers(lo, hi + 1))
    aspect = ASPECT[bone]
    short = int(np.clip(round(long_side * min(aspect, 1 / aspect)), lo, hi))
    return (long_side, short) if aspect < 1 else (short, long_side)


def _body_part(bone: Bone, rng: np.random.Generator) -> str | None:
    """(0018,0015) as real archives hold it: 10% missing, 5% wrong."""
    r = rng.random()
    if r < 0.10:
        return None
    if r < 0.15:
        others = [b.value.upper() for b in Bone if b is not bone] + ["EXTREMITY"]
        return str(others[int(rng.integers(len(others)))])
    return bone.value.upper()


def make_patients(config: SynthConfig, rng: np.random.Generator) -> list[int]:
    """Patient index of each study: patients have 1-3 studies, in order."""
    owners: list[int] = []
    patient = 0
    while len(owners) < config.studies:
        owners += [patient] * int(rng.choice([1, 1, 1, 2, 2, 3]))
        patient += 1
    return owners[: config.studies]


def plan_archive(config: SynthConfig, syntaxes: tuple[Syntax, ...]) -> list[StudyPlan]:
    """The full, deterministic plan of a DICOM archive (``syntaxes`` used in rotation)."""
    rng = stream(config.seed, 0)
    bones = bone_sequence(config.studies, rng)
    flags = abnormal_flags(bones, config.abnormal_fraction, rng)
    owners = make_patients(config, rng)
    patients: dict[int, Patient] = {}
    studies = []
    counter = 0
    for i, (bone, abnormal, owner) in enumerate(zip(bones, flags, owners, strict=True)):
        if owner not in patients:
            born = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 65 * 365)))
            patients[owner] = Patient(
                index=owner,
                patient_id=f"SYNTH{owner + 1:04d}",
                name=f"SYNTH^{owner + 1:04d}",
                birth_date=born.strftime("%Y%m%d"),
                sex=str(rng.choice(["F", "M"])),
            )
        srng = stream(config.seed, 1, i)
        kind = None
        if abnormal:
            kind = Abnormality.FRACTURE if srng.random() < 0.65 else Abnormality.HARDWARE
        n = int(srng.choice([1, 2, 2, 3, 3, 3, 4]))
        views = VIEWS[bone]
        two_series = n >= 2 and srng.random() < 0.3
        hidden = n - 1 if (kind is not None and n >= 3 and srng.random() < 0.3) else -1
        study_uid = uid(config.seed, "study", i)
        images = []
        for j in range(n):
            series = 2 if two_series and j >= n // 2 else 1
            rows, cols = image_size(bone, srng, config.min_size, config.max_size)
            images.append(
                ImagePlan(
                    number=j + 1,
                    series=series,
                    view=views[j % len(views)],
                    visible=kind is not None and j != hidden,
                    rows=rows,
                    columns=cols,
                    syntax=syntaxes[counter % len(syntaxes)],
                    photometric="MONOCHROME1" if srng.random() < 0.3 else "MONOCHROME2",
                    bits_stored=int(srng.choice(_BITS)),
                    sop_instance_uid=uid(config.seed, "image", i, j),
                    series_instance_uid=uid(config.seed, "series", i, series),
                )
            )
            counter += 1
        day = _EPOCH + dt.timedelta(days=int(srng.integers(0, 8 * 365)))
        studies.append(
            StudyPlan(
                index=i,
                patient=patients[owner],
                bone=bone,
                abnormality=kind,
                side="L" if srng.random() < 0.5 else "R",
                modality="CR" if srng.random() < 0.5 else "DX",
                body_part=_body_part(bone, srng),
                study_date=day.strftime("%Y%m%d"),
                study_time=f"{int(srng.integers(7, 20)):02d}{int(srng.integers(0, 60)):02d}00",
                accession=f"ACC{i + 1:07d}",
                study_instance_uid=study_uid,
                images=tuple(images),
            )
        )
    return studies
