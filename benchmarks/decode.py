"""Decode benchmark: plain pydicom vs batchfrac's decode + preprocess, per transfer syntax.

Run on demand from the repository root (it is not a test)::

    python -m benchmarks.decode --images 2 --repeat 3 [--syntax JPEG2000Lossless ...]

It writes ``--images`` synthetic 2000 x 2500 12-bit radiographs (smooth anatomy plus
noise, so the codecs have real work) in every transfer syntax the installed plugins
can encode (or only the ``--syntax`` keywords given) into a temporary directory, then
prints per syntax the milliseconds per image of:

- ``pydicom``: ``pydicom.dcmread(path).pixel_array`` (raw stored values);
- ``header``: :func:`batchfrac.ingest.header.read_header` alone;
- ``decode``: :func:`batchfrac.ingest.header.read_header` + :func:`batchfrac.ingest.decode.decode`
  (full resolution, the default policy);
- ``ingest full``: :func:`batchfrac.ingest.entry.ingest_file` with
  ``reduce_resolution=False`` (header + full-resolution decode + preprocess);
- ``ingest``: :func:`batchfrac.ingest.entry.ingest_file` as a scan runs it (the Dask
  worker's unit of work: JPEG 2000 decoded no larger than the working size needs),
  and the ratio ingest / pydicom.

Each figure is the best of ``--repeat`` passes over the files, all in the same run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import JPEG2000, UID, JPEGLSNearLossless

from batchfrac.ingest.decode import decode
from batchfrac.ingest.entry import IngestConfig, ingest_file
from batchfrac.ingest.header import read_header
from tests.encoders import LOSSLESS_SYNTAXES, write_encoded
from tests.factories import make_image_dataset

ROWS, COLUMNS, BITS = 2500, 2000, 12
SYNTAXES = (*LOSSLESS_SYNTAXES, JPEGLSNearLossless, JPEG2000)  # JPEG baseline is 8-bit only


def synthetic_radiograph(seed: int) -> np.ndarray:
    """A 12-bit image with smooth structure and sensor noise, deterministic per seed."""
    rng = np.random.default_rng(seed)
    r = np.linspace(-1.0, 1.0, ROWS)[:, None]
    c = np.linspace(-1.0, 1.0, COLUMNS)[None, :]
    bone = np.exp(-((c / 0.25) ** 2)) * (0.8 + 0.2 * np.cos(6 * r + seed))
    image = 600 + 2600 * bone + 300 * r + rng.normal(0, 40, (ROWS, COLUMNS))
    return np.clip(image, 0, 2**BITS - 1).astype(np.uint16)


def best_ms_per_image(
    runs: dict[str, Callable[[Path], object]], paths: list[Path], repeat: int
) -> dict[str, float]:
    """Best-of-``repeat`` milliseconds per image for each run; the runs are interleaved
    within each pass so that load from other processes hits them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            for path in paths:
                run(path)
            best[name] = min(best[name], (time.perf_counter() - start) * 1000 / len(paths))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2, help="images per transfer syntax")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best is kept)")
    parser.add_argument(
        "--syntax", action="append", help="only this UID keyword (repeatable), e.g. JPEG2000"
    )
    args = parser.parse_args(argv)
    syntaxes = [s for s in SYNTAXES if not args.syntax or UID(s).keyword in args.syntax]
    config = IngestConfig()
    full_resolution = IngestConfig(reduce_resolution=False)
    out = sys.stdout
    out.write(
        f"{args.images} images of {COLUMNS}x{ROWS}, {BITS}-bit, best of {args.repeat}; "
        f"pydicom {pydicom.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}; preprocess spec {config.spec.spec_id}\n\n"
    )
    out.write(
        "| syntax | UID | MB/image | pydicom ms | header ms | decode ms | ingest full ms "
        "| ingest ms | ingest/pydicom |\n"
    )
    out.write("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    with tempfile.TemporaryDirectory(prefix="batchfrac-bench-") as tmp:
        originals = [
            make_image_dataset(synthetic_radiograph(seed), bits_stored=BITS)
            for seed in range(args.images)
        ]
        for syntax in syntaxes:
            paths = [
                write_encoded(ds, Path(tmp) / f"{UID(syntax).keyword}-{k}.dcm", syntax)
                for k, ds in enumerate(originals)
            ]
            if any(row.status != "ok" for path in paths for row in ingest_file(path, config)):
                raise SystemExit(f"{UID(syntax).name}: ingest did not decode the benchmark images")
            megabytes = sum(path.stat().st_size for path in paths) / len(paths) / 1e6
            runs: dict[str, Callable[[Path], object]] = {
                "pydicom": lambda p: pydicom.dcmread(p).pixel_array,
                "header": read_header,
                "decode": lambda p: list(decode(p, read_header(p))),  # frames decode lazily
                "ingest full": lambda p: ingest_file(p, full_resolution),
                "ingest": lambda p: ingest_file(p, config),
            }
            ms = best_ms_per_image(runs, paths, args.repeat)
            plain, ingest = ms["pydicom"], ms["ingest"]
            out.write(
                f"| {UID(syntax).keyword} | {syntax} | {megabytes:.2f} | {plain:.0f} "
                f"| {ms['header']:.1f} | {ms['decode']:.0f} | {ms['ingest full']:.0f} "
                f"| {ingest:.0f} | {ingest / plain:.2f} |\n"
            )
            out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
