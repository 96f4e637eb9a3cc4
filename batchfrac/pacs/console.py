"""Terminal side of ``export --dicom``, ``send`` and ``pull``: progress, messages, exit codes.

The CLI modules only parse options and call these; each returns the command's exit code:
0 success, 3 finished but some items failed, 1 fatal, 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BatchfracError
from ..exitcodes import ExitCode

if TYPE_CHECKING:
    from ..report.pseudonym import Pseudonymizer
    from .export import ExportSummary
    from .pull import PullQuery
    from .send import Destination


_HANDLER_NAME = "batchfrac-pacs-stderr"


class ArgumentError(BatchfracError):
    """A command-line value that cannot be used (exit code 1)."""


def error(message: str) -> None:
    """One line on stderr, no traceback."""
    sys.stderr.write(f"error: {message}\n")


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record comes (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def show_warnings() -> None:
    """Send ``batchfrac.pacs`` warnings to stderr as one line each (once per process)."""
    logger = logging.getLogger("batchfrac.pacs")
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@contextmanager
def progress_bar(label: str, *, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (off when stderr is not a terminal or ``quiet``);
    yields ``update(done, total)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        f"[bold]{label}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet or not sys.stderr.isatty(),
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def load_pseudonymizer(outdir: Path, key_file: Path | None) -> Pseudonymizer | None:
    """The pseudonymizer for the objects of ``outdir`` with ``key_file`` (``None``: clear;
    see :func:`batchfrac.report.deidentify.dicom_pseudonymizer`)."""
    from ..report.deidentify import dicom_pseudonymizer

    return dicom_pseudonymizer(outdir, key_file)


def export_to_folder(outdir: Path, dicom_dir: Path, key_file: Path | None) -> int:
    """``batchfrac export OUT --dicom DIR``: write the objects, print what was made."""
    from .export import export_dicom

    show_warnings()
    try:
        pseudonymizer = load_pseudonymizer(outdir, key_file)
        with progress_bar("export") as update:
            summary = export_dicom(outdir, dicom_dir, pseudonymizer=pseudonymizer, progress=update)
    except KeyboardInterrupt:
        error("interrupted; run the same command again (it rewrites the same files)")
        return ExitCode.INTERRUPTED
    except (BatchfracError, OSError) as exc:
        error(str(exc))
        return ExitCode.FATAL
    _report_export(summary, dicom_dir, pseudonymised=key_file is not None)
    return summary.exit_code


def send_results(
    outdir: Path,
    *,
    dicomweb: str | None,
    dimse: str | None,
    called_ae: str | None,
    calling_ae: str,
    key_file: Path | None,
    dry_run: bool,
    http_attempts: int = 3,
    verify: bool = True,
) -> int:
    """``batchfrac send OUT``: export into ``OUT/dicom`` and store what is new at the target."""
    from .export import export_dicom
    from .ledger import LEDGER_NAME, SendLedger
    from .send import SendStatus, send_objects

    show_warnings()
    try:
        key, connect = _destination(dicomweb, dimse, called_ae, calling_ae, http_attempts, verify)
        pseudonymizer = load_pseudonymizer(outdir, key_file)
        with progress_bar("export") as update:
            exported = export_dicom(
                outdir, outdir / "dicom", pseudonymizer=pseudonymizer, progress=update
            )
        _report_export(exported, outdir / "dicom", pseudonymised=key_file is not None)
        with progress_bar("send") as update:
            summary = send_objects(
                exported.objects, connect, key, SendLedger(outdir / LEDGER_NAME),
                dry_run=dry_run, progress=update,
            )  # fmt: skip
    except KeyboardInterrupt:
        error("interrupted; objects already confirmed are recorded, run again to send the rest")
        return ExitCode.INTERRUPTED
    except (BatchfracError, OSError) as exc:
        error(str(exc))
        return ExitCode.FATAL
    for outcome in summary.outcomes:
        obj = outcome.object
        line = (
            f"{outcome.status.value}: {obj.kind.value} {obj.sop_instance_uid} "
            f"(study {obj.study_instance_uid})"
        )
        if outcome.status in (SendStatus.REFUSED, SendStatus.CHANGED):
            sys.stderr.write(f"{line}: {outcome.detail}\n")
        elif outcome.status is SendStatus.WOULD_SEND:
            sys.stdout.write(line + "\n")
    counts = ", ".join(
        f"{summary.count(status)} {status.value.replace('_', ' ')}"
        for status in SendStatus
        if summary.count(status) or status in (SendStatus.STORED, SendStatus.ALREADY_STORED)
    )
    sys.stdout.write(f"{key}: {counts}\n")
    return max(exported.exit_code, summary.exit_code)


def _destination(
    dicomweb: str | None,
    dimse: str | None,
    called_ae: str | None,
    calling_ae: str,
    http_attempts: int,
    verify: bool,
) -> tuple[str, Callable[[], Destination]]:
    from .send import DicomWebDestination, DimseDestination, dicomweb_key, dimse_key

    if (dicomweb is None) == (dimse is None):
        raise ArgumentError("give exactly one of --dicomweb URL or --dimse HOST:PORT")
    if dicomweb is not None:
        if not dicomweb.startswith(("http://", "https://")):
            raise ArgumentError(f"--dicomweb must be an http(s) URL, not {dicomweb!r}")
        url = dicomweb
        return dicomweb_key(url), lambda: DicomWebDestination(
            url, attempts=http_attempts, verify=verify
        )
    host, _, port_text = str(dimse).rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ArgumentError(f"--dimse must be HOST:PORT, not {dimse!r}")
    port = int(port_text)
    for option, title in (("--called-ae", called_ae), ("--calling-ae", calling_ae)):
        if not title or len(title) > 16 or "\\" in title or not title.isprintable():
            raise ArgumentError(f"{option} must be an AE title of 1-16 printable characters")
    ae = str(called_ae)
    return dimse_key(host, port, ae), lambda: DimseDestination(
        host, port, ae, calling_ae=calling_ae
    )


def pull_studies(
    url: str,
    out: Path,
    *,
    since: str | None,
    until: str | None,
    modalities: str,
    jobs: int,
    http_attempts: int = 3,
) -> int:
    """``batchfrac pull URL --out DIR``: retrieve the matching studies' instances."""
    from .pull import dicomweb_client_factory, pull

    show_warnings()
    try:
        query = _pull_query(url, since, until, modalities)
        with progress_bar("pull") as update:
            factory = dicomweb_client_factory(url, attempts=http_attempts)
            summary = pull(factory, out, query, jobs=jobs, progress=update)
    except KeyboardInterrupt:
        error("interrupted; instances on disk are complete, run again to fetch the rest")
        return ExitCode.INTERRUPTED
    except (BatchfracError, OSError) as exc:
        error(str(exc))
        return ExitCode.FATAL
    for ref, reason in summary.failed:
        sys.stderr.write(
            f"failed: instance {ref.sop_instance_uid} (study {ref.study_instance_uid}): {reason}\n"
        )
    sys.stdout.write(
        f"{summary.studies} studies, {summary.instances} instances: {summary.retrieved} "
        f"retrieved, {summary.already_present} already present, {len(summary.failed)} failed "
        f"-> {out}\n"
    )
    return summary.exit_code


