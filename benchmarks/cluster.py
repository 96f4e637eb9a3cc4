"""Cluster benchmark: ``batchfrac scan --infer-on workers`` on 1, then 2 Dask workers.

Run on demand from the repository root (it is not a test)::

    python -m benchmarks.cluster --images 60                  # a quick look
    python -m benchmarks.cluster --images 300 --size 2000,2500

It writes a synthetic archive (``benchmarks.scan.make_archive``), starts a ``dask
scheduler`` and one ``dask worker`` (``--nthreads 1``) on 127.0.0.1, scans the archive
with ``--infer-on workers``, adds a second worker and scans it again into a new
``--out``, then prints, from this one run: images/s for 1 and 2 workers (ok images /
the whole ``batchfrac scan`` process's wall time, start-up included) and the scaling
efficiency ``rate(2) / (2 x rate(1))``. Every process it starts is stopped by its pid.
On a machine with fewer than 2 free cores, the efficiency measures the cores, not Dask.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

from benchmarks.scan import make_archive

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
       "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}  # fmt: skip
DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(n, timeout=120)


def scan(archive: Path, out: Path, bundle: Path, address: str, chunk_size: int) -> dict:
    argv = [sys.executable, "-m", "batchfrac", "scan", str(archive), "--out", str(out),
            "--bundle", str(bundle), "--scheduler", address, "--infer-on", "workers",
            "--chunk-size", str(chunk_size), "--quiet"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise SystemExit(f"scan failed ({done.returncode}): {done.stdout}{done.stderr}")
    run = json.loads((out / "run.json").read_text())
    ok = run["counts"]["status"].get("ok", 0)
    return {"wall_s": wall, "ok": ok, "images_per_s": ok / wall,
            "workers": len(run["inference"]["workers"])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--size", default="512,768", help="min,max image side in px")
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument(
        "--bundle", type=Path, default=Path(str(files("batchfrac") / "demo_bundle"))
    )
    args = parser.parse_args()
    low, high = (int(v) for v in args.size.split(","))
    work = Path(tempfile.mkdtemp(prefix="batchfrac-cluster-bench-"))
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> None:
        log = open(work / f"proc{len(procs)}.log", "wb")  # noqa: SIM115 - the process keeps it
        procs.append(subprocess.Popen(argv, cwd=work, env=ENV, stdout=log, stderr=log))

    try:
        images = make_archive(work / "archive", args.images, (low, high), seed=7)
        address = f"tcp://127.0.0.1:{free_port()}"
        start([DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
               "--no-dashboard"])  # fmt: skip
        worker = [DASK, "worker", address, "--host", "127.0.0.1", "--no-dashboard",
                  "--nthreads", "1", "--nworkers", "1"]  # fmt: skip
        results = {}
        for n in (1, 2):
            start(worker)
            wait_for_workers(address, n)
            results[n] = scan(work / "archive", work / f"out{n}", args.bundle, address,
                              args.chunk_size)  # fmt: skip
        out = sys.stdout
        out.write(f"archive: {images} image files, {low}-{high} px; cores: {os.cpu_count()}\n")
        for n, r in results.items():
            plural = "s" if n > 1 else " "
            out.write(f"{n} worker{plural}: {r['ok']} ok images in {r['wall_s']:.1f} s "
                      f"= {r['images_per_s']:.2f} images/s\n")  # fmt: skip
        efficiency = results[2]["images_per_s"] / (2 * results[1]["images_per_s"])
        out.write(f"scaling efficiency 1 -> 2 workers: {efficiency:.0%}\n")
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
