"""ordered_map: results in input order whatever the processes' finishing order."""

from __future__ import annotations

import time

import pytest

from batchfrac.synth.parallel import AHEAD, ordered_map


def _square_late_for_multiples_of_three(x: int) -> int:
    if x % 3 == 0:  # these finish after their successors
        time.sleep(0.05)
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_come_in_input_order(jobs: int) -> None:
    n = 2 * 2 * AHEAD + 5  # more items than the window holds
    assert list(ordered_map(_square_late_for_multiples_of_three, range(n), jobs)) == [
        x * x for x in range(n)
    ]


def test_stopping_early_returns_the_first_results() -> None:
    drawn = ordered_map(_square_late_for_multiples_of_three, range(1000), jobs=2)
    assert [next(drawn) for _ in range(3)] == [0, 1, 4]
    drawn.close()  # cancels the rest instead of drawing 1000 items


def test_jobs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(ordered_map(abs, [1], jobs=0))
