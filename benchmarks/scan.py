"""Scan benchmark: `batchfrac scan` against the paper's naive one-network-per-task loop.

Run on demand from the repository root (it is not a test)::

    python -m benchmarks.scan --images 200            # the full benchmark (slow)
    python -m benchmarks.scan --images 12 --naive-images 6 --size 512,640   # a quick look

It writes a synthetic archive of about ``--images`` radiographs (``batchfrac.synth``:
2000-2500 px, 12-bit, mixed transfer syntaxes, plus junk files) and a 4x copy of it
(four folders of other studies with the same pixels), then prints, all from this one run:

- ``scan``: images/s of ``batchfrac scan`` on the archive: ok images / the wall time of
  the whole ``batchfrac scan`` process (interpreter start, imports, cluster start, bundle
  load, reports and exit included), and its B0 trunk passes per image;
- ``scan, steady state``: the marginal rate of the 4N scan over the N scan,
  ``(ok 4N - ok N) / (wall 4N - wall N)``: every per-scan fixed cost (cluster start,
  network loading, reports' fixed part) cancels out, as the naive loop's model
  building is left out of its timing. This is the rate that decides how long an
  overnight scan of a large archive takes; the fixed cost is reported beside it;
- ``start``: the wall time of a scan of a one-file archive (the scan's fixed cost)
  against ``python -c "import tensorflow, keras"`` on the same machine (medians of 3);
- ``naive``: images/s of a per-image loop ``pydicom.dcmread -> our preprocess ->
  router full_model.predict -> bone full_model.predict`` with eight separate full
  models (the paper's layout; 2 B0 passes per image; model building and the first
  traced call of each model not timed; nor a first untimed pass over 5 images), run
  before and after the scans (mean);
- the ratios (steady state; whole runs with both sides' start-up; the scan's start-up
  against the naive loop's steady state), and the peak RSS (scan process plus its Dask
  workers, sampled by psutil) for N and 4N files.

On a shared machine the speed drifts by 10-40% within minutes, so the measurement runs
in ``--rounds`` rounds (default 2): naive loop, N scan, 4N scan; then the naive loop once
more. Each round's ratios pair its scans with the naive loop run just before and just
after them (mean), and the table gives the **lowest** ratio over the rounds, with every
round's value beside it: a target is met only if it is met in every round.

Targets on a 2-core machine: whole-run ratio >= 6 on N and 4N images, one-file scan
<= the TensorFlow import, <= 1.15 trunk passes per image, peak RSS growth from N to
4N files < 10%.
"""

from __future__ import annotations

import argparse
import compileall
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
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import psutil

import batchfrac

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


def run_scan(archive: Path, out: Path, args: argparse.Namespace) -> tuple[dict, int, float]:
    """Run `batchfrac scan` in a subprocess; return its run.json, peak RSS (bytes) and
    the process's wall time (s)."""
    command = [
        sys.executable, "-m", "batchfrac", "scan", str(archive), "--out", str(out),
        "--bundle", str(args.bundle), "--backend", args.backend, "--quiet",
    ]  # fmt: skip
    if args.batch_size is not None:
        command += ["--batch-size", str(args.batch_size)]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True)
    sampler = PeakRss(process.pid)
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    peak = sampler.stop()
    if process.returncode not in (0, 3):
        raise SystemExit(f"scan failed ({process.returncode}):\n{stderr}")
    return json.loads((out / "run.json").read_text()), peak, wall


def median_wall(command: list[str], repeat: int = 3) -> float:
    """Median wall seconds of ``command`` (a subprocess) over ``repeat`` runs."""
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, env=ENV, check=False, capture_output=True)
        walls.append(time.perf_counter() - started)
    return float(np.median(walls))


def start_costs(root: Path, archive: Path, args: argparse.Namespace) -> tuple[float, float]:
    """Median wall of a one-file scan (its fixed cost) and of the TensorFlow import."""
    one = root / "one-file"
    if not one.exists():
        with open(archive / "ground_truth.csv", newline="") as handle:
            first = archive / next(csv.DictReader(handle))["path"]
        one.mkdir()
        shutil.copy(first, one / first.name)
    walls = []
    for _ in range(3):
        shutil.rmtree(root / "out-one", ignore_errors=True)
        walls.append(run_scan(one, root / "out-one", args)[2])
    tensorflow = median_wall([sys.executable, "-c", "import tensorflow, keras"])
    return float(np.median(walls)), tensorflow


