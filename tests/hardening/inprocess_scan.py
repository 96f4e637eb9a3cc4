"""A child process for the memory tests: one in-process scan (``run_scan``, ``--workers 0``,
the FakeBundle at the real 224-pixel input size, so preprocessing allocates what it does
in production), then one JSON line: the process's peak RSS and the scan's rows.

    python -m tests.hardening.inprocess_scan ARCHIVE OUT

``VmHWM`` is the peak RSS of this process alone (``ru_maxrss`` would carry the parent's
over from the fork); an in-process scan starts no other process.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def high_water_mb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) // 1024


def main(archive: Path, out: Path) -> None:
    import pyarrow.parquet as pq

    from batchfrac.scan.config import ScanConfig
    from batchfrac.scan.run import run_scan
    from tests.scan_fakes import FakeBundle

    config = ScanConfig(archive=archive, out=out, bundle=Path("unused"), workers=0)
    baseline = high_water_mb()
    summary = run_scan(config, bundle=FakeBundle(image_size=224))
    rows = pq.read_table(out / "images.parquet", columns=["status", "reason"]).to_pylist()
    outcome = Counter(f"{row['status']}/{row['reason'] or ''}" for row in rows)
    record = {
        "exit_code": summary.exit_code,
        "imports_mb": baseline,
        "peak_mb": high_water_mb(),
        "rows": dict(outcome),
    }
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
