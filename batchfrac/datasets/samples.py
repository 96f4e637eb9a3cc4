"""Labelled training/evaluation data: the records and the patient split.

Two sources, one record (:class:`Sample`, one per image): a MURA-v1.1 tree
(:mod:`batchfrac.datasets.mura`) or a DICOM archive with a labels CSV
(:mod:`batchfrac.datasets.archive`).

:func:`split_by_patient` holds out whole patients (never one patient on both sides).
Pixels are not loaded here: see :mod:`batchfrac.datasets.loader`.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from ..enums import Bone, Head, Label
from ..errors import BatchfracError

MURA_SPLITS = ("train", "valid")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_LABEL_WORDS = {
    "1": Label.ABNORMAL,
    "abnormal": Label.ABNORMAL,
    "positive": Label.ABNORMAL,
    "0": Label.NORMAL,
    "normal": Label.NORMAL,
    "negative": Label.NORMAL,
}


class DatasetError(BatchfracError):
    """Training/evaluation data is missing, malformed or inconsistent."""


class SourceKind(str, Enum):
    """Where a data set comes from."""

    MURA = "mura"
    DICOM = "dicom"


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled image.

    ``rel`` is the path relative to the data root (stable across machines: used in the
    data hash and the reports); ``frame`` the frame of a multi-frame DICOM (0 otherwise);
    ``study`` the study key (MURA: the study folder; DICOM: StudyInstanceUID).
    """

    path: str
    rel: str
    bone: Bone
    label: Label
    patient: str
    study: str
    frame: int = 0


@dataclass(frozen=True)
class Dataset:
    """A labelled data set; ``skipped`` lists ``(rel, reason)`` of files left out."""

    kind: SourceKind
    root: Path
    split: str | None
    samples: tuple[Sample, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())

    def for_head(self, head: Head) -> Dataset:
        """The images a head trains on: all for the router, that bone's for a bone head."""
        bone = head.bone
        keep = self.samples if bone is None else tuple(s for s in self.samples if s.bone is bone)
        return Dataset(self.kind, self.root, self.split, keep, self.skipped)

    @property
    def content_sha256(self) -> str:
        """sha256 of the sorted ``(rel, frame, bone, label)`` lines: the data's identity."""
        return content_sha256(self.samples)

    def describe(self) -> dict[str, object]:
        """JSON-friendly summary (source, split, hash, counts) for metadata and reports."""
        return {
            "kind": self.kind.value,
            "root": str(self.root),
            "split": self.split,
            "sha256": self.content_sha256,
            "images": len(self.samples),
            "studies": len({s.study for s in self.samples}),
            "patients": len({s.patient for s in self.samples}),
            "skipped": len(self.skipped),
        }


def content_sha256(samples: Iterable[Sample]) -> str:
    """sha256 of the sorted ``rel\\tframe\\tbone\\tlabel`` lines of ``samples``."""
    lines = sorted(f"{s.rel}\t{s.frame}\t{s.bone.value}\t{s.label.value}\n" for s in samples)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def head_targets(samples: Sequence[Sample], head: Head) -> np.ndarray:
    """Class indices (int64) of ``samples`` for ``head`` (see :attr:`Head.classes`)."""
    classes = head.classes
    if head is Head.ROUTER:
        return np.array([classes.index(s.bone.value) for s in samples], dtype=np.int64)
    return label_targets(samples)


def label_targets(samples: Sequence[Sample]) -> np.ndarray:
    """Normal/abnormal class indices (int64) of ``samples``, whatever their bone."""
    return np.array([s.label.column for s in samples], dtype=np.int64)


def parse_label(value: str) -> Label:
    """``abnormal``/``1``/``positive`` or ``normal``/``0``/``negative`` -> :class:`Label`."""
    try:
        return _LABEL_WORDS[value.strip().lower()]
    except KeyError:
        raise DatasetError(
            f"unknown label {value!r} (expected abnormal/normal, 1/0 or positive/negative)"
        ) from None


def parse_bone(value: str) -> Bone:
    """``hand``/``HAND``/``XR_HAND`` -> :class:`Bone`."""
    text = value.strip().lower()
    text = text[3:] if text.startswith("xr_") else text
    try:
        return Bone(text)
    except ValueError:
        choices = ", ".join(b.value for b in Bone)
        raise DatasetError(f"unknown bone {value!r} (expected one of {choices})") from None


# --------------------------------------------------------------------------- MURA


def split_by_patient(
    samples: Sequence[Sample], head: Head, val_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """Hold out about ``val_fraction`` of the patients, stratified by class.

    Every patient lands wholly in train or wholly in validation. Patients are grouped by
    their most frequent class for ``head``; in each group ``round(val_fraction * n)``
    patients (at least one when the group has two or more, never all of them) go to
    validation, chosen by a generator seeded with ``seed``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    targets = head_targets(samples, head)
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        by_patient[sample.patient].append(i)
    strata: dict[int, list[str]] = defaultdict(list)
    for patient in sorted(by_patient):
        counts = Counter(int(targets[i]) for i in by_patient[patient])
        majority = min(counts, key=lambda c: (-counts[c], c))
        strata[majority].append(patient)
    rng = np.random.default_rng(seed)
    val_patients: set[str] = set()
    for stratum in sorted(strata):
        patients = strata[stratum]
        n_val = int(round(val_fraction * len(patients)))
        if len(patients) >= 2:
            n_val = min(max(n_val, 1), len(patients) - 1)
        else:
            n_val = 0
        order = rng.permutation(len(patients))
        val_patients.update(patients[j] for j in order[:n_val])
    train = tuple(s for s in samples if s.patient not in val_patients)
    val = tuple(s for s in samples if s.patient in val_patients)
    if not train or not val:
        raise DatasetError(
            f"cannot hold out patients for validation: {len(by_patient)} patient(s) "
            "(need at least two per class)"
        )
    return train, val


def class_counts(samples: Sequence[Sample], head: Head) -> dict[str, int]:
    """Images per class of ``head`` (every class listed, zeros included)."""
    classes = head.classes
    counts = np.bincount(head_targets(samples, head), minlength=len(classes))
    return {name: int(n) for name, n in zip(classes, counts, strict=True)}