def _pull_query(url: str, since: str | None, until: str | None, modalities: str) -> PullQuery:
    from datetime import date

    from .pull import PullQuery

    if not url.startswith(("http://", "https://")):
        raise ArgumentError(f"URL must be an http(s) DICOMweb base URL, not {url!r}")
    try:
        query = PullQuery(
            since=date.fromisoformat(since) if since else None,
            until=date.fromisoformat(until) if until else None,
            modalities=tuple(m.strip().upper() for m in modalities.split(",") if m.strip()),
        )
        query.study_date()  # checks the range before anything is fetched
    except ValueError as exc:
        raise ArgumentError(f"bad --since/--until: {exc}") from None
    return query


def _report_export(summary: ExportSummary, dicom_dir: Path, *, pseudonymised: bool) -> None:
    kinds = [o.kind.value for o in summary.objects]
    sys.stdout.write(
        f"{kinds.count('sr')} SR, {kinds.count('kos')} KOS -> {dicom_dir} "
        f"({summary.files_written} written, {len(kinds) - summary.files_written} unchanged"
        + (", pseudonymised)" if pseudonymised else ")")
        + "\n"
    )
    for skipped in summary.skipped:
        sys.stderr.write(
            f"study {skipped.study_instance_uid}: no objects ({skipped.reason.value}"
            + (f": {skipped.detail}" if skipped.detail else "")
            + ")\n"
        )
