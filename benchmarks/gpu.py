"""The GPU check: a scan on an accelerator, in one call of the device tool.

What it shows (issue #13, item 5): on a GPU host the scan sizes its batches to the
accelerator's free memory, runs the networks there, and ``run.json`` records
``throughput.inference_idle_share``, the share of the inference phase the networks sat
waiting for decoded images (high: more decoding workers would help).

It writes a synthetic archive of about ``--images`` radiographs (``--base`` drawn by
``batchfrac.synth``, the rest copies with other UIDs, as in :mod:`benchmarks.scan`), then
runs ``batchfrac scan --backend keras`` with ``KERAS_BACKEND=jax`` once for each value of
``--workers`` (fewer decoding processes should leave the accelerator idler), and once
with ``--backend onnx`` (ONNX Runtime on the CPU) as the reference for the
probabilities. It checks, and writes to ``OUT/gpu_check.json``:

- ``inference.device`` is ``gpu`` (``--allow-cpu`` waives it, to try the script on a CPU);
- ``inference.batch_size`` is :func:`batchfrac.bundle.device.accelerator_batch_size` of
  the free memory ``nvidia-smi`` reported before the scan;
- ``throughput.inference_idle_share`` is a number in [0, 1] in every GPU scan;
- every scan reports the same ``ok`` rows, and the GPU's abnormality probabilities agree
  with ONNX Runtime's within ``--tolerance`` and its bones on all but 1% of the images
  (XLA may use TF32 matmuls on the GPU, ~1e-3 apart from float32).

The exit status is 1 if a check failed. Nothing here imports JAX or Keras: the scans
run in subprocesses, and a JAX process here would take the GPU's memory first.

On the lent H200 (Python 3.12, JAX with CUDA, ONNX Runtime, OpenCV, pyarrow, typer, rich;
no TensorFlow, no pydicom, Keras or Dask), once, here, in the repository root::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp $(for n in 17 24 27 28 31 34 35; do echo --platform \\
        manylinux_2_${n}_x86_64; done) --platform manylinux2014_x86_64 -d .whl \\
        -r benchmarks/gpu_wheels.txt      # 20 MB

then one device call (``timeout_s`` 540: the archive takes about a minute, each scan
about two, most of it XLA compiling the networks), carrying ``.whl``::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 \\
        && python3 -m benchmarks.gpu --out $OUT/check

On a CPU-only machine: ``python -m benchmarks.gpu --images 24 --base 12 --size 512,640
--workers 2 --allow-cpu`` runs every step (its batch-size check is then the CPU's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from batchfrac.bundle.device import CPU_BATCH_KERAS, accelerator_batch_size, gpu_free_bytes

from .scan import machine, make_archive, replicate

REPO = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = REPO / "batchfrac" / "demo_bundle"


def gpu_name() -> str | None:
    """The first GPU's name and memory as ``nvidia-smi`` reports them, or ``None``."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    done = subprocess.run(
        [smi, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else None


def scan(archive: Path, out: Path, bundle: Path, backend: str, workers: int) -> dict[str, Any]:
    """One ``batchfrac scan`` subprocess; its run.json, per-image rows and wall time."""
    import pyarrow.parquet as pq

    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [
        sys.executable, "-m", "batchfrac", "scan", str(archive), "--out", str(out),
        "--bundle", str(bundle), "--backend", backend, "--workers", str(workers), "--quiet",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    columns = ["path", "frame", "status", "bone", "abnormal_probability"]
    rows = pq.read_table(out / "images.parquet", columns=columns).to_pylist()
    ok = {(r["path"], r["frame"]): r for r in rows if r["status"] == "ok"}
    return {"run": json.loads((out / "run.json").read_text()), "ok": ok, "wall_s": wall}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def compare(gpu: dict[Any, Any], cpu: dict[Any, Any]) -> tuple[float, int]:
    """Largest |p_gpu - p_cpu| over the images both scored, and how many bones differ."""
    shared = gpu.keys() & cpu.keys()
    gap = max(
        (abs(gpu[k]["abnormal_probability"] - cpu[k]["abnormal_probability"]) for k in shared),
        default=0.0,
    )
    return gap, sum(gpu[k]["bone"] != cpu[k]["bone"] for k in shared)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1200, help="images in the archive")
    parser.add_argument("--base", type=int, default=150, help="images drawn; the rest copies")
    parser.add_argument("--size", default="1500,2000", help="smallest,largest side (px)")
    parser.add_argument("--workers", default="auto,4", help="comma-separated --workers "
                        "values (auto: one per core)")  # fmt: skip
    parser.add_argument("--bundle", type=Path, default=DEMO_BUNDLE)
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="where gpu_check.json goes")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-work-"))
    cores = len(os.sched_getaffinity(0))
    workers = [cores if w == "auto" else int(w) for w in args.workers.split(",")]
    sizes = tuple(int(s) for s in args.size.split(","))
    image_size = json.loads((args.bundle / "bundle.json").read_text())["image_size"]

    report: dict[str, Any] = {"machine": machine(), "gpu": gpu_name(), "scans": []}
    say(f"machine: {report['machine']}\ngpu: {report['gpu']}")
    started = time.perf_counter()
    drawn = make_archive(work / "base", args.base, (sizes[0], sizes[1]), seed=5)
    copies = max(0, round(args.images / max(drawn, 1)) - 1)
    replicate(work / "base", work / "archive", copies)
    shutil.move(work / "base", work / "archive" / "base")
    say(f"archive: {drawn} images x {copies + 1} ({time.perf_counter() - started:.0f} s)")

    failures: list[str] = []
    gpu_runs = []
    for n in workers:
        free = gpu_free_bytes()
        expected = accelerator_batch_size(free, image_size) if free is not None else CPU_BATCH_KERAS
        result = scan(work / "archive", work / f"keras-w{n}", args.bundle, "keras", n)
        inference, throughput = result["run"]["inference"], result["run"]["throughput"]
        idle = throughput.get("inference_idle_share")
        entry = {
            "backend": "keras-jax", "workers": n, "wall_s": round(result["wall_s"], 1),
            "device": inference["device"], "providers": inference["providers"],
            "batch_size": inference["batch_size"], "expected_batch_size": expected,
            "free_bytes_before": free, "ok_images": len(result["ok"]), "throughput": throughput,
        }  # fmt: skip
        report["scans"].append(entry)
        say(json.dumps(entry))
        if inference["device"] != "gpu" and not args.allow_cpu:
            failures.append(f"--workers {n}: the networks ran on {inference['device']}")
        if inference["batch_size"] != expected:
            failures.append(f"--workers {n}: batch {inference['batch_size']} != {expected}")
        if not isinstance(idle, (int, float)) or not 0.0 <= idle <= 1.0:
            failures.append(f"--workers {n}: inference_idle_share is {idle!r}")
        gpu_runs.append(result)

    reference = scan(work / "archive", work / "onnx", args.bundle, "onnx", workers[0])
    report["scans"].append({"backend": "onnx-cpu", "workers": workers[0],
                            "wall_s": round(reference["wall_s"], 1),
                            "ok_images": len(reference["ok"]),
                            "throughput": reference["run"]["throughput"]})  # fmt: skip
    for result in gpu_runs:
        if result["ok"].keys() != reference["ok"].keys():
            failures.append("the GPU and CPU scans reported different ok rows")
        gap, bones = compare(result["ok"], reference["ok"])
        report.setdefault("largest_probability_gap", []).append(round(gap, 6))
        if gap > args.tolerance or bones > 0.01 * len(result["ok"]):
            failures.append(f"GPU vs ONNX Runtime: |dp| up to {gap:.4f}, {bones} bones differ")
    report["failures"] = failures
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    say(json.dumps({k: report[k] for k in ("largest_probability_gap", "failures")}))
    say("GPU check " + ("FAILED" if failures else "passed") + f"; {out / 'gpu_check.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