def machine() -> str:
    """CPU model and count, and the load average now (others share this machine)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{psutil.cpu_count()} x {model}, load average {load}"


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


def thumbnail_ms(archive: Path, folder: Path, images: int = 8, repeat: int = 25) -> float:
    """Driver milliseconds per image for its thumbnail (what :meth:`Pictures.hold` does:
    cut the letterbox, shrink, PNG-encode, write atomically), on
    ``images`` real rows of ``archive`` decoded once, each held ``repeat`` times."""
    from batchfrac.ingest.entry import IngestConfig, ingest_file
    from batchfrac.scan.pictures import Pictures, picture_name

    config = IngestConfig()
    rows = []
    for path in sorted(archive.rglob("*.dcm")):
        rows += [r for r in ingest_file(path, config) if r.pixels is not None]
        if len(rows) >= images:
            break
    pictures = Pictures(folder, config.spec, {}, picture_name, heatmaps_max=0)
    started = time.perf_counter()
    for i in range(repeat):
        for j, row in enumerate(rows):
            pictures.hold((i, j), row)
    return (time.perf_counter() - started) * 1000 / max(1, repeat * len(rows))


def steady_state(ok_n: int, wall_n: float, ok_4n: int, wall_4n: float) -> tuple[float, float]:
    """Marginal images/s of the larger scan over the smaller, and the fixed seconds per scan.

    With wall = fixed + images / rate for both runs, the difference of the two cancels
    ``fixed``; ``fixed`` is then what the smaller run spent beyond its images. NaN when
    the larger run was not longer (archives too small to tell start-up from work).
    """
    if ok_4n <= ok_n or wall_4n <= wall_n:
        return math.nan, math.nan
    rate = (ok_4n - ok_n) / (wall_4n - wall_n)
    return rate, wall_n - ok_n / rate


@dataclass(frozen=True)
class Round:
    """One round: the N and 4N scans (run.json, peak RSS bytes, wall s) and the naive
    loop's images/s around them (mean of the runs just before and just after)."""

    run_n: dict
    rss_n: int
    wall_n: float
    run_4n: dict
    rss_4n: int
    wall_4n: float
    naive: float

    @property
    def ok_n(self) -> int:
        return int(self.run_n["counts"]["status"].get("ok", 0))

    @property
    def ok_4n(self) -> int:
        return int(self.run_4n["counts"]["status"].get("ok", 0))

    @property
    def steady(self) -> tuple[float, float]:
        return steady_state(self.ok_n, self.wall_n, self.ok_4n, self.wall_4n)

    def whole_runs(self, naive_startup: float) -> tuple[float, float]:
        """Speed-ups of the N and 4N scans with both sides' start-up included: naive
        seconds for the same images / scan seconds."""
        return (
            (self.ok_n / self.naive + naive_startup) / self.wall_n,
            (self.ok_4n / self.naive + naive_startup) / self.wall_4n,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="images in the archive (N)")
    parser.add_argument("--naive-images", type=int, default=30, help="images the naive loop runs")
    parser.add_argument("--size", default="2000,2500", help="min,max image side in pixels")
    parser.add_argument(
        "--bundle", type=Path, default=Path(str(files("batchfrac") / "demo_bundle"))
    )
    parser.add_argument("--workers", type=int, default=None, help="scan --workers [cores]")
    parser.add_argument("--batch-size", type=int, default=None, help="scan --batch-size [auto]")
    parser.add_argument("--backend", default="auto", help="scan --backend [auto]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of naive loop, N and 4N scans [2]"
    )
    parser.add_argument(
        "--keep", type=Path, help="work in this folder and keep it (reuses archives)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
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
        # As installed from a wheel (pip compiles every module): an editable checkout under
        # PYTHONDONTWRITEBYTECODE would compile batchfrac's sources in every scan process.
        compileall.compile_dir(Path(batchfrac.__file__).parent, quiet=1)
        load_before = machine()
        naive_loop = NaiveLoop(args.bundle)
        # Untimed, and not counted as start-up either (in the naive loop's favour): the
        # first images load pydicom's codec plugins and warm the caches.
        naive_loop.images_per_s(root / "archive", 5)
        naive_rates = [naive_loop.images_per_s(root / "archive", args.naive_images)[0]]
        rounds: list[Round] = []
        for _ in range(args.rounds):
            for name in ("out-n", "out-4n"):
                shutil.rmtree(root / name, ignore_errors=True)
            run_n, rss_n, wall_n = run_scan(root / "archive", root / "out-n", args)
            run_4n, rss_4n, wall_4n = run_scan(root / "archive4", root / "out-4n", args)
            naive_rates.append(naive_loop.images_per_s(root / "archive", args.naive_images)[0])
            naive = (naive_rates[-2] + naive_rates[-1]) / 2
            rounds.append(Round(run_n, rss_n, wall_n, run_4n, rss_4n, wall_4n, naive))
        one_file_s, tensorflow_s = start_costs(root, root / "archive", args)
        thumbnail = thumbnail_ms(root / "archive", root / "thumbnails")
        thumbnails_4n = len(list((root / "out-4n" / "thumbnails").glob("*.png")))
        load_after = machine().rsplit("load average ", 1)[1]
    startup = naive_loop.startup_s
    last = rounds[-1]
    n_images, n_4n = last.ok_n, last.ok_4n
    t4 = last.run_4n["throughput"]
    passes = max(r.run_n["throughput"]["trunk_passes_per_image"] for r in rounds)
    growth = max((r.rss_4n - r.rss_n) / r.rss_n * 100 for r in rounds)
    inference = last.run_4n["inference"]
    per_image = 1000 / max(n_4n, 1)
    pictures = last.run_4n.get("heatmaps") or {}

    def worst(values: list[float], unit: str = "x", digits: int = 1) -> str:
        # the lowest value over the rounds, then each round's
        each = ", ".join(f"{v:.{digits}f}" for v in values)
        return f"{min(values):.{digits}f}{unit}" + (f" ({each})" if len(values) > 1 else "")

    out.write(
        f"batchfrac scan benchmark: {n_images} images ({low}-{high} px, 12-bit, mixed "
        f"syntaxes) and 4x that, {len(rounds)} rounds; {load_before} (after: "
        f"{load_after}); Python {platform.python_version()}, bundle "
        f"{last.run_n['bundle']['id']} (image size "
        f"{last.run_n['preprocessing']['spec'].get('image_size')}); backend "
        f"{inference['backend']} ({', '.join(inference['providers'])}), "
        f"{inference['threads'] or 'default'} inference threads, batch "
        f"{inference['batch_size']}. Ratios: the lowest over the rounds (each round's in "
        f"brackets).\n\n"
        f"| measure | value | target |\n|---|---:|---:|\n"
        f"| scan wall s, whole process, per round (N; 4N) | "
        f"{'; '.join(f'{r.wall_n:.1f}, {r.wall_4n:.1f}' for r in rounds)} | |\n"
        f"| 4N, last round: worker decode s, driver inference s | {t4['decode_s']:.0f}, "
        f"{t4['inference_s']:.0f} | |\n"
        f"| 4N per image, last round: decode ms, inference ms, inference idle share | "
        f"{t4['decode_s'] * per_image:.0f}, {t4['inference_s'] * per_image:.0f}, "
        f"{t4['inference_idle_share']} | |\n"
        f"| 4N pictures: thumbnails, ms each (driver, measured alone) | {thumbnails_4n}, "
        f"{thumbnail:.1f} | |\n"
        f"| 4N pictures: heatmaps written, s in all | {pictures.get('written', 0)}, "
        f"{pictures.get('seconds', 0):.1f} | |\n"
        f"| naive loop images/s ({args.naive_images} images; before, between and after "
        f"the rounds) | {', '.join(f'{v:.2f}' for v in naive_rates)} | |\n"
        f"| scan images/s, steady state (4N - N), per round | "
        f"{', '.join(f'{r.steady[0]:.2f}' for r in rounds)} | |\n"
        f"| scan fixed cost per run (s), per round | "
        f"{', '.join(f'{r.steady[1]:.1f}' for r in rounds)} | |\n"
        f"| one-file scan wall s (median of 3) | {one_file_s:.1f} | |\n"
        f'| `python -c "import tensorflow, keras"` wall s (median of 3) | '
        f"{tensorflow_s:.1f} | |\n"
        f"| one-file scan / TensorFlow import | {one_file_s / tensorflow_s:.2f} | <= 1 |\n"
        f"| speed-up, steady state (neither side's start-up timed) | "
        f"{worst([r.steady[0] / r.naive for r in rounds])} | |\n"
        f"| naive loop start-up (TensorFlow import, 8 models built and traced) s | "
        f"{startup:.1f} | |\n"
        f"| speed-up, whole run, both start-ups included (N) | "
        f"{worst([r.whole_runs(startup)[0] for r in rounds])} | >= 6x |\n"
        f"| speed-up, whole run, both start-ups included (4N) | "
        f"{worst([r.whole_runs(startup)[1] for r in rounds])} | >= 6x |\n"
        f"| speed-up, scan's start-up included, naive's not (N; 4N) | "
        f"{worst([r.ok_n / r.wall_n / r.naive for r in rounds])}; "
        f"{worst([r.ok_4n / r.wall_4n / r.naive for r in rounds])} | |\n"
        f"| B0 trunk passes per image (scan) | {passes:.3f} | <= 1.15 |\n"
        f"| B0 passes per image (naive) | 2.000 | |\n"
        f"| peak RSS, N files; 4N files (last round) | {last.rss_n / 2**20:.0f} MiB; "
        f"{last.rss_4n / 2**20:.0f} MiB | |\n"
        f"| peak RSS growth N -> 4N (the largest over the rounds) | {growth:+.1f}% "
        f"| < 10% |\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
