"""Bounded memory (DESIGN.md invariant 6): an in-process scan of one memory bomb peaks
within ``MARGIN_MB`` of an in-process scan of one valid file.

Each scan runs in its own process (``tests.hardening.inprocess_scan``), killed when its
resident set passes ``LIMIT_GB`` or its wall time ``TIMEOUT_S``, so today's unbounded reads
fail the test instead of the machine. The bombs are sized to exceed the margin several times
over if read naively, yet cost little to build (a constant stream, zeros that deflate
1000:1, sparse files).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import hostile, hostile_bombs
from tests.hardening.isolated import resident
from tests.hostile import Hostile

MARGIN_MB = 300  # "within a few hundred MB of a scan of one valid file" (issue 10)
LIMIT_GB = 4
TIMEOUT_S = 300
REPOSITORY = Path(__file__).resolve().parents[2]

BOMBS: dict[str, Callable[[Path], Hostile]] = {
    "stream_larger_than_header": functools.partial(
        hostile_bombs.stream_larger_than_header, side=20000
    ),  # a 400 MB decode behind 256 x 256
    "deflate_bomb": functools.partial(hostile_bombs.deflate_bomb, size=640 << 20),
    "huge_private_element": functools.partial(hostile_bombs.huge_private_element, size=640 << 20),
    "surplus_pixel_data": functools.partial(hostile_bombs.surplus_pixel_data, size=96 << 20),
    "many_tiny_frames": functools.partial(hostile_bombs.many_tiny_frames, frames=2000),
    "colour_cine": hostile.colour_cine,  # legitimate: 120 ok frames, one at a time
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2 * TIMEOUT_S)]


def scan_in_child(archive: Path, out: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.hardening.inprocess_scan", str(archive), str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RUST_BACKTRACE": "0"}
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=stdout, stderr=stderr)
        deadline = time.monotonic() + TIMEOUT_S
        while child.poll() is None:
            if resident(child.pid) > LIMIT_GB << 30 or time.monotonic() > deadline:
                child.kill()
                child.wait()
                pytest.fail(f"the scan of {archive} passed {LIMIT_GB} GB or {TIMEOUT_S} s")
            time.sleep(0.01)
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read().decode(), stderr.read().decode(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, f"the scan of {archive.name} died ({child.returncode}): {errors[-1500:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.fixture(scope="module")
def valid_peak_mb(tmp_path_factory: pytest.TempPathFactory) -> int:
    root = tmp_path_factory.mktemp("one-valid")
    hostile.valid(root / "archive")
    result = scan_in_child(root / "archive", root / "out")
    assert result["rows"] == {"ok/": 1}
    peak: int = result["peak_mb"]
    return peak


@pytest.mark.parametrize("name", list(BOMBS))
def test_peak_memory_stays_near_one_valid_file(
    tmp_path: Path, valid_peak_mb: int, name: str
) -> None:
    case = BOMBS[name](tmp_path / "archive")
    result = scan_in_child(tmp_path / "archive", tmp_path / "out")
    grown = result["peak_mb"] - valid_peak_mb
    assert grown <= MARGIN_MB, (
        f"{case.description}: peak {result['peak_mb']} MB, {grown} MB over one valid file "
        f"({valid_peak_mb} MB); rows {result['rows']}"
    )
    statuses = {key.split("/")[0] for key in result["rows"]}
    assert statuses <= case.accept, f"{case.description}: {result['rows']}"
    if "ok" in statuses:
        assert result["rows"].get("ok/") == case.ok_rows, result["rows"]
