"""`batchfrac scan ARCHIVE --out OUTDIR`: screen every radiograph in an archive."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ..defaults import (
    DEFAULT_HEATMAPS_MAX,
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MODALITIES,
    DEFAULT_TIMEOUT_S,
)
from ..enums import Backend, InferOn, Routing
from ..exitcodes import ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from ..report.writer import ScanSummary
    from ..scan.config import ScanConfig


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
    infer_on: Annotated[
        InferOn,
        typer.Option(
            help="Where the networks run: driver (this process; workers only decode) or "
            "workers (each --scheduler worker decodes and infers whole chunks; needs --scheduler)."
        ),
    ] = InferOn.DRIVER,
    routing: Annotated[Routing, typer.Option(help="hard: routed head; soft: mixture.")] = (
        Routing.HARD
    ),
    csv: Annotated[bool, typer.Option("--csv", help="Also write images.csv/studies.csv.")] = False,
    modalities: Annotated[str, typer.Option(help="(0008,0060) Modality allow-list.")] = ",".join(
        DEFAULT_MODALITIES
    ),
    max_frame_pixels: Annotated[
        int, typer.Option(help="Cap on one frame's Rows x Columns x Samples (too_large above).")
    ] = DEFAULT_MAX_FRAME_PIXELS,
    max_frames: Annotated[
        int, typer.Option(help="Cap on the frames decoded from one file (too_large above).")
    ] = DEFAULT_MAX_FRAMES,
    max_decoded_mb: Annotated[
        int, typer.Option(help="Cap on one file's decoded pixel data, MiB (too_large above).")
    ] = DEFAULT_MAX_DECODED_BYTES >> 20,
    backend: Annotated[
        Backend,
        typer.Option(
            help="What runs the networks: onnx (ONNX Runtime, no TensorFlow import), "
            "keras, or auto (onnx when the bundle has ONNX graphs)."
        ),
    ] = Backend.AUTO,
    heatmaps_max: Annotated[
        int,
        typer.Option(
            help="At most this many Grad-CAM heatmaps (abnormal images first, most probable "
            "first; then --heatmaps-uncertain). 0 = none; run.json counts those left out."
        ),
    ] = DEFAULT_HEATMAPS_MAX,
    heatmaps_uncertain: Annotated[
        int,
        typer.Option(
            help="Heatmaps also for the N images scored normal whose probability is "
            "closest to their bone's threshold."
        ),
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="No progress: one summary line at most (cron).")
    ] = False,
    chunk_size: Annotated[int, typer.Option(help="Files per decoding task.")] = 16,
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds one file may take on a Dask worker; a file still decoding then "
            "is an error row (reason timeout) and its worker restarts. 0 = no limit."
        ),
    ] = DEFAULT_TIMEOUT_S,
    retry_errors: Annotated[
        bool,
        typer.Option(
            "--retry-errors",
            help="On a resumed --out, read again the files whose rows are errors "
            "(e.g. a read_error or timeout of a share that was down).",
        ),
    ] = False,
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous",
            file_okay=False,
            help="A previous night's --out: its rows are reused for files unchanged since "
            "(same path, size, mtime; same bundle and options); only new or changed files "
            "are read. Unusable reports mean a full scan, with a warning.",
        ),
    ] = None,
    previous_errors: Annotated[
        bool,
        typer.Option(
            "--reuse-previous-errors",
            help="With --previous: keep its error rows too (by default they are read again).",
        ),
    ] = False,
    dicom: Annotated[
        Path | None,
        typer.Option(
            "--dicom",
            file_okay=False,
            help="After the reports, write one DICOM Structured Report per study and one Key "
            "Object Selection per abnormal study into this folder (see `batchfrac export`).",
        ),
    ] = None,
    pseudonymize_key_file: Annotated[
        Path | None,
        typer.Option(
            "--pseudonymize-key-file",
            dir_okay=False,
            help="Write Patient ID, Accession Number and every file and folder name below "
            "ARCHIVE as keyed pseudonyms (HMAC-SHA256) in every output; key file of at "
            "least 32 bytes, e.g. head -c 32 /dev/urandom | base64 > key. The same key "
            "gives the same pseudonyms every night.",
        ),
    ] = None,
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

    terminal = Console(stderr=True, soft_wrap=True)
    if bundle is None:
        bundle = Path(str(files("batchfrac") / "demo_bundle"))
        if not quiet:
            terminal.print(f"WARNING: no --bundle given; using the DEMO bundle {bundle}",
                           style="bold red")  # fmt: skip
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
            max_frame_pixels=max_frame_pixels,
            max_frames=max_frames,
            max_decoded_bytes=max_decoded_mb << 20,
            csv=csv,
            timeout=timeout or None,
            retry_errors=retry_errors,
            previous=previous,
            previous_errors=previous_errors,
            pseudonymize_key_file=pseudonymize_key_file,
            backend=backend,
            heatmaps_max=heatmaps_max,
            heatmaps_uncertain=heatmaps_uncertain,
            infer_on=infer_on,
        )
    except ValueError as exc:
        _fail(terminal, exc)
    if config.local_workers:
        from ..scan.forkserver import start_forkserver

        start_forkserver()  # the workers' imports, done once beside this process's own

    from ..atomic import make_report_dir
    from ..scan.run import check_paths, load_pseudonyms

    try:
        check_paths(config.archive, config.out)
        load_pseudonyms(config)  # a bad key file is refused before anything is written
        make_report_dir(config.out)
    except (ValueError, BatchfracError, OSError) as exc:
        _fail(terminal, exc)
    if config.workers == 0 and not config.scheduler and not quiet:
        terminal.print(
            "note: --workers 0 decodes in this process: no --timeout, and a codec that "
            "crashes the process ends the scan (run again to resume)"
        )
    summary = _run(config, quiet, terminal)
    counts = summary.run["counts"]
    status = ", ".join(f"{k} {v}" for k, v in sorted(counts["status"].items()))
    line = f"{counts['files']} files ({status}); {counts['studies']} studies -> {out}"
    warnings = []
    unusable = (summary.run.get("previous") or {}).get("why_not")
    if unusable:
        warnings.append(f"--previous not used, every file was read: {unusable}")
    if summary.run["bundle"]["demo"]:
        warnings.append(summary.run["bundle"]["notice"])
    if quiet:  # cron: silent after a clean scan, else this one line
        if warnings or summary.exit_code != ExitCode.OK:
            typer.echo(" ".join([line, *(f"[{w}]" for w in warnings)]))
    else:
        for warning in warnings:
            terminal.print(f"WARNING: {warning}", style="bold red", markup=False, highlight=False)
        typer.echo(line)
    if dicom is None:
        raise typer.Exit(summary.exit_code)
    from ..pacs.console import export_to_folder

    exported = export_to_folder(config.out, dicom, config.pseudonymize_key_file)
    raise typer.Exit(exported if exported != ExitCode.OK else summary.exit_code)


def _run(config: ScanConfig, quiet: bool, terminal: Console) -> ScanSummary:
    """Run the scan with library output sent to scan.log; Ctrl-C and errors end it here."""
    from rich.console import Console

    from ..errors import BatchfracError
    from ..scan.progress import ScanProgress
    from ..scan.run import load_pseudonyms, run_scan
    from ..scan.scanlog import LOG_FILE
    from .console import native_stderr_to

    try:
        pseudonyms = load_pseudonyms(config)
        scrub = None if pseudonyms is None else (lambda text: pseudonyms.text(text) or text)
        with native_stderr_to(config.out / LOG_FILE, scrub) as stream:
            console = Console(file=stream, soft_wrap=True)
            disable = quiet or not stream.isatty()
            with ScanProgress(console, disable=disable) as progress:
                return run_scan(config, progress)
    except KeyboardInterrupt:
        terminal.print(
            f"interrupted: finished work is kept in {config.out}; run the same command to resume"
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except (BatchfracError, OSError) as exc:
        _fail(terminal, exc)


def _fail(terminal: Console, error: BaseException) -> NoReturn:
    terminal.print(f"error: {error}", style="bold red", markup=False, highlight=False)
    raise typer.Exit(ExitCode.FATAL) from None
