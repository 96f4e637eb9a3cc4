"""Run the real ``batchfrac scan`` on an archive and measure it as the night shift would see it.

Run on demand from the repository root (it is not a test)::

    python -m benchmarks.hostile_scan ARCHIVE --out OUT --bundle B [--workers 0] [--timeout 900]

Prints one JSON document: the exit code (or ``"hang"`` when ``--timeout`` passed first:
the process tree is then killed), the wall time, the peak RSS of the process tree
(the scan and its Dask nanny/worker processes, sampled by psutil every 0.1 s; the peak of
the sum, and each process's own peak), the part files written, the rows of
``images.parquet`` by status/reason when it exists, and the last lines of stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil


def tree_rss(process: psutil.Process) -> dict[int, int]:
    """RSS in bytes of ``process`` and all its descendants, by pid (gone ones left out)."""
    sizes = {}
    for member in [process, *process.children(recursive=True)]:
        try:
            sizes[member.pid] = member.memory_info().rss
        except psutil.Error:
            continue
    return sizes


def measure(command: list[str], timeout: float, stderr_path: Path) -> dict[str, Any]:
    """Run ``command`` in its own session; sample its tree's RSS until it ends or times out.

    stderr goes to a file, not a pipe: pydicom logs a traceback per failing plugin, and a
    pipe nobody reads fills up and blocks the scan (a hang of the harness, not of batchfrac).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RUST_BACKTRACE": "0"}
    start = time.perf_counter()
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    with open(stderr_path, "wb") as stderr:
        child = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    process = psutil.Process(child.pid)
    peak_sum, peak_each = 0, Counter[int]()
    while child.poll() is None and time.perf_counter() - start < timeout:
        sizes = tree_rss(process)
        peak_sum = max(peak_sum, sum(sizes.values()))
        for pid, rss in sizes.items():
            peak_each[pid] = max(peak_each[pid], rss)
        time.sleep(0.1)
    hung = child.poll() is None
    if hung:
        os.killpg(child.pid, 9)
    child.wait()
    stderr_lines = stderr_path.read_text(errors="replace").strip().splitlines()
    return {
        "exit": "hang" if hung else child.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_tree_rss_mb": peak_sum >> 20,
        "peak_rss_mb_by_process": sorted((v >> 20 for v in peak_each.values()), reverse=True),
        "stderr_tail": stderr_lines[-6:],
    }


def outcome(out: Path) -> dict[str, Any]:
    """Parts written and the statuses in images.parquet (if the scan got that far)."""
    import pyarrow.parquet as pq

    result: dict[str, Any] = {"parts": len(list((out / "parts").glob("part-*.parquet")))}
    images = out / "images.parquet"
    if images.exists():
        rows = pq.read_table(images, columns=["path", "status", "reason"]).to_pylist()
        result["rows"] = len(rows)
        result["files"] = len({row["path"] for row in rows})
        result["by_status_reason"] = dict(
            Counter(f"{row['status']}/{row['reason'] or ''}" for row in rows)
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--scan-arg", action="append", default=[], help="extra scan argument")
    args = parser.parse_args()
    command = [sys.executable, "-m", "batchfrac", "scan", str(args.archive), "--out", str(args.out)]
    command += ["--bundle", str(args.bundle), "--quiet", *args.scan_arg]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    stderr_path = args.out.with_name(args.out.name + ".stderr.txt")
    measured = measure(command, args.timeout, stderr_path)
    result = {"command": command[3:], **measured, **outcome(args.out)}
    sys.stdout.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
