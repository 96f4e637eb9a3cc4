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
