"""Scan benchmark: `batchfrac scan` against the paper's naive one-network-per-task loop.

Run on demand from the repository root (it is not a test)::

    python -m benchmarks.scan --images 200            # the full benchmark (slow)
    python -m benchmarks.scan --images 12 --naive-images 6 --size 512,640   # a quick look

It writes a synthetic archive of about ``--images`` radiographs (``batchfrac.synth``:
2000-2500 px, 12-bit, mixed transfer syntaxes, plus junk files) and a 4x copy of it
(four folders of other studies with the same pixels), then prints, all from this one run:

- ``scan``: images/s of ``batchfrac scan`` on the archive (``run.json``: ok images /
  scan wall time, cluster start and bundle load included), and its B0 trunk passes
  per image;
- ``scan, steady state``: the marginal rate of the 4N scan over the N scan,
  ``(ok 4N - ok N) / (wall 4N - wall N)``: every per-scan fixed cost (cluster start,
  network building and tracing, reports' fixed part) cancels out, as the naive loop's
  model building is left out of its timing. This is the rate that decides how long an
  overnight scan of a large archive takes; the fixed cost is reported beside it;
- ``naive``: images/s of a per-image loop ``pydicom.dcmread -> our preprocess ->
  router full_model.predict -> bone full_model.predict`` with eight separate full
  models (the paper's layout; 2 B0 passes per image; model building and the first
  traced call of each model not timed), run before and after the scans (mean);
- the ratios (steady state; whole runs with both sides' start-up; the scan's start-up
  against the naive loop's steady state), and the peak RSS (scan process plus its Dask
  workers, sampled by psutil) for N and 4N files.

Targets on a 2-core machine: ratio >= 6, <= 1.15 trunk passes per image, peak RSS
growth from N to 4N files < 10%.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import psutil

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def make_archive(root: Path, images: int, sizes: tuple[int, int], seed: int) -> int:
    """A synthetic archive of about ``images`` images; returns the number of image files."""
    from batchfrac.synth.archive import generate_archive
    from batchfrac.synth.config import SynthConfig

    studies = max(1, math.ceil(images / 2.5))  # the planner draws ~2-3 images per study
    config = SynthConfig(studies=studies, seed=seed, min_size=sizes[0], max_size=sizes[1])
    return generate_archive(root, config).images


def replicate(source: Path, target: Path, copies: int) -> None:
    """``copies`` copies of ``source`` under ``target/copyK``: other studies, same pixels.

    Each DICOM file is written again with new Study, Series and SOP Instance UIDs (derived
    from the old UID and ``K``; its pixel data bytes untouched), so the scan reads and
    infers every copy: a hard link would be one file (``skipped: duplicate``), and a
    byte-for-byte copy another copy of the same instance (``duplicate_instance``). Files
    pydicom cannot read (the junk) are copied as they are.
    """
    import pydicom
    from pydicom.uid import generate_uid

    uid_tags = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    for k in range(copies):
        for path in sorted(source.rglob("*")):
            if not path.is_file():
                continue
            dest = target / f"copy{k}" / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                ds = pydicom.dcmread(path)
                for keyword in uid_tags:
                    if keyword in ds:
                        old = str(ds[keyword].value)
                        setattr(ds, keyword, generate_uid(entropy_srcs=[old, str(k)]))
                if "SOPInstanceUID" in ds:
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.save_as(dest)
            except Exception:  # noqa: BLE001 - junk and broken files: copied as they are
                shutil.copyfile(path, dest)


class PeakRss:
    """Samples the RSS of a process and all its descendants; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                total = 0
                for proc in tree:
                    try:
                        total += proc.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
                self.peak = max(self.peak, total)
            except psutil.NoSuchProcess:
                return
            time.sleep(interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_scan(archive: Path, out: Path, args: argparse.Namespace) -> tuple[dict, int]:
    """Run `batchfrac scan` in a subprocess; return its run.json and peak RSS (bytes)."""
    command = [
        sys.executable, "-m", "batchfrac", "scan", str(archive), "--out", str(out),
        "--bundle", str(args.bundle), "--batch-size", str(args.batch_size), "--quiet",
    ]  # fmt: skip
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    process = subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True)
    sampler = PeakRss(process.pid)
    _, stderr = process.communicate()
    peak = sampler.stop()
    if process.returncode not in (0, 3):
        raise SystemExit(f"scan failed ({process.returncode}):\n{stderr}")
    return json.loads((out / "run.json").read_text()), peak


