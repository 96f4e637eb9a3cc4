"""The final report set of a scan: images/studies Parquet, optional CSV, index.html, run.json.

``run.json`` is written last: a ``run.json`` newer than the reports means they are complete.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import REPORT_FILE_MODE, fsync_directory, write_text
from ..enums import Bone, ImageFlag, Status
from ..exitcodes import ExitCode
from .aggregate import aggregate_studies, duplicate_instance_rows
from .csv_export import export_csv
from .html import render_index
from .parquet import write_parquet
from .rows import ImageRow
from .runinfo import Counts, RunRecord, run_document, utc_now, write_run_json
from .schema import load_schema, rows_to_table

log = logging.getLogger(__name__)

#: The files of one report set, ``run.json`` first (see :func:`remove_report_set`).
REPORT_FILES = (
    "run.json",
    "index.html",
    "images.parquet",
    "studies.parquet",
    "images.csv",
    "studies.csv",
)


@dataclass(frozen=True)
class ScanSummary:
    """What a finished scan reports back: the ``run.json`` document and the exit code."""

    run: dict[str, Any]
    exit_code: int


def write_reports(
    out: Path,
    images: pa.Table,
    thresholds: Mapping[Bone, float],
    record: RunRecord,
    *,
    csv: bool = False,
) -> ScanSummary:
    """Write the report set of ``images`` (every row of the scan) into ``out``."""
    studies_schema = load_schema("studies")
    provenance = record.provenance
    images = flag_duplicate_instances(images)
    write_parquet(images, out / "images.parquet", load_schema("images"), provenance)
    scored = images.filter(pc.not_equal(images.column("status"), Status.SKIPPED.value))
    studies = aggregate_studies((ImageRow.from_mapping(r) for r in scored.to_pylist()), thresholds)
    studies_table = rows_to_table(studies, studies_schema)
    write_parquet(studies_table, out / "studies.parquet", studies_schema, provenance)
    if csv:
        export_csv(out)
    counts = count_rows(images, len(studies))
    exit_code = ExitCode.PARTIAL if counts.status.get(Status.ERROR.value) else ExitCode.OK
    doc = run_document(record, counts, int(exit_code), utc_now())
    write_text(out / "index.html", render_index(doc, studies, images), mode=REPORT_FILE_MODE)
    write_run_json(out / "run.json", doc)
    log.info(
        "scan %s finished: %d files, %s, exit code %d",
        record.info.run_id,
        counts.files,
        dict(counts.status),
        exit_code,
    )
    return ScanSummary(doc, int(exit_code))


def flag_duplicate_instances(images: pa.Table) -> pa.Table:
    """``images`` (sorted by path) with ``duplicate_instance`` added to the flags of every
    ok row that repeats an earlier row's study, SOP Instance UID and frame."""
    keys = zip(
        *(images.column(c).to_pylist() for c in
          ("status", "study_instance_uid", "sop_instance_uid", "frame")),
        strict=True,
    )  # fmt: skip
    repeated = duplicate_instance_rows(keys)
    if not repeated:
        return images
    flags = images.column("flags").to_pylist()
    for index in repeated:
        flags[index] = [*flags[index], ImageFlag.DUPLICATE_INSTANCE.value]
    position = images.schema.get_field_index("flags")
    return images.set_column(position, images.schema.field(position), pa.array(flags))


def remove_report_set(out: Path) -> None:
    """Delete the previous report set of ``out``, ``run.json`` first, before a scan starts:
    a scan that then stops half-way leaves parts to resume from, never a stale or mixed
    set that looks finished (a ``run.json`` is written only after every other report)."""
    for name in REPORT_FILES:
        (out / name).unlink(missing_ok=True)
    # Pictures stay: rows of parts and of this report name them; those no row of the
    # next report names are deleted when it is written (batchfrac.scan.pictures).
    fsync_directory(out)


def count_rows(images: pa.Table, studies: int) -> Counts:
    """Files, rows, and rows per status and reason of an images table."""

    def tally(column: str) -> dict[str, int]:
        values = pc.value_counts(images.column(column).drop_null()).to_pylist()
        return {v["values"]: v["counts"] for v in values}

    files = pc.count_distinct(images.column("path")).as_py() if images.num_rows else 0
    return Counts(files, images.num_rows, studies, tally("status"), tally("reason"))
