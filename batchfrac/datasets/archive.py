"""Labelled DICOM archives: a labels CSV names the images, the scanner's code decodes them.

The CSV has a header row with ``path`` (relative to the archive) or
``study_instance_uid``, plus ``bone`` (``hand`` or ``XR_HAND``) and ``label``
(``abnormal``/``normal``, ``1``/``0`` or ``positive``/``negative``), and optionally
``patient_id`` (else (0010,0020) *Patient ID* from the file, else the study). Files are
decoded by :func:`batchfrac.ingest.entry.ingest_file` through an injected ``fetch``, so
training sees exactly what ``batchfrac scan`` would compute.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..enums import Bone, Label, Status
from ..records import ImageResult
from .samples import Dataset, DatasetError, Sample, SourceKind, parse_bone, parse_label

logger = logging.getLogger(__name__)

#: Decodes one file into its image rows (the scanner's ``ingest_file``, configured).
Fetch = Callable[[Path], Sequence[ImageResult]]
#: Receives the preprocessed pixels of each kept sample (e.g. to fill a cache).
Keep = Callable[[Sample, np.ndarray], None]


@dataclass(frozen=True, slots=True)
class _LabelRow:
    bone: Bone
    label: Label
    patient: str | None


def read_labels_csv(path: Path) -> tuple[str, dict[str, _LabelRow]]:
    """Parse a labels CSV: returns the key column (``path``/``study_instance_uid``) and
    key -> (bone, label, patient)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        key = next((c for c in ("path", "study_instance_uid") if c in columns), None)
        if key is None or "bone" not in columns or "label" not in columns:
            raise DatasetError(
                f"{path}: labels CSV needs a header with columns path or study_instance_uid, "
                f"bone, label (found: {', '.join(columns) or 'none'})"
            )
        rows: dict[str, _LabelRow] = {}
        for n, record in enumerate(reader, start=2):
            value = (record[columns[key]] or "").strip()
            if not value:
                raise DatasetError(f"{path}:{n}: empty {key}")
            patient = (record.get(columns.get("patient_id", ""), "") or "").strip() or None
            try:
                row = _LabelRow(
                    parse_bone(record[columns["bone"]] or ""),
                    parse_label(record[columns["label"]] or ""),
                    patient,
                )
            except DatasetError as exc:
                raise DatasetError(f"{path}:{n}: {exc}") from None
            if key == "path":
                value = value.replace("\\", "/")
            if value in rows and rows[value] != row:
                raise DatasetError(f"{path}:{n}: {key} {value} is labelled twice, differently")
            rows[value] = row
    if not rows:
        raise DatasetError(f"{path}: labels CSV has no rows")
    return key, rows


def read_labeled_archive(
    archive: Path, labels_csv: Path, fetch: Fetch, keep: Keep | None = None
) -> Dataset:
    """Labelled images of a DICOM archive.

    With a ``path`` column only the listed files (relative to ``archive``) are read; with
    ``study_instance_uid`` every file of the archive is read and kept when its study is
    listed. ``fetch`` decodes one file into :class:`~batchfrac.records.ImageResult` rows
    (see :func:`batchfrac.datasets.loader.ingest_fetcher`); ``keep`` is handed the pixels of
    each kept image. Labelled files that cannot be decoded land in ``skipped``.
    """
    from ..ingest.walk import walk

    archive = Path(archive)
    if not archive.is_dir():
        raise DatasetError(f"DICOM archive not found: {archive}")
    key, rows = read_labels_csv(labels_csv)
    if key == "path":
        files = []
        for rel in sorted(rows):
            path = Path(rel) if Path(rel).is_absolute() else archive / rel
            if not path.is_file():
                raise DatasetError(f"{labels_csv}: file not found: {rel}")
            files.append(path)
    else:
        files = list(walk(archive))
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for path in files:
        rel = _relative(path, archive)
        for result in fetch(path):
            header = result.header
            study_uid = (header.study_instance_uid if header else None) or rel
            row = rows.get(rel) if key == "path" else rows.get(study_uid)
            if row is None:
                continue
            if result.status is not Status.OK or result.pixels is None:
                reason = result.reason.value if result.reason else result.status.value
                skipped.append((rel, f"{reason}: {result.detail}" if result.detail else reason))
                continue
            patient = row.patient or (header.patient_id if header else None) or study_uid
            sample = Sample(str(path), rel, row.bone, row.label, patient, study_uid, result.frame)
            samples.append(sample)
            if keep is not None:
                keep(sample, result.pixels)
    if skipped:
        logger.warning("%d labelled file(s) could not be read, e.g. %s", len(skipped), skipped[0])
    if not samples:
        raise DatasetError(f"no labelled image could be read from {archive} with {labels_csv}")
    return Dataset(SourceKind.DICOM, archive, None, tuple(samples), tuple(skipped))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


#: Columns of a labels CSV that hold an image's abnormality box (``batchfrac synth`` writes
#: them in ``ground_truth.csv``; ``evaluate``'s pointing game reads them).
BOX_COLUMNS = ("abnormality_x0", "abnormality_y0", "abnormality_x1", "abnormality_y1")


@dataclass(frozen=True)
class Box:
    """A box in stored-image pixels: columns ``x0 <= x < x1``, rows ``y0 <= y < y1``."""

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError(f"empty box {self}")

    @property
    def area(self) -> int:
        """Pixels inside."""
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def contains(self, x: int, y: int) -> bool:
        """Whether pixel ``(x, y)`` (column, row) lies inside."""
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def grown(self, margin: int, rows: int, columns: int) -> Box:
        """This box grown by ``margin`` pixels on every side, cut to the image."""
        return Box(
            max(self.x0 - margin, 0),
            max(self.y0 - margin, 0),
            min(self.x1 + margin, columns),
            min(self.y1 + margin, rows),
        )


def read_boxes(labels_csv: Path) -> dict[str, Box]:
    """``path`` -> abnormality box from a labels CSV with ``path`` and :data:`BOX_COLUMNS`.

    Rows with empty box cells have no box; a CSV without the columns gives ``{}``.
    Raises ``ValueError`` naming the line of a partly filled or malformed box.
    """
    boxes: dict[str, Box] = {}
    with open(labels_csv, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "path" not in columns or not all(c in columns for c in BOX_COLUMNS):
            return {}
        for n, record in enumerate(reader, start=2):
            cells = [(record[columns[c]] or "").strip() for c in BOX_COLUMNS]
            if not any(cells):
                continue
            try:
                box = Box(*(int(c) for c in cells))
            except ValueError as exc:
                raise ValueError(f"{labels_csv}:{n}: bad abnormality box {cells}: {exc}") from None
            boxes[(record[columns["path"]] or "").strip().replace("\\", "/")] = box
    return boxes
