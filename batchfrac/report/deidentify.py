"""What the outputs may say about a patient: pseudonyms applied to report rows, paths and
log lines, and the rule that keeps pseudonymised and clear outputs apart.

With a key (``--pseudonymize-key-file``), :class:`ReportPseudonyms` turns every image row
into its pseudonymised form where rows are made, before they reach a part file, so that
``images.parquet``, ``studies.parquet``, the CSV, ``index.html`` and the DICOM objects all
inherit the pseudonyms:

- (0010,0020) *Patient ID* and (0008,0050) *Accession Number* become keyed HMAC-SHA256
  pseudonyms (:class:`~batchfrac.report.pseudonym.Pseudonymizer`);
- a file path keeps the archive root as it was typed, and every folder and file name below
  it becomes its own pseudonym (archives name folders after patient IDs, accession numbers,
  names and dates); files of one folder stay siblings, so the layout can still be read;
- paths inside free text (a row's ``detail``, a log line) are found by the archive root
  (as typed or resolved) and replaced in the same way, up to the next quote or line end.

In every mode names, birth dates and addresses are never read, so never written, and
``scan.log`` replaces quoted values in pydicom's and Python's warnings (pydicom quotes an
invalid value it read, e.g. ``Invalid value for VR LO: '...'``) with ``'<value>'``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import BatchfracError
from .pseudonym import Pseudonymizer
from .rows import ImageRow

#: Key of the key fingerprint in the Parquet metadata (``batchfrac.pseudonyms``).
PSEUDONYMS_META_KEY = "pseudonyms"
#: Columns of ``images.parquet`` that pseudonymisation changes.
PSEUDONYMISED_COLUMNS = ("patient_id", "accession_number", "path", "detail")
#: How much of ``scan.log`` is searched for the line that names the key (it is logged first).
_LOG_HEAD_BYTES = 64 * 1024

_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
#: Loggers whose messages may quote values read from a file (not batchfrac's own).
_VALUE_QUOTING_LOGGERS = ("pydicom", "py.warnings")


def redact_quoted_values(text: str) -> str:
    """``text`` with every quoted string replaced by ``'<value>'``."""
    return _QUOTED.sub("'<value>'", text)


def key_marker(fingerprint: str) -> str:
    """The first line a pseudonymised scan logs: which key (by fingerprint), never the key."""
    return f"pseudonyms: HMAC-SHA256, key fingerprint {fingerprint}"


class ReportPseudonyms:
    """Pseudonymises report rows, paths and free text with one key, below one archive root."""

    def __init__(self, pseudonymizer: Pseudonymizer, archive: str | Path) -> None:
        self.pseudonymizer = pseudonymizer
        typed = str(Path(archive))
        real = os.path.realpath(archive)
        roots = {r.rstrip("/") for r in (typed, real) if r not in ("", ".")}
        #: Longest first, so that a resolved root wins over a typed one inside it.
        self.roots = sorted(roots, key=len, reverse=True)
        alternatives = "|".join(re.escape(r) for r in self.roots)
        self._in_text = re.compile(f"(?:{alternatives})/[^\\n'\"]*") if self.roots else None
        self._components: dict[str, str] = {}

    @property
    def fingerprint(self) -> str:
        """The key's fingerprint (see :attr:`Pseudonymizer.fingerprint`)."""
        return self.pseudonymizer.fingerprint

    def path(self, path: str) -> str:
        """``path`` with every name below the archive root replaced by its pseudonym
        (all names when the path is not under the root)."""
        for root in self.roots:
            if path == root:
                return path
            if path.startswith(root + "/"):
                return root + "/" + self._names(path[len(root) + 1 :])
        return self._names(path)

    def _names(self, relative: str) -> str:
        return "/".join(self._component(name) for name in relative.split("/"))

    def _component(self, name: str) -> str:
        if name in ("", ".", ".."):
            return name
        pseudonym = self._components.get(name)
        if pseudonym is None:
            if len(self._components) > 100_000:  # bounded memory on a huge archive
                self._components.clear()
            pseudonym = self._components[name] = self.pseudonymizer.path_component(name)
        return pseudonym

    def text(self, text: str | None) -> str | None:
        """``text`` with every path under the archive root pseudonymised (up to the next
        quote or line end: a path may hold spaces, so the words after it may go too)."""
        if not text or self._in_text is None:
            return text
        return self._in_text.sub(lambda match: self.path(match.group(0)), text)

    def is_archive_path(self, value: object) -> bool:
        """Whether ``value`` is a ``str`` or path under the archive root."""
        if not isinstance(value, str | os.PathLike):
            return False
        text = os.fspath(value)
        return isinstance(text, str) and any(
            text == root or text.startswith(root + "/") for root in self.roots
        )

    def image_row(self, row: ImageRow) -> ImageRow:
        """``row`` with pseudonymised identifiers, path and detail."""
        return replace(
            row,
            patient_id=self.pseudonymizer.patient_id(row.patient_id),
            accession_number=self.pseudonymizer.accession_number(row.accession_number),
            path=self.path(row.path),
            detail=self.text(row.detail),
        )

    def image_rows(self, rows: Iterable[ImageRow]) -> list[ImageRow]:
        """Every row of ``rows`` pseudonymised (:meth:`image_row`)."""
        return [self.image_row(row) for row in rows]

    def table(self, table: pa.Table) -> pa.Table:
        """An ``images`` or ``studies`` table with the columns of
        :data:`PSEUDONYMISED_COLUMNS` it has pseudonymised (for ``export`` of a scan that
        ran without a key)."""
        convert = {
            "patient_id": self.pseudonymizer.patient_id,
            "accession_number": self.pseudonymizer.accession_number,
            "path": self.path,
            "detail": self.text,
        }
        for name in PSEUDONYMISED_COLUMNS:
            index = table.schema.get_field_index(name)
            if index < 0:
                continue
            field = table.schema.field(index)
            values = [convert[name](v) if v is not None else None
                      for v in table.column(index).to_pylist()]  # fmt: skip
            table = table.set_column(index, field, pa.array(values, type=field.type))
        return table


