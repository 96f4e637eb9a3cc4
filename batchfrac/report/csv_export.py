"""CSV copies of the Parquet reports that open correctly in a spreadsheet.

- RFC 4180: comma separated, CRLF line ends, every text cell quoted (``QUOTE_NONNUMERIC``
  style, done by hand so numbers stay bare): paths with commas, quotes or newlines survive.
- UTF-8 with a byte-order mark, so spreadsheet programs pick the right encoding.
- Formula injection is neutralised whatever the cell's first characters: a text cell that
  starts a formula (``=``, ``+``, ``-``, ``@``, tab or carriage return, also after leading
  spaces or other whitespace, and in their full-width or other compatibility forms such as
  ``＝``, which spreadsheets read as ``=``) gets a leading ``'``, which spreadsheets treat
  as "text" and do not display. Numeric columns are never prefixed (``-0.5`` stays a
  number). :func:`restore_text_cell` strips it again.
- Control characters other than tab, newline and carriage return (NUL and the like, which
  a hostile DICOM string can hold and which Python 3.10's ``csv`` module refuses) are
  replaced with U+FFFD, so a CSV is written on every supported Python.
- ``list<string>`` columns (``flags``) are joined with ``;``; nulls are empty cells.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import REPORT_FILE_MODE, atomic_write
from .deidentify import ReportPseudonyms

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
LIST_SEPARATOR = ";"
#: C0 control characters a CSV cell may not hold (tab, newline and carriage return may).
_CONTROL = {c: "\ufffd" for c in range(32) if chr(c) not in "\t\n\r"} | {0x7F: "\ufffd"}


def starts_formula(value: str) -> bool:
    """Whether a spreadsheet could read ``value`` as a formula: its first character, or its
    first character after leading whitespace, is a formula character once compatibility
    forms are folded (NFKC: full-width ``＝`` is ``=``)."""
    if value.startswith(FORMULA_PREFIXES):
        return True
    stripped = value.lstrip()
    if not stripped:
        return False
    return unicodedata.normalize("NFKC", stripped[0]).startswith(FORMULA_PREFIXES)


def text_cell(value: str) -> str:
    """``value`` made safe to open in a spreadsheet: control characters replaced, and a
    leading ``'`` before anything that could start a formula (:func:`starts_formula`)."""
    value = value.translate(_CONTROL)
    return "'" + value if starts_formula(value) else value


def restore_text_cell(cell: str) -> str:
    """Inverse of :func:`text_cell` for a cell read back from the CSV (control characters
    stay replaced)."""
    if cell.startswith("'") and starts_formula(cell[1:]):
        return cell[1:]
    return cell


def _cell(value: Any) -> str | float | int:
    if value is None:
        return ""
    if isinstance(value, list):
        return text_cell(LIST_SEPARATOR.join(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    return text_cell(str(value))


def _rows(table: pa.Table) -> Iterable[list[str | float | int]]:
    for batch in table.to_batches(max_chunksize=10_000):
        columns = [column.to_pylist() for column in batch.columns]
        for values in zip(*columns, strict=True):
            yield [_cell(v) for v in values]


def write_csv(table: pa.Table, path: Path) -> Path:
    """Write ``table`` as a spreadsheet-safe CSV at ``path`` (atomically, mode
    :data:`~batchfrac.atomic.REPORT_FILE_MODE`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
            writer.writerow(table.column_names)
            writer.writerows(_rows(table))

    return atomic_write(path, write, mode=REPORT_FILE_MODE)


def export_csv(
    outdir: Path,
    names: Iterable[str] = ("images", "studies"),
    *,
    pseudonyms: ReportPseudonyms | None = None,
) -> list[Path]:
    """Write ``<name>.csv`` beside each ``<name>.parquet`` in ``outdir``; with
    ``pseudonyms`` (a scan that ran without a key) the CSV holds pseudonymised
    identifiers, paths and details (the Parquet files are left as they are)."""
    written = []
    for name in names:
        table = pq.read_table(outdir / f"{name}.parquet")
        if pseudonyms is not None:
            table = pseudonyms.table(table)
        written.append(write_csv(table, outdir / f"{name}.csv"))
    return written
