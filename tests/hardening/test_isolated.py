"""The fuzz tests' guard (tests.hardening.isolated) sees every way a decoder can fail."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from batchfrac.ingest import IngestConfig, ingest_file
from tests.hardening.isolated import run_isolated
from tests.hostile import rle_panic

MB = 1 << 20


def test_a_passing_check_passes() -> None:
    run_isolated(lambda: None, deadline_s=10, extra_memory=64 * MB, what="nothing")


def test_an_assertion_comes_back_with_its_message() -> None:
    def check() -> None:
        raise AssertionError("rows missing for x.dcm")

    with pytest.raises(AssertionError, match="rows missing for x.dcm"):
        run_isolated(check, deadline_s=10, extra_memory=64 * MB, what="assert")


def test_a_base_exception_is_reported(tmp_path: Path) -> None:
    path = rle_panic(tmp_path).path
    with pytest.raises(AssertionError, match="PanicException: index out of bounds"):
        run_isolated(
            lambda: ingest_file(path, IngestConfig()),
            deadline_s=60,
            extra_memory=MB << 10,
            what="rle",
        )


def test_an_abort_fails_the_check_not_the_run() -> None:
    with pytest.raises(AssertionError, match="died of SIGABRT"):
        run_isolated(os.abort, deadline_s=10, extra_memory=64 * MB, what="abort")


def test_a_hang_is_killed_at_the_deadline() -> None:
    start = time.monotonic()
    with pytest.raises(AssertionError, match="no answer after 1 s"):
        run_isolated(lambda: time.sleep(30), deadline_s=1, extra_memory=64 * MB, what="hang")
    assert time.monotonic() - start < 10


def test_a_memory_bomb_hits_the_limit_in_the_child() -> None:
    with pytest.raises(AssertionError, match="MemoryError"):
        run_isolated(lambda: bytearray(2 << 30), deadline_s=30, extra_memory=256 * MB, what="mem")
