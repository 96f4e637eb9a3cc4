"""Draw a synthetic dataset's images in several processes, in order.

Every image is drawn from its own seeded random streams (:func:`.plan.stream`), so who
draws it does not matter: the files are the same bytes whatever ``jobs`` is. Only the
drawing runs in the pool; the calling process writes files and ground truth in order.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Items in flight per process: keeps every process busy while bounding the memory held
#: by drawn images that the caller has not written yet (a DICOM frame can be 10 MB).
AHEAD = 3


def ordered_map(fn: Callable[[T], R], items: Iterable[T], jobs: int = 1) -> Iterator[R]:
    """``map(fn, items)``, computed in ``jobs`` processes when ``jobs > 1``.

    At most ``jobs * AHEAD`` results are pending at a time. ``fn`` must be a module-level
    function (it is pickled). Processes are spawned, not forked: the caller may be running
    threads (a progress bar), which fork does not copy.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs == 1:
        yield from map(fn, items)
        return
    context = multiprocessing.get_context("spawn")
    pending = iter(items)
    window: deque[Future[R]] = deque()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        try:
            window.extend(pool.submit(fn, item) for item in islice(pending, jobs * AHEAD))
            while window:
                result = window.popleft().result()
                window.extend(pool.submit(fn, item) for item in islice(pending, 1))
                yield result
        finally:  # the caller stopped early or failed: do not draw what nobody will write
            for future in window:
                future.cancel()
