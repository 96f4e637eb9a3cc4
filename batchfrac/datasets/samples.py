"""Labelled training/evaluation data: the records, the MURA-v1.1 reader, the patient split.

Two sources, one record (:class:`Sample`, one per image):

- **MURA-v1.1** (Rajpurkar et al.): ``MURA-v1.1/{train,valid}/XR_<PART>/patientNNNNN/
  studyK_{positive,negative}/imageM.png`` plus headerless ``<split>_image_paths.csv`` and
  ``<split>_labeled_studies.csv`` (``MURA-v1.1/train/XR_HAND/patient00001/study1_positive/,1``;
  1 = abnormal). ``--data`` may name the MURA root or its parent. macOS ``._*`` resource
  forks (present in the published zip) are skipped. Labels come from the CSV and must
  agree with the folder names.
- **A DICOM archive + labels CSV**: see :mod:`batchfrac.datasets.archive`.

:func:`split_by_patient` holds out whole patients (never one patient on both sides).
Pixels are not loaded here: see :mod:`batchfrac.train.batches`.
"""

from __future__ import annotations

import csv
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


def head_classes(head: Head) -> tuple[str, ...]:
    """Output classes of a head, in softmax order (router: bones; bone head: labels)."""
    if head is Head.ROUTER:
        return tuple(b.value for b in Bone)
    return tuple(label.value for label in Label)


def head_targets(samples: Sequence[Sample], head: Head) -> np.ndarray:
    """Class indices (int64) of ``samples`` for ``head`` (see :func:`head_classes`)."""
    classes = head_classes(head)
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


def _is_resource_fork(name: str) -> bool:
    return name.startswith("._")


def _looks_like_mura_root(path: Path) -> bool:
    if any((path / f"{split}_image_paths.csv").is_file() for split in MURA_SPLITS):
        return True
    return any(
        (path / split).is_dir() and any((path / split).glob("XR_*")) for split in MURA_SPLITS
    )


def find_mura_root(path: Path) -> Path:
    """The MURA root (the folder holding ``train/``, ``valid/`` and the CSVs).

    ``path`` may be the root itself or its parent (``.../MURA-v1.1`` or ``...``).
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"data directory not found: {path}")
    if _looks_like_mura_root(path):
        return path
    candidates = sorted(
        c
        for c in path.iterdir()
        if c.is_dir() and not c.name.startswith(".") and (_looks_like_mura_root(c))
    )
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(
            f"{path} is not a MURA-v1.1 tree: expected train/XR_<PART>/... or "
            "train_image_paths.csv in it or in one sub-folder (for a DICOM archive pass --labels)"
        )
    names = ", ".join(c.name for c in candidates)
    raise DatasetError(f"{path} holds several MURA trees ({names}): pass one of them as --data")


def _split_relative(line: str, split: str) -> str | None:
    """``MURA-v1.1/train/XR_HAND/p/s/`` -> ``train/XR_HAND/p/s/`` (whatever the root's name)."""
    parts = [p for p in line.strip().replace("\\", "/").split("/")]
    for i, part in enumerate(parts[:-1]):
        if part == split and parts[i + 1].upper().startswith("XR_"):
            return "/".join(parts[i:])
    return None


def _read_headerless_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row for row in csv.reader(fh) if row and row[0].strip()]


def _mura_image_rels(root: Path, split: str) -> list[str]:
    listing = root / f"{split}_image_paths.csv"
    if listing.is_file():
        rels: list[str] = []
        for row in _read_headerless_csv(listing):
            rel = _split_relative(row[0], split)
            if rel is None:
                raise DatasetError(f"{listing.name}: not a MURA image path: {row[0]!r}")
            if not _is_resource_fork(rel.rsplit("/", 1)[-1]):
                rels.append(rel)
        return rels
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"MURA split {split!r} not found in {root}")
    rels = []
    for image in sorted(split_dir.glob("XR_*/*/*/*")):
        if image.suffix.lower() in IMAGE_SUFFIXES and not image.name.startswith("."):
            rels.append(image.relative_to(root).as_posix())
    return rels


def _mura_study_labels(root: Path, split: str) -> dict[str, Label]:
    table = root / f"{split}_labeled_studies.csv"
    if not table.is_file():
        return {}
    labels: dict[str, Label] = {}
    for row in _read_headerless_csv(table):
        rel = _split_relative(row[0], split)
        if rel is None or len(row) < 2:
            raise DatasetError(f"{table.name}: not a MURA study row: {','.join(row)!r}")
        labels[rel.rstrip("/")] = parse_label(row[1])
    return labels


def _folder_label(study_folder: str) -> Label | None:
    if study_folder.endswith("_positive"):
        return Label.ABNORMAL
    if study_folder.endswith("_negative"):
        return Label.NORMAL
    return None


def read_mura(data: Path, split: str = "train") -> Dataset:
    """Read one split of a MURA-v1.1 tree (``train`` for training, ``valid`` for evaluation).

    Raises :class:`DatasetError` if a listed image is missing, a study label in
    ``<split>_labeled_studies.csv`` contradicts its ``_positive``/``_negative`` folder, or a
    study has no label at all.
    """
    if split not in MURA_SPLITS:
        raise DatasetError(f"unknown MURA split {split!r} (expected train or valid)")
    root = find_mura_root(data)
    csv_labels = _mura_study_labels(root, split)
    samples: list[Sample] = []
    missing: list[str] = []
    for rel in _mura_image_rels(root, split):
        parts = rel.split("/")
        if len(parts) != 5:
            raise DatasetError(f"not a MURA image path (split/XR_PART/patient/study/image): {rel}")
        _, part, patient, study_folder, _ = parts
        study = "/".join(parts[:4])
        folder_label = _folder_label(study_folder)
        label = csv_labels.get(study, folder_label)
        if label is None:
            raise DatasetError(f"study {study} has no label (labeled_studies CSV or folder name)")
        if folder_label is not None and label is not folder_label:
            raise DatasetError(
                f"{split}_labeled_studies.csv labels {study} {label.value}, "
                f"but its folder name says {folder_label.value}"
            )
        path = root / rel
        if not path.is_file():
            missing.append(rel)
            continue
        try:
            bone = Bone.from_mura_part(part)
        except ValueError:
            raise DatasetError(f"unknown MURA body part folder {part!r} in {rel}") from None
        samples.append(Sample(str(path), rel, bone, label, patient, study))
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) listed in {split}_image_paths.csv are missing, "
            f"e.g. {missing[0]}"
        )
    if not samples:
        raise DatasetError(f"no images in MURA split {split!r} of {root}")
    return Dataset(SourceKind.MURA, root, split, tuple(samples))


# --------------------------------------------------------------------------- split


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
    classes = head_classes(head)
    counts = np.bincount(head_targets(samples, head), minlength=len(classes))
    return {name: int(n) for name, n in zip(classes, counts, strict=True)}