class NaiveLoop:
    """The paper's layout: eight separate full models, one image at a time."""

    def __init__(self, bundle_path: Path) -> None:
        from batchfrac.bundle.format import ModelBundle
        from batchfrac.enums import Head

        started = time.perf_counter()
        self.bundle = ModelBundle.load(bundle_path)
        self.models = {head: self.bundle.full_model(head) for head in Head}
        size = self.bundle.image_size
        warm = np.zeros((1, size, size, 3), np.float32)
        for model in self.models.values():  # steady state: graph tracing is not timed
            model.predict(warm, verbose=0)
        #: Seconds to load the bundle, build the eight models and trace each once.
        self.startup_s = time.perf_counter() - started

    def images_per_s(self, archive: Path, limit: int) -> tuple[float, int]:
        """Images/s over ``limit`` images spread evenly over the archive's image files."""
        import pydicom

        from batchfrac.enums import Bone, Head
        from batchfrac.ingest.preprocess import preprocess

        with open(archive / "ground_truth.csv", newline="") as handle:
            every = [archive / row["path"] for row in csv.DictReader(handle)]
        paths = every[:: max(1, len(every) // limit)][:limit]  # the archive's syntax mix
        bones = list(Bone)
        start = time.perf_counter()
        for path in paths:
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array.astype(np.float32)
            pixels = (pixels - pixels.min()) / max(float(np.ptp(pixels)), 1e-6)
            if ds.PhotometricInterpretation == "MONOCHROME1":
                pixels = 1.0 - pixels
            x = preprocess(pixels, self.bundle.spec)[None]
            router = self.models[Head.ROUTER].predict(x, verbose=0)
            bone = bones[int(np.argmax(router[0]))]
            self.models[Head(bone.value)].predict(x, verbose=0)
        return len(paths) / (time.perf_counter() - start), len(paths)


def steady_state(run_n: dict, run_4n: dict) -> tuple[float, float]:
    """Marginal images/s of the larger scan over the smaller, and the fixed seconds per scan.

    With wall = fixed + images / rate for both runs, the difference of the two cancels
    ``fixed``; ``fixed`` is then what the smaller run spent beyond its images. NaN when
    the larger run was not longer (archives too small to tell start-up from work).
    """
    ok_n = run_n["counts"]["status"].get("ok", 0)
    ok_4n = run_4n["counts"]["status"].get("ok", 0)
    wall_n = run_n["throughput"]["wall_s"]
    wall_4n = run_4n["throughput"]["wall_s"]
    if ok_4n <= ok_n or wall_4n <= wall_n:
        return math.nan, math.nan
    rate = (ok_4n - ok_n) / (wall_4n - wall_n)
    return rate, wall_n - ok_n / rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="images in the archive (N)")
    parser.add_argument("--naive-images", type=int, default=30, help="images the naive loop runs")
    parser.add_argument("--size", default="2000,2500", help="min,max image side in pixels")
    parser.add_argument(
        "--bundle", type=Path, default=Path(str(files("batchfrac") / "demo_bundle"))
    )
    parser.add_argument("--workers", type=int, default=None, help="scan --workers [cores]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keep", type=Path, help="work in this folder and keep it (reuses archives)"
    )
    args = parser.parse_args(argv)
    low, high = (int(v) for v in args.size.split(","))
    out = sys.stdout
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = args.keep
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="batchfrac-bench-")))
        if not (root / "archive" / "ground_truth.csv").exists():
            make_archive(root / "archive", args.images, (low, high), args.seed)
        if not (root / "archive4").exists():
            replicate(root / "archive", root / "archive4", 4)
        for name in ("out-n", "out-4n"):
            shutil.rmtree(root / name, ignore_errors=True)
        # The naive loop runs before and after the scans (mean of both): on a shared
        # machine the load changes during the benchmark.
        naive_loop = NaiveLoop(args.bundle)
        before, naive_n = naive_loop.images_per_s(root / "archive", args.naive_images)
        run_n, rss_n = run_scan(root / "archive", root / "out-n", args)
        run_4n, rss_4n = run_scan(root / "archive4", root / "out-4n", args)
        after, _ = naive_loop.images_per_s(root / "archive", args.naive_images)
        naive = (before + after) / 2
    n_images = run_n["counts"]["status"].get("ok", 0)
    ours = run_n["throughput"]["images_per_s"]
    t4 = run_4n["throughput"]
    ours_4n = t4["images_per_s"]
    steady, fixed_s = steady_state(run_n, run_4n)
    n_4n = run_4n["counts"]["status"].get("ok", 0)

    def whole_run(images: int, scan_wall: float) -> float:
        # both sides' start-up included: naive seconds for the same images / scan seconds
        return (images / naive + naive_loop.startup_s) / scan_wall

    passes = run_n["throughput"]["trunk_passes_per_image"]
    growth = (rss_4n - rss_n) / rss_n * 100
    out.write(
        f"batchfrac scan benchmark: {n_images} images ({low}-{high} px, 12-bit, mixed "
        f"syntaxes) and 4x that; {psutil.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, bundle {run_n['bundle']['id']} "
        f"(image size {run_n['preprocessing']['spec'].get('image_size')})\n\n"
        f"| measure | value | target |\n|---|---:|---:|\n"
        f"| scan images/s (N) | {ours:.2f} | |\n"
        f"| scan images/s (4N) | {ours_4n:.2f} | |\n"
        f"| 4N: worker decode s, driver inference s, wall s | {t4['decode_s']:.0f}, "
        f"{t4['inference_s']:.0f}, {t4['wall_s']:.0f} | |\n"
        f"| naive loop images/s ({naive_n} images; before, after) | {naive:.2f} "
        f"({before:.2f}, {after:.2f}) | |\n"
        f"| scan images/s, steady state (4N - N) | {steady:.2f} | |\n"
        f"| scan fixed cost per run (s) | {fixed_s:.1f} | |\n"
        f"| speed-up, steady state (neither side's start-up timed) | {steady / naive:.1f}x "
        f"| >= 6x |\n"
        f"| naive loop start-up (8 models built and traced) s | {naive_loop.startup_s:.1f} | |\n"
        f"| speed-up, whole run, both start-ups included (N; 4N) | "
        f"{whole_run(n_images, run_n['throughput']['wall_s']):.1f}x; "
        f"{whole_run(n_4n, t4['wall_s']):.1f}x | |\n"
        f"| speed-up, scan's start-up included, naive's not (N; 4N) | {ours / naive:.1f}x; "
        f"{ours_4n / naive:.1f}x | |\n"
        f"| B0 trunk passes per image (scan) | {passes:.3f} | <= 1.15 |\n"
        f"| B0 passes per image (naive) | 2.000 | |\n"
        f"| peak RSS, N files | {rss_n / 2**20:.0f} MiB | |\n"
        f"| peak RSS, 4N files | {rss_4n / 2**20:.0f} MiB | |\n"
        f"| peak RSS growth N -> 4N | {growth:+.1f}% | < 10% |\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
