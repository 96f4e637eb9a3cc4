"""The per-file deadline used on Dask workers."""

from __future__ import annotations

import threading
import time

import pytest

from batchfrac.scan.watchdog import Watchdog


class Expiries:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.fired = threading.Event()

    def __call__(self, label: str, seconds: float) -> None:
        self.calls.append((label, seconds))
        self.fired.set()


def test_a_span_past_its_deadline_is_reported_once_with_its_label() -> None:
    expiries = Expiries()
    with Watchdog(0.05, expiries) as dog:
        with dog.watch("slow.dcm"):
            assert expiries.fired.wait(5.0)
            time.sleep(0.2)  # still stuck: no second report for the same span
    assert expiries.calls == [("slow.dcm", 0.05)]


def test_spans_that_finish_in_time_are_never_reported() -> None:
    expiries = Expiries()
    with Watchdog(0.5, expiries) as dog:
        for name in ("a", "b", "c"):
            with dog.watch(name):
                time.sleep(0.2)  # each span alone is within its deadline; together they are not
    assert expiries.calls == []


def test_each_span_gets_its_own_deadline_after_an_expiry() -> None:
    expiries = Expiries()
    with Watchdog(0.05, expiries) as dog:
        with dog.watch("first"):
            assert expiries.fired.wait(5.0)
        expiries.fired.clear()
        with dog.watch("second"):
            assert expiries.fired.wait(5.0)
    assert [label for label, _ in expiries.calls] == ["first", "second"]


def test_spans_do_not_nest_and_the_deadline_must_be_positive() -> None:
    with Watchdog(1.0, Expiries()) as dog, dog.watch("a"):
        with pytest.raises(RuntimeError, match="already watching 'a'"), dog.watch("b"):
            pass
    with pytest.raises(ValueError, match="positive"):
        Watchdog(0, Expiries())
