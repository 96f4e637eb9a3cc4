"""What today's code does with each hostile case of issue 10 (the data behind FINDINGS.md).

Run on demand from the repository root (it is not a test)::

    python -m benchmarks.hostile_probe --out /tmp/probe              # CI sizes
    BATCHFRAC_HOSTILE_LARGE=1 python -m benchmarks.hostile_probe ... # the issue's sizes

For every case of ``tests.hostile_archive.hostile_cases`` it runs, each in its own
process under an address-space limit (``--limit-gb``, default 4) and a wall-clock
timeout: ``ingest_file`` with the default ``IngestConfig`` and ``doctor.survey`` on the
file alone. It prints one JSON line per case: the rows (status, reason, count) or the
exception (type, message, the frame that raised it and the last batchfrac frame it
escaped from), the wall time and the child's peak RSS (``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

_CHILD = "benchmarks.hostile_probe"


def probe(stage: str, path: Path) -> dict[str, Any]:
    """Child side: run ``stage`` (``ingest`` or ``doctor``) on ``path``; never raises."""
    from batchfrac.doctor import survey
    from batchfrac.ingest.entry import IngestConfig, ingest_file

    baseline = _high_water_mb()
    start = time.perf_counter()
    out: dict[str, Any] = {"stage": stage, "baseline_rss_mb": baseline}
    try:
        if stage == "ingest":
            rows = ingest_file(path, IngestConfig())
            outcomes = (f"{r.status.value}/{r.reason.value if r.reason else ''}" for r in rows)
            out["rows"] = dict(Counter(outcomes))
            out["details"] = sorted({r.detail[:160] for r in rows if r.detail})[:3]
        else:
            report = survey(path)
            reasons = {f"reason:{k}": v for k, v in report.by_reason.items()}
            out["rows"] = {**report.by_status, **reasons}
    except BaseException as exc:  # noqa: BLE001 - what escapes is what we measure
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "/batchfrac/" in f.filename]
        out["exception"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        out["message"] = str(exc)[:300]
        out["raised_at"] = _where(frames[-1]) if frames else None
        out["escaped_from"] = _where(ours[-1]) if ours else None
    out["seconds"] = round(time.perf_counter() - start, 3)
    out["peak_rss_mb"] = _high_water_mb()
    return out


def _high_water_mb() -> int:
    """Peak RSS of this process (VmHWM; ru_maxrss would include the parent's from the fork)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) // 1024


def _where(frame: traceback.FrameSummary) -> str:
    name = frame.filename.split("site-packages/")[-1].split("wt-hostile/")[-1]
    return f"{name}:{frame.name}:{frame.lineno}"


def run_case(stage: str, path: Path, limit_gb: float, timeout: float) -> dict[str, Any]:
    """Parent side: :func:`probe` in a child process with an address-space limit."""
    limit = int(limit_gb * (1 << 30))

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    command = [sys.executable, "-m", _CHILD, "--child", stage, str(path)]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, preexec_fn=limits
        )
    except subprocess.TimeoutExpired:
        return {"stage": stage, "hang": f"no answer after {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = done.stderr.strip().splitlines()[-3:]
        return {"stage": stage, "died": done.returncode, "stderr": tail}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = round(time.perf_counter() - start, 3)
    return result


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/batchfrac-hostile-probe"))
    parser.add_argument("--limit-gb", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--only", default="", help="comma-separated case ids")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _emit(probe(args.child[0], Path(args.child[1])))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.hostile_archive import hostile_cases

    wanted = {name for name in args.only.split(",") if name}
    for name, factory in hostile_cases().items():
        if wanted and name not in wanted:
            continue
        case = factory(args.out / name)
        for stage in ("ingest", "doctor"):
            result = run_case(stage, case.path, args.limit_gb, args.timeout)
            _emit({"case": name, "description": case.description, **result})


if __name__ == "__main__":
    main()