class ScanLogFormatter(logging.Formatter):
    """The formatter of ``scan.log``: quoted values in library warnings become
    ``'<value>'`` (every mode); with ``pseudonyms``, paths under the archive root are
    pseudonymised: exactly in the arguments of batchfrac's own records (a path argument
    as a whole), else in the text (:meth:`ReportPseudonyms.text`)."""

    def __init__(self, fmt: str, pseudonyms: ReportPseudonyms | None = None) -> None:
        super().__init__(fmt)
        self.pseudonyms = pseudonyms

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(vars(record))  # other handlers keep the original
        if record.name.split(".")[0] in _VALUE_QUOTING_LOGGERS:
            record.msg, record.args = redact_quoted_values(record.getMessage()), None
        pseudonyms = self.pseudonyms
        if pseudonyms is None:
            return super().format(record)
        if record.name.split(".")[0] != "batchfrac":
            return pseudonyms.text(super().format(record)) or ""
        if record.args:
            record.args = self._arguments(pseudonyms, record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = pseudonyms.text(self.formatException(record.exc_info))
        return super().format(record)

    @staticmethod
    def _arguments(pseudonyms: ReportPseudonyms, args: Any) -> Any:
        def one(value: object) -> object:
            if isinstance(value, str | os.PathLike) and pseudonyms.is_archive_path(value):
                return pseudonyms.path(str(os.fspath(value)))
            if isinstance(value, int | float | bool) or value is None:
                return value
            text = str(value)
            scrubbed = pseudonyms.text(text)
            return value if scrubbed == text else scrubbed

        if isinstance(args, Mapping):
            return {key: one(value) for key, value in args.items()}
        return tuple(one(value) for value in args)


class MixedPrivacyError(BatchfracError):
    """An output directory holds reports of another pseudonymisation setting."""


def check_outdir(out: Path, fingerprint: str | None, parts_dir: Path) -> None:
    """Refuse to scan into ``out`` when it holds output of another pseudonymisation setting.

    One ``--out`` holds one setting (clear, or one key): part files and ``run.json`` say
    which (:data:`PSEUDONYMS_META_KEY`); for a pseudonymised scan an unreadable part or a
    ``scan.log`` that does not start with this key's :func:`key_marker` counts as clear,
    since a scan without the key may have written identifiers there.
    """
    from .parquet import file_metadata

    other: set[str | None] = set()
    for part in sorted(parts_dir.glob("part-*.parquet")) + sorted(
        parts_dir.glob("damaged/part-*.parquet")
    ):
        try:
            other.add(file_metadata(part).get(PSEUDONYMS_META_KEY))
        except (OSError, ValueError, pa.ArrowException):
            if fingerprint is not None:
                other.add(None)
    if (out / "run.json").is_file():
        try:
            other.add(recorded_fingerprint(out))
        except (OSError, ValueError, KeyError, TypeError):
            if fingerprint is not None:
                other.add(None)
    log_file = out / "scan.log"
    if fingerprint is not None and log_file.is_file() and log_file.stat().st_size:
        with open(log_file, "rb") as handle:
            head = handle.read(_LOG_HEAD_BYTES).decode("utf-8", "replace")
        if key_marker(fingerprint) not in head:
            other.add(None)
    other.discard(fingerprint)
    if not other:
        return
    what = "without pseudonyms" if None in other else "with another pseudonymisation key"
    setting = "without pseudonyms" if fingerprint is None else "with this key"
    raise MixedPrivacyError(
        f"{out} holds the output of a scan {what}; a scan {setting} needs an --out of "
        "its own (one --out, one pseudonymisation setting): choose a new --out"
    )


def _run_json(outdir: Path) -> dict[str, Any]:
    import json

    path = outdir / "run.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BatchfracError(f"cannot read {path}: {exc}") from None
    return doc if isinstance(doc, dict) else {}


def recorded_fingerprint(outdir: Path) -> str | None:
    """The key fingerprint a scan's reports were pseudonymised with, from ``run.json``
    (``None``: clear, or no ``run.json``)."""
    record = _run_json(outdir).get("pseudonyms")
    return str(record["key_fingerprint"]) if record else None


@dataclass(frozen=True)
class ExportPrivacy:
    """What ``batchfrac export`` does with identifiers (README: *What appears where*)."""

    recorded: str | None
    """The key fingerprint the scan's reports carry (``None``: clear)."""
    rewrite: ReportPseudonyms | None
    """Pseudonyms for the CSV and HTML of a scan that ran without a key."""
    dicom: Pseudonymizer | None
    """The pseudonymizer of the DICOM objects."""


def export_privacy(outdir: Path, key_file: Path | None) -> ExportPrivacy:
    """The export settings of the scan in ``outdir`` with ``key_file`` (or none).

    A clear scan with a key: its CSV/HTML/DICOM are pseudonymised as written (the Parquet
    files, parts and log are the scan's record and stay as they are). A pseudonymised
    scan: its reports already hold pseudonyms and are written as they are; the DICOM
    objects need the same key (they read identifiers again from the source headers where
    they can). Another key is refused (:class:`PseudonymKeyError`).
    """
    from .pseudonym import PseudonymKeyError, load_key

    recorded = recorded_fingerprint(outdir)
    if key_file is None:
        return ExportPrivacy(recorded, None, None)
    key = load_key(key_file)
    pseudonymizer = Pseudonymizer(key)
    if recorded is None:
        archive = str(_run_json(outdir).get("arguments", {}).get("archive") or "")
        return ExportPrivacy(None, ReportPseudonyms(pseudonymizer, archive), pseudonymizer)
    if pseudonymizer.fingerprint != recorded:
        raise PseudonymKeyError(
            f"the reports in {outdir} were pseudonymised with another key (fingerprint "
            f"{recorded}; {key_file} has {pseudonymizer.fingerprint})"
        )
    return ExportPrivacy(recorded, None, KnownPseudonyms(key, _known_pseudonyms(outdir)))


def dicom_pseudonymizer(outdir: Path, key_file: Path | None) -> Pseudonymizer | None:
    """The pseudonymizer of the DICOM objects exported from ``outdir`` (``None``: clear);
    a pseudonymised scan without its key is refused."""
    from .pseudonym import PseudonymKeyError

    privacy = export_privacy(outdir, key_file)
    if privacy.recorded is not None and key_file is None:
        raise PseudonymKeyError(
            f"the reports in {outdir} are pseudonymised (key fingerprint {privacy.recorded}): "
            "give the same --pseudonymize-key-file, since the DICOM objects read identifiers "
            "again from the source headers where they can"
        )
    return privacy.dicom


def _known_pseudonyms(outdir: Path) -> dict[str, set[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(outdir / "images.parquet", columns=["patient_id", "accession_number"])
    return {
        "PatientID": {v for v in table.column("patient_id").to_pylist() if v},
        "AccessionNumber": {v for v in table.column("accession_number").to_pylist() if v},
    }


def run_json_record(fingerprint: str | None) -> dict[str, Any] | None:
    """The ``pseudonyms`` entry of ``run.json``: ``None`` for a clear scan."""
    if fingerprint is None:
        return None
    return {
        "method": "HMAC-SHA256, first 16 hex digits, upper case",
        "key_fingerprint": fingerprint,
        "fields": list(PSEUDONYMISED_COLUMNS),
    }


class KnownPseudonyms(Pseudonymizer):
    """A :class:`Pseudonymizer` for results of a pseudonymised scan: values that are
    already the reports' pseudonyms pass unchanged, anything else (an identifier read
    again from a source header) is pseudonymised with the same key."""

    def __init__(self, key: bytes, known: Mapping[str, set[str]]) -> None:
        super().__init__(key)
        self._known = {field: set(values) for field, values in known.items()}

    def _pseudonym(self, field_name: str, value: str | None) -> str | None:
        if value and value in self._known.get(field_name, set()):
            return value
        return super()._pseudonym(field_name, value)
