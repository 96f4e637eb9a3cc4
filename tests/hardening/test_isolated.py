"""The fuzz tests' guard (tests.hardening.isolated) sees every way a decoder can fail."""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.pixels import get_decoder
from pydicom.uid import RLELossless

from batchfrac.ingest.entry import IngestConfig, ingest_file
from tests.hardening.isolated import run_isolated
from tests.hostile import rle_panic

MB = 1 << 20
GB = 1 << 30


def test_a_passing_check_passes() -> None:
    run_isolated(lambda: None, deadline_s=10, max_rss=GB, what="nothing")


def test_an_assertion_comes_back_with_its_message() -> None:
    def check() -> None:
        raise AssertionError("rows missing for x.dcm")

    with pytest.raises(AssertionError, match="rows missing for x.dcm"):
        run_isolated(check, deadline_s=10, max_rss=GB, what="assert")


def test_a_base_exception_is_reported(tmp_path: Path) -> None:
    """pylibjpeg-rle called directly (``ingest_file`` itself turns the panic into a row)."""
    path = rle_panic(tmp_path).path

    def decode_with_pylibjpeg_rle() -> None:
        get_decoder(RLELossless).as_array(dcmread(path), decoding_plugin="pylibjpeg")

    with pytest.raises(AssertionError, match="PanicException: index out of bounds"):
        run_isolated(decode_with_pylibjpeg_rle, deadline_s=60, max_rss=GB, what="rle")


def test_ingest_turns_the_same_panic_into_a_row(tmp_path: Path) -> None:
    path = rle_panic(tmp_path).path

    def check() -> None:
        (row,) = ingest_file(path, IngestConfig())
        assert row.reason is not None and row.reason.value == "decode_error", row
        assert "PanicException: index out of bounds" in row.detail

    run_isolated(check, deadline_s=60, max_rss=GB, what="rle")


def test_an_abort_fails_the_check_not_the_run() -> None:
    with pytest.raises(AssertionError, match="died of SIGABRT"):
        run_isolated(os.abort, deadline_s=10, max_rss=GB, what="abort")


def test_a_hang_is_killed_at_the_deadline() -> None:
    start = time.monotonic()
    with pytest.raises(AssertionError, match="no answer after 1 s"):
        run_isolated(lambda: time.sleep(30), deadline_s=1, max_rss=GB, what="hang")
    assert time.monotonic() - start < 10


def test_a_memory_bomb_is_killed_when_its_resident_set_grows_past_the_limit() -> None:
    def bomb() -> None:
        kept = [b"\x01" * (64 * MB) for _ in range(64)]  # 4 GB if nobody stops it
        assert not kept

    with pytest.raises(AssertionError, match="grew by more than 512 MB"):
        run_isolated(bomb, deadline_s=60, max_rss=512 * MB, what="bomb")


def test_the_limit_is_on_growth_not_on_what_the_child_shares_with_a_large_parent() -> None:
    ballast = b"\x02" * (1200 * MB)  # this process grows as a long test run's does
    try:
        run_isolated(lambda: None, deadline_s=30, max_rss=GB, what="small child")
    finally:
        del ballast


def test_address_space_is_not_memory() -> None:
    """A 4 GB buffer that is never touched (what a garbage element length costs) passes."""
    run_isolated(lambda: mmap.mmap(-1, 4 << 30).close(), deadline_s=30, max_rss=GB, what="va")
