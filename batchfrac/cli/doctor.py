"""`batchfrac doctor ARCHIVE`: header-only preflight of an archive."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..defaults import DEFAULT_MODALITIES
from ..enums import Backend
from ..exitcodes import ExitCode

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from ..doctor import DoctorReport


def doctor(
    archive: Annotated[
        Path,
        typer.Argument(exists=True, readable=True, help="Archive directory (or one file)."),
    ],
    modalities: Annotated[
        str, typer.Option(help="Comma-separated (0008,0060) Modality allow-list.")
    ] = ",".join(DEFAULT_MODALITIES),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")
    ] = False,
    forecast: Annotated[
        bool,
        typer.Option(
            help="Time a few files of each transfer syntax and size class and a batch of "
            "inference on this machine, and print how long the scan will take."
        ),
    ] = True,
    bundle: Annotated[
        Path | None,
        typer.Option(help="Model bundle of the scan to forecast (default: the DEMO bundle)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="The scan's --workers (default: one per core).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="The scan's --batch-size (default: the backend's).")
    ] = None,
    backend: Annotated[Backend, typer.Option(help="The scan's --backend.")] = Backend.AUTO,
    samples: Annotated[
        int, typer.Option(min=1, help="Files timed per transfer syntax and size class.")
    ] = 3,
) -> None:
    """Read every header (no pixel data), predict what a scan would do with each file, and
    forecast how long the scan will take on this machine.

    Exits 3 when some file would fail (undecodable transfer syntax, truncated,
    unreadable), 0 otherwise; bad arguments, an unreadable bundle: 1.
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..doctor import print_report, survey

    allowed = tuple(m.strip().upper() for m in modalities.split(",") if m.strip())
    if not allowed:
        raise typer.BadParameter(
            "give at least one modality, e.g. CR,DX", param_hint="--modalities"
        )
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed} files"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=as_json or not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task("reading headers", total=None)
        report = survey(
            archive, allowed, on_file=lambda _path: progress.advance(task), samples=samples
        )
        estimate = None
        if forecast:
            step = lambda text: progress.update(task, description=text)  # noqa: E731
            estimate = _forecast(report, bundle, workers, batch_size, backend, step)
    document = report.to_dict()
    if estimate is not None:
        document["estimate"] = estimate
    if as_json:
        typer.echo(json.dumps(document, indent=2))
    else:
        print_report(report, Console())
        if estimate is not None:
            _print_estimate(estimate, Console())
    raise typer.Exit(ExitCode.PARTIAL if report.would_fail else ExitCode.OK)


def _forecast(
    report: DoctorReport,
    bundle: Path | None,
    workers: int | None,
    batch_size: int | None,
    backend: Backend,
    step: Callable[[str], None],
) -> dict[str, Any]:
    from importlib.resources import files

    from ..errors import BatchfracError
    from ..scan.config import default_workers
    from ..scan.forecast import measure, parts_table

    path = bundle or Path(str(files("batchfrac") / "demo_bundle"))
    try:
        forecast, groups = measure(
            report,
            path,
            workers=default_workers() if workers is None else workers,
            batch_size=batch_size,
            backend=backend,
            on_step=step,
        )
    except (BatchfracError, OSError) as exc:
        typer.echo(f"error: cannot forecast the scan: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from None
    return dict(parts_table(forecast, groups))


def _print_estimate(estimate: dict[str, Any], console: Console) -> None:
    from ..scan.forecast import format_seconds

    console.print(
        f"Forecast on this machine ({estimate['cores']} cores, --workers {estimate['workers']},"
        f" --batch-size {estimate['batch_size']}, {estimate['backend']}): a scan of "
        f"{estimate['files']} files "
        f"({estimate['images']} images) takes about [bold]{format_seconds(estimate['seconds'])}"
        f"[/bold]: decoding {format_seconds(estimate['decode_s'])}, inference "
        f"{format_seconds(estimate['inference_s'])} (overlapping), fixed "
        f"{format_seconds(estimate['fixed_s'])}."
    )
