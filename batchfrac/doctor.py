"""`batchfrac doctor`: a header-only preflight of an archive.

:func:`survey` walks the archive and reads every header (never pixel data), and
predicts the status and reason the scan would give each file: ``ok`` for
candidates it would decode, ``skipped``/``error`` with the same reasons as the
image report, the header-only checks of decode included (``too_small``,
``too_large``). A candidate whose transfer syntax no installed pixel-data plugin
can decode is predicted as ``error``/``unsupported_transfer_syntax``. A header that
raises anything unexpected is counted as the scan counts it, ``error``/``read_error``;
the survey itself never stops on a file.
:func:`print_report` renders a :class:`DoctorReport` as rich tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .defaults import DEFAULT_MODALITIES
from .enums import Reason, Status
from .errors import FileRejected
from .ingest.capture import FATAL, FileLog, captured
from .ingest.decode import DecodePolicy, FramePolicy, check_geometry
from .ingest.header import check_image, read_header
from .ingest.plugins import decodable, transfer_syntax_name
from .ingest.walk import walk_entries
from .records import DicomHeader

MISSING = "(missing)"


@dataclass(frozen=True, slots=True)
class SyntaxSummary:
    """One (0002,0010) *Transfer Syntax UID* present in the archive.

    ``files`` counts every readable header in this syntax, ``candidates`` only
    the images the scan would decode; ``detail`` names the plugins that can
    decode it, or why none can.
    """

    uid: str
    name: str
    files: int
    candidates: int
    decodable: bool
    detail: str


#: Size classes of a frame, by megapixels (upper bound, label), for the forecast's samples.
SIZE_CLASSES = ((1.0, "< 1 MP"), (4.0, "1-4 MP"), (9.0, "4-9 MP"), (float("inf"), ">= 9 MP"))


def size_class(header: DicomHeader) -> str:
    """The :data:`SIZE_CLASSES` label of one frame of ``header`` (Rows x Columns)."""
    megapixels = header.rows * header.columns / 1e6
    return next(label for bound, label in SIZE_CLASSES if megapixels < bound)


@dataclass
class WorkGroup:
    """The decode candidates of one transfer syntax and size class: how many files and
    images, and the first few files (what ``doctor``'s forecast times)."""

    files: int = 0
    images: int = 0
    samples: list[str] = field(default_factory=list)


@dataclass
class DoctorReport:
    """Counters of one survey. Modalities count every readable header; photometric
    interpretations count the candidate images only (what decode will meet)."""

    archive: str
    modalities: tuple[str, ...]
    files: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_modality: Counter[str] = field(default_factory=Counter)
    by_photometric: Counter[str] = field(default_factory=Counter)
    syntaxes: list[SyntaxSummary] = field(default_factory=list)
    #: ``(transfer syntax UID, size class)`` -> the candidates, for the forecast
    work: dict[tuple[str, str], WorkGroup] = field(default_factory=dict)

    @property
    def would_fail(self) -> int:
        """Files the scan would report as ``error`` (undecodable, truncated, unreadable)."""
        return self.by_status[Status.ERROR.value]

    @property
    def undecodable(self) -> list[SyntaxSummary]:
        """Transfer syntaxes present that no installed plugin can decode."""
        return [syntax for syntax in self.syntaxes if not syntax.decodable]

    def to_dict(self) -> dict[str, Any]:
        """The report as one JSON-serialisable document (keys in a stable order)."""
        return {
            "batchfrac_version": __version__,
            "archive": self.archive,
            "modalities": list(self.modalities),
            "files": self.files,
            "by_status": {status.value: self.by_status[status.value] for status in Status},
            "by_reason": dict(sorted(self.by_reason.items())),
            "by_modality": dict(sorted(self.by_modality.items())),
            "by_photometric_interpretation": dict(sorted(self.by_photometric.items())),
            "transfer_syntaxes": [
                {
                    "uid": s.uid,
                    "name": s.name,
                    "files": s.files,
                    "candidates": s.candidates,
                    "decodable": s.decodable,
                    "detail": s.detail,
                }
                for s in self.syntaxes
            ],
            "undecodable_transfer_syntaxes": [s.uid for s in self.undecodable],
            "work_groups": [
                {"transfer_syntax": uid, "size_class": size, "files": g.files, "images": g.images}
                for (uid, size), g in sorted(self.work.items())
            ],  # fmt: skip
            "would_fail": self.would_fail,
        }


def survey(
    root: Path,
    modalities: Collection[str] = DEFAULT_MODALITIES,
    *,
    on_file: Callable[[Path], None] | None = None,
    policy: DecodePolicy | None = None,
    samples: int = 3,
) -> DoctorReport:
    """Read every header under ``root`` (streaming) and count what the scan would do.

    Every entry the walk meets is counted, with the walk's own reasons for those it does
    not read (links, FIFOs, unreadable directories; see :mod:`batchfrac.ingest.walk`).
    ``on_file`` is called once per entry after it was examined (progress display);
    ``policy``: the decode caps the scan would apply (default :class:`DecodePolicy`);
    ``samples``: how many files of each transfer syntax and size class to keep in
    :attr:`DoctorReport.work` for a forecast. Library warnings and log records are kept
    off the console.
    """
    report = DoctorReport(archive=str(root), modalities=tuple(m.upper() for m in modalities))
    syntax_files: Counter[str] = Counter()
    syntax_candidates: Counter[str] = Counter()
    policy = policy or DecodePolicy()
    for entry in walk_entries(root):
        report.files += 1
        path = entry.path
        if entry.reason is not None:
            _count(report, entry.reason)
            if on_file is not None:
                on_file(path)
            continue
        with captured(FileLog()):
            header, rejected = _examine(path, modalities, policy)
        if header is not None:
            report.by_modality[header.modality or MISSING] += 1
            syntax_files[header.transfer_syntax_uid or MISSING] += 1
        if rejected is not None:
            _count(report, rejected)
        elif header is not None:
            syntax_candidates[header.transfer_syntax_uid or MISSING] += 1
            report.by_photometric[header.photometric_interpretation or MISSING] += 1
            _add_work(report, header, path, policy, samples)
        if on_file is not None:
            on_file(path)
    for uid, files in sorted(syntax_files.items()):
        ok, detail = decodable(uid if uid != MISSING else None)
        candidates = syntax_candidates[uid]
        summary = SyntaxSummary(uid, transfer_syntax_name(uid), files, candidates, ok, detail)
        report.syntaxes.append(summary)
        if ok:
            report.by_status[Status.OK.value] += candidates
        else:
            _count(report, Reason.UNSUPPORTED_TRANSFER_SYNTAX, candidates)
    return report


def _examine(
    path: Path, modalities: Collection[str], policy: DecodePolicy
) -> tuple[DicomHeader | None, Reason | None]:
    """The header of ``path`` if readable, and the reason the scan would reject the file
    from its header (``None``: a decode candidate)."""
    header = None
    try:
        header = read_header(path)
        check_image(header, modalities)
        check_geometry(header, policy)
    except FileRejected as exc:
        return header, exc.reason
    except FATAL:
        raise
    except BaseException:  # noqa: BLE001 - the scan's ingest makes it a read_error row too
        return header, Reason.READ_ERROR if header is None else Reason.DECODE_ERROR
    return header, None


def _add_work(
    report: DoctorReport, header: DicomHeader, path: Path, policy: DecodePolicy, samples: int
) -> None:
    key = (header.transfer_syntax_uid or MISSING, size_class(header))
    group = report.work.setdefault(key, WorkGroup())
    group.files += 1
    if policy.frames is FramePolicy.FIRST:
        group.images += 1
    else:
        group.images += min(header.number_of_frames, policy.max_frames)
    if len(group.samples) < samples:
        group.samples.append(str(path))


def _count(report: DoctorReport, reason: Reason, files: int = 1) -> None:
    if files:
        report.by_status[reason.status.value] += files
        report.by_reason[reason.value] += files


def print_report(report: DoctorReport, console: Console) -> None:
    """Render ``report`` as tables on ``console``, ending with the verdict."""
    outcomes = Table(title=f"{report.files} files under {escape(report.archive)}")
    outcomes.add_column("Status")
    outcomes.add_column("Reason")
    outcomes.add_column("Files", justify="right")
    outcomes.add_row(Status.OK.value, "decode candidate", str(report.by_status[Status.OK.value]))
    for reason, count in sorted(report.by_reason.items()):
        outcomes.add_row(Reason(reason).status.value, reason, str(count))
    console.print(outcomes)

    allowed = set(report.modalities)
    modality_table = Table(title="Modalities (0008,0060)")
    for column in ("Modality", "Files", "Allowed"):
        modality_table.add_column(column, justify="right" if column == "Files" else "left")
    for modality, count in sorted(report.by_modality.items()):
        modality_table.add_row(
            escape(modality), str(count), "yes" if modality.upper() in allowed else "no"
        )
    console.print(modality_table)

    syntax_table = Table(title="Transfer syntaxes (0002,0010)")
    syntax_table.add_column("UID", overflow="fold")
    syntax_table.add_column("Name")
    syntax_table.add_column("Files", justify="right")
    syntax_table.add_column("To decode", justify="right")
    syntax_table.add_column("Decodable")
    syntax_table.add_column("Plugins / missing")
    for s in report.syntaxes:
        verdict = "yes" if s.decodable else "[red]NO[/red]"
        syntax_table.add_row(
            escape(s.uid),
            escape(s.name),
            str(s.files),
            str(s.candidates),
            verdict,
            escape(s.detail),
        )
    console.print(syntax_table)

    photometric_table = Table(title="Photometric interpretations (0028,0004) of candidates")
    photometric_table.add_column("Photometric")
    photometric_table.add_column("Files", justify="right")
    for value, count in sorted(report.by_photometric.items()):
        photometric_table.add_row(escape(value), str(count))
    console.print(photometric_table)

    for s in report.undecodable:
        console.print(f"[red]cannot decode[/red] {escape(f'{s.name} ({s.uid}): {s.detail}')}")
    if report.would_fail:
        console.print(f"[red]{report.would_fail} file(s) would fail[/red] (status error).")
    else:
        console.print("[green]No file would fail.[/green]")
