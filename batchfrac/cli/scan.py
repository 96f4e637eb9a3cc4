"""`batchfrac scan ARCHIVE --out OUTDIR`: screen every radiograph in an archive."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

from ..defaults import DEFAULT_MODALITIES, DEFAULT_TIMEOUT_S
from ..enums import Backend, Routing
from ..exitcodes import ExitCode


def scan(
    archive: Annotated[Path, typer.Argument(help="Archive directory (or one file); read only.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (created; resumable).")],
    bundle: Annotated[
        Path | None, typer.Option(help="Model bundle directory (default: the DEMO bundle).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Decoding processes (default: one per core); 0 = in-process.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Images per inference batch (default: 8 on a CPU with ONNX, 32 with "
            "Keras, sized to its free memory on a GPU)."
        ),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Existing Dask scheduler, e.g. tcp://host:8786.")
    ] = None,
    routing: Annotated[Routing, typer.Option(help="hard: routed head; soft: mixture.")] = (
        Routing.HARD
    ),
    csv: Annotated[bool, typer.Option("--csv", help="Also write images.csv/studies.csv.")] = False,
    modalities: Annotated[str, typer.Option(help="(0008,0060) Modality allow-list.")] = ",".join(
        DEFAULT_MODALITIES
    ),
    max_pixels: Annotated[
        int | None, typer.Option(help="Cap on Rows x Columns x Frames x Samples.")
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            help="What runs the networks: onnx (ONNX Runtime, no TensorFlow import), "
            "keras, or auto (onnx when the bundle has ONNX graphs)."
        ),
    ] = Backend.AUTO,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress or summary (cron).")] = False,
    chunk_size: Annotated[int, typer.Option(help="Files per decoding task.")] = 16,
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds one file may take on a Dask worker; a file still decoding then "
            "is an error row (reason timeout) and its worker restarts. 0 = no limit."
        ),
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Screen every radiograph under ARCHIVE; write reports and scan.log to --out.

    Running the same command again on the same --out resumes: files already
    reported for the same input (path, size, mtime), bundle and options are
    skipped. Another bundle or other options redo every file (the old parts
    stay in --out/parts and are never mixed in).

    \b
    Exit codes:
      0    every file is ok or skipped
      3    finished, but some rows have status error (see images.parquet)
      1    fatal: bad arguments, unreadable bundle, no space left, ...
      130  interrupted (Ctrl-C); finished chunks are kept, run again to resume
    """
    from rich.console import Console

    from ..errors import BatchfracError
    from ..scan.config import ScanConfig, default_workers
    from ..scan.progress import ScanProgress
    from ..scan.run import run_scan

    err = Console(stderr=True, soft_wrap=True)
    if bundle is None:
        bundle = Path(str(files("batchfrac") / "demo_bundle"))
        err.print(f"WARNING: no --bundle given; using the DEMO bundle {bundle}", style="bold red")
    try:
        config = ScanConfig(
            archive=archive,
            out=out,
            bundle=bundle,
            workers=default_workers() if workers is None else workers,
            batch_size=batch_size,
            chunk_size=chunk_size,
            scheduler=scheduler,
            routing=routing,
            modalities=tuple(m.strip().upper() for m in modalities.split(",") if m.strip()),
            max_pixels=max_pixels,
            csv=csv,
            timeout=timeout or None,
            backend=backend,
        )
    except ValueError as exc:
        err.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
        raise typer.Exit(ExitCode.FATAL) from None
    progress = ScanProgress(err, disable=quiet or not sys.stderr.isatty())
    try:
        with progress:
            summary = run_scan(config, progress)
    except KeyboardInterrupt:
        err.print(f"interrupted: finished work is kept in {out}; run the same command to resume")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except (BatchfracError, OSError) as exc:
        err.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
        raise typer.Exit(ExitCode.FATAL) from None
    if summary.run["bundle"]["demo"]:
        notice = summary.run["bundle"]["notice"]
        err.print(f"WARNING: {notice}", style="bold red", markup=False, highlight=False)
    if not quiet:
        counts = summary.run["counts"]
        status = ", ".join(f"{k} {v}" for k, v in sorted(counts["status"].items()))
        typer.echo(f"{counts['files']} files ({status}); {counts['studies']} studies -> {out}")
    raise typer.Exit(summary.exit_code)
