"""Call a stage and turn anything it raises into a readable test failure."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def never_raises(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)``; anything it raises (BaseExceptions too) becomes an AssertionError
    naming the exception and where it was raised."""
    try:
        return function(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - PanicException is a BaseException
        frames = traceback.extract_tb(exc.__traceback__)
        where = " <- ".join(f"{f.filename.split('/')[-1]}:{f.name}:{f.lineno}" for f in frames[-3:])
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        message = f"{function.__name__} raised {name}: {exc!s:.300} at {where}"
        raise AssertionError(message) from None
