"""The MURA-v1.1 reader (Rajpurkar et al. 2017).

Layout: ``MURA-v1.1/{train,valid}/XR_<PART>/patientNNNNN/studyK_{positive,negative}/
imageM.png`` plus headerless ``<split>_image_paths.csv`` and ``<split>_labeled_studies.csv``
(``MURA-v1.1/train/XR_HAND/patient00001/study1_positive/,1``; 1 = abnormal). ``--data``
may name the MURA root or its parent. macOS ``._*`` resource forks (present in the
published zip) are skipped. Labels come from the CSV and must agree with the folder names.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..enums import Bone, Label
from .samples import (
    IMAGE_SUFFIXES,
    MURA_SPLITS,
    Dataset,
    DatasetError,
    Sample,
    SourceKind,
    parse_label,
)


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
