"""Forecast benchmark: does ``batchfrac doctor``'s forecast say how long the scan takes?

Run on demand from the repository root (it is not a test)::

    python -m benchmarks.forecast --images 120              # realistic (2000-2500 px)
    python -m benchmarks.forecast --images 12 --size 512,640 --workers 0   # a quick look

It writes a synthetic archive of about ``--images`` radiographs (the archive of
``benchmarks/scan.py``: 12-bit, mixed transfer syntaxes, plus junk files), runs
``batchfrac doctor ARCHIVE --json`` with the scan's ``--workers`` and ``--batch-size``,
then the scan itself, each as a fresh process, and prints the forecast, its parts, the
scan's wall time (process start to exit, as an operator's clock sees it) and their
ratio. Target (issue 13): the real scan takes between half and twice the forecast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import psutil

from benchmarks.scan import ENV, make_archive


def doctor_estimate(archive: Path, args: argparse.Namespace) -> tuple[dict, float]:
    """``doctor --json``'s ``estimate`` and the seconds doctor took."""
    done, took = _batchfrac(["doctor", str(archive), "--json"], args)
    return json.loads(done.stdout)["estimate"], took


def scan_wall(archive: Path, out: Path, args: argparse.Namespace) -> tuple[float, dict]:
    """Wall seconds of ``batchfrac scan`` from process start to exit, and its run.json."""
    _done, took = _batchfrac(["scan", str(archive), "--out", str(out), "--quiet"], args)
    return took, json.loads((out / "run.json").read_text())


def _batchfrac(
    argv: list[str], args: argparse.Namespace
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``batchfrac ARGV`` with the bundle and scan settings; its output and seconds
    (exit 0 or 3, else the benchmark stops)."""
    command = [sys.executable, "-m", "batchfrac", *argv, "--bundle", str(args.bundle)]
    command += _settings(args)
    started = time.perf_counter()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise SystemExit(f"batchfrac {argv[0]} failed ({done.returncode}):\n{done.stderr}")
    return done, took


def _settings(args: argparse.Namespace) -> list[str]:
    """The scan settings doctor and the scan share (each left to its default when unset)."""
    settings = []
    for option, value in (("--workers", args.workers), ("--batch-size", args.batch_size)):
        if value is not None:
            settings += [option, str(value)]
    return settings


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120, help="images in the archive")
    parser.add_argument("--size", default="2000,2500", help="min,max image side in pixels")
    parser.add_argument(
        "--bundle", type=Path, default=Path(str(files("batchfrac") / "demo_bundle"))
    )
    parser.add_argument("--workers", type=int, default=None, help="scan --workers [cores]")
    parser.add_argument("--batch-size", type=int, default=None, help="[the backend's]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    low, high = (int(v) for v in args.size.split(","))
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = args.keep
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="batchfrac-fc-")))
        archive = root / "archive"
        if not (archive / "ground_truth.csv").exists():
            make_archive(archive, args.images, (low, high), args.seed)
        load_before = _load()
        estimate, doctor_s = doctor_estimate(archive, args)
        out = root / "out"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        wall, run = scan_wall(archive, out, args)
    ratio = wall / estimate["seconds"]
    ok = run["counts"]["status"].get("ok", 0)
    sys.stdout.write(
        f"batchfrac forecast benchmark: {ok} images ({low}-{high} px), {psutil.cpu_count()} "
        f"CPUs, Python {platform.python_version()}, --workers {estimate['workers']}, "
        f"--batch-size {estimate['batch_size']}, backend {estimate['backend']}; load average "
        f"before {load_before}, after {_load()}\n\n"
        f"| measure | value | target |\n|---|---:|---:|\n"
        f"| forecast s (decode, inference, fixed) | {estimate['seconds']:.1f} "
        f"({estimate['decode_s']:.1f}, {estimate['inference_s']:.1f}, "
        f"{estimate['fixed_s']:.1f}) | |\n"
        f"| doctor's own run s | {doctor_s:.1f} | |\n"
        f"| scan wall s (process start to exit) | {wall:.1f} | |\n"
        f"| scan / forecast | {ratio:.2f} | 0.5 - 2 |\n"
    )
    return 0 if 0.5 <= ratio <= 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
