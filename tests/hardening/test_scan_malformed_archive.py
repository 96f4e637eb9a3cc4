"""End to end: the real ``batchfrac scan`` (tiny real bundle) on a malformed archive built
at test time (``tests.hostile_archive``), in Dask mode and with ``--workers 0``.

Every file must come out as rows (one per file, or one per frame of an ok multi-frame
file) with a status its case accepts, valid files ``ok``, exit code 0 or 3, and a second
run on the same ``--out`` must finish too. Each run is bounded by ``RUN_TIMEOUT_S``: a
hang kills the scan's process group and fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.hostile import OK, Hostile
from tests.hostile_archive import build_malformed_archive
from tests.scan_fakes import cached_tiny_bundle

RUN_TIMEOUT_S = 600
pytestmark = [pytest.mark.slow, pytest.mark.timeout(4 * RUN_TIMEOUT_S + 300)]


@pytest.fixture(scope="module")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    return cached_tiny_bundle(Path(request.config.cache.mkdir("batchfrac-tiny-bundle-v1")))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Hostile]]:
    root = tmp_path_factory.mktemp("malformed") / "archive"
    return root, build_malformed_archive(root)


def scan(archive: Path, out: Path, bundle: Path, workers: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "batchfrac", "scan", str(archive), "--out", str(out),
        "--bundle", str(bundle), "--workers", workers, "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RUST_BACKTRACE": "0"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"batchfrac scan --workers {workers} hung: no exit after {RUN_TIMEOUT_S} s")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("workers", ["0", "2"], ids=["in-process", "dask"])
def test_every_file_is_accounted_for_and_a_rerun_finishes(
    tmp_path: Path,
    archive: tuple[Path, dict[str, Hostile]],
    tiny_bundle: Path,
    workers: str,
) -> None:
    root, layout = archive
    out = tmp_path / "out"
    first = scan(root, out, tiny_bundle, workers)
    assert first.returncode in (0, 3), f"exit {first.returncode}: {first.stderr[-3000:]}"

    statuses: dict[str, list[str]] = defaultdict(list)
    for row in pq.read_table(out / "images.parquet", columns=["path", "status"]).to_pylist():
        statuses[Path(row["path"]).relative_to(root).as_posix()].append(row["status"])
    assert sorted(statuses) == sorted(layout), "files missing from (or added to) the report"
    wrong = {
        rel: (case.description, sorted(set(statuses[rel])), len(statuses[rel]))
        for rel, case in layout.items()
        if not set(statuses[rel]) <= case.accept
        or (OK in statuses[rel] and len(statuses[rel]) != case.ok_rows)
        or (OK not in statuses[rel] and len(statuses[rel]) != 1)
    }
    assert not wrong, json.dumps(wrong, indent=1)

    second = scan(root, out, tiny_bundle, workers)
    assert second.returncode == first.returncode, second.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["files_reused"] == len(layout)
    assert run["counts"]["files"] == len(layout)
