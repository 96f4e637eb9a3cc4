"""Write a scan's results as DICOM: one SR per study, one KOS per abnormal study.

``export_dicom(outdir, dicom_dir)`` is what ``batchfrac export OUT --dicom DIR`` (and
``scan ... --dicom DIR`` once the reports are written) calls. Files are named after the new
objects' SOP Instance UIDs (``DIR/<uid>.dcm``) and written atomically; their bytes depend
only on the reports, the source headers and the key, so exporting a run again rewrites
nothing and a PACS that already holds the objects stores no duplicates.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from pydicom.dataset import Dataset

from ..enums import Label
from ..exitcodes import ExitCode
from ..report.pseudonym import Pseudonymizer
from .identity import SourceImage
from .results import ScanResults, StudyResult, read_scan_results
from .uids import is_valid_uid, uid_file_name

log = logging.getLogger(__name__)


class ObjectKind(str, Enum):
    """What an exported object is."""

    SR = "sr"
    KOS = "kos"


class SkipReason(str, Enum):
    """Why a study of the reports got no objects."""

    MISSING_STUDY_UID = "missing_study_uid"
    """The scan found no (0020,000D) for it: there is no study to file results in."""
    INVALID_UID = "invalid_uid"
    NO_REFERENCEABLE_IMAGE = "no_referenceable_image"
    INVALID_VALUE = "invalid_value"
    """A value from the reports that no valid object can hold (the detail names it)."""

    @property
    def is_failure(self) -> bool:
        """Whether this reason makes the export finish with exit code 3."""
        return self is not SkipReason.MISSING_STUDY_UID


@dataclass(frozen=True, slots=True)
class ExportedObject:
    """One object written by the export."""

    kind: ObjectKind
    path: Path
    study_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class SkippedStudy:
    """A study that got no objects, and why."""

    study_instance_uid: str | None
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What :func:`export_dicom` made, in study order."""

    objects: tuple[ExportedObject, ...]
    skipped: tuple[SkippedStudy, ...]
    files_written: int
    """Objects whose file was new or different (0 when the same run is exported again)."""
    warnings: tuple[str, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """0 when every study that can hold results got them, else 3."""
        failed = any(s.reason.is_failure for s in self.skipped)
        return ExitCode.PARTIAL if failed else ExitCode.OK


def export_dicom(
    outdir: Path,
    dicom_dir: Path,
    *,
    pseudonymizer: Pseudonymizer | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write the SR and KOS objects of the scan in ``outdir`` into ``dicom_dir``.

    Raises :class:`~batchfrac.pacs.results.ReportError` when the reports cannot be read
    and ``OSError`` when ``dicom_dir`` cannot be written. ``progress(done, total)`` is
    called after each study.
    """
    results = read_scan_results(outdir)
    dicom_dir.mkdir(parents=True, exist_ok=True)
    objects: list[ExportedObject] = []
    skipped: list[SkippedStudy] = []
    warnings: list[str] = []
    written = 0
    total = len(results.studies)
    for done, study in enumerate(results.studies, start=1):
        made, problem = _export_study(study, results, pseudonymizer, warnings)
        if problem is not None:
            skipped.append(problem)
            detail = f": {problem.detail}" if problem.detail else ""
            log.warning(
                "study %s: no DICOM results (%s%s)",
                problem.study_instance_uid, problem.reason.value, detail,
            )  # fmt: skip
        for kind, ds in made:
            path = dicom_dir / uid_file_name(ds.SOPInstanceUID)
            written += _write_if_changed(ds, path)
            objects.append(
                ExportedObject(kind, path, ds.StudyInstanceUID, ds.SOPClassUID, ds.SOPInstanceUID)
            )
        if progress is not None:
            progress(done, total)
    for message in warnings:
        log.warning("%s", message)
    return ExportSummary(tuple(objects), tuple(skipped), written, tuple(warnings))


def _export_study(
    study: StudyResult,
    results: ScanResults,
    pseudonymizer: Pseudonymizer | None,
    warnings: list[str],
) -> tuple[list[tuple[ObjectKind, Dataset]], SkippedStudy | None]:
    from .identity import read_source_images, study_identity
    from .kos import build_kos
    from .sr import build_sr

    uid = study.study_instance_uid
    if uid is None:
        return [], SkippedStudy(None, SkipReason.MISSING_STUDY_UID)
    if not is_valid_uid(uid):
        return [], SkippedStudy(uid, SkipReason.INVALID_UID, "Study Instance UID")
    sources, study_values = read_source_images(study)
    usable = [s for s in sources if _referenceable(s)]
    if len(usable) < len(sources):
        warnings.append(
            f"study {uid}: {len(sources) - len(usable)} image(s) without a valid SOP Instance "
            "or Series Instance UID are not referenced"
        )
    if not usable:
        return [], SkippedStudy(uid, SkipReason.NO_REFERENCEABLE_IMAGE)
    defaulted = sum(not s.sop_class_from_header for s in usable)
    if defaulted:
        warnings.append(
            f"study {uid}: {defaulted} source header(s) unreadable or changed since the scan; "
            "SOP Class UID assumed from the modality, identification from the reports"
        )
    identity = study_identity(study, study_values, pseudonymizer)
    if identity.dropped:
        warnings.append(
            f"study {uid}: source values not valid for their VR left empty: "
            + ", ".join(identity.dropped)
        )
    try:
        made: list[tuple[ObjectKind, Dataset]] = [
            (ObjectKind.SR, build_sr(study, identity, usable, results.run, results.thresholds))
        ]
        if study.prediction is Label.ABNORMAL:
            made.append((ObjectKind.KOS, build_kos(study, identity, usable, results.run)))
    except ValueError as exc:  # highdicom's checks of a value taken from the reports
        return [], SkippedStudy(uid, SkipReason.INVALID_VALUE, str(exc).splitlines()[0])
    return made, None


def _referenceable(source: SourceImage) -> bool:
    finding = source.finding
    return (
        is_valid_uid(finding.sop_instance_uid)
        and is_valid_uid(finding.series_instance_uid)
        and is_valid_uid(source.sop_class_uid)
    )


def encode(ds: Dataset) -> bytes:
    """The Part 10 file bytes of a dataset (preamble, file meta, explicit VR LE body)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _write_if_changed(ds: Dataset, path: Path) -> int:
    data = encode(ds)
    try:
        if path.read_bytes() == data:
            return 0
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".dcm")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return 1
