"""Draw a synthetic dataset's images in several processes, in order.

Every image is drawn from its own seeded random streams (:func:`.plan.stream`), so who
draws it does not matter: the files are the same bytes whatever ``jobs`` is. Only the
drawing runs in the pool; the calling process writes files and ground truth in order.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Items a worker takes at a time: amortises the pickling without starving the pool.
CHUNK = 4


def ordered_map(fn: Callable[[T], R], items: Iterable[T], jobs: int = 1) -> Iterator[R]:
    """``map(fn, items)``, computed in ``jobs`` processes when ``jobs > 1``.

    ``fn`` must be a module-level function (it is pickled). Processes are spawned, not
    forked: the caller may be running threads (a progress bar), which fork does not copy.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs == 1:
        yield from map(fn, items)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        yield from pool.map(fn, items, chunksize=CHUNK)
