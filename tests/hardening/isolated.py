"""Run one check in a forked copy of the test process, so that no codec can take the test
run down with it.

Catching exceptions is not enough for a decoder: python-gdcm aborts the process on some
corrupt JPEG 2000 frames (``terminate called after throwing an instance of 'std::string'``,
SIGABRT, found by the fuzz tests), and a codec stuck in C code cannot be interrupted. A
``fork`` costs a few milliseconds (copy-on-write: the child shares the parent's imports
and state), and the parent sees every outcome: a normal return, an ``AssertionError``
(its message is sent back over a pipe), death by a signal, no answer by the deadline, or a
resident set larger than ``max_rss`` (the child is then killed), so a memory bomb fails its
example instead of exhausting the machine. Resident, not virtual, memory is what is bounded:
CPython's ``read(n)`` asks for an ``n``-byte buffer before it knows how much the file holds,
so a garbage 4 GB element length costs 4 GB of address space and no memory, and an
address-space limit (``RLIMIT_AS``) would fail such an example or not depending on how much
address space the test process already uses. Linux only (``/proc``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

_MESSAGE_LIMIT = 60_000  # below the 64 KiB pipe buffer: the child never blocks writing
_POLL_S = 0.002
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (0 once it is gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * _PAGE


def run_isolated(check: Callable[[], None], *, deadline_s: float, max_rss: int, what: str) -> None:
    """``check()`` in a forked child; raise ``AssertionError`` here when it failed, raised,
    died, outlived ``deadline_s`` or grew by more than ``max_rss`` bytes resident (growth
    over what it shared with this process at the fork: a long test run's process is large,
    and its pages count in the child's resident set too)."""
    baseline = resident(os.getpid())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        code, message = 0, b""
        try:
            check()
        except AssertionError as exc:
            code, message = 1, str(exc).encode("utf-8", "replace")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
            code, message = 2, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
        os.write(write_end, message[:_MESSAGE_LIMIT])
        os._exit(code)
    os.close(write_end)
    try:
        status, killed_for = _wait(pid, deadline_s, baseline + max_rss)
        message = _read_all(read_end).decode("utf-8", "replace")
    finally:
        os.close(read_end)
    if killed_for == "deadline":
        raise AssertionError(f"{what}: no answer after {deadline_s} s (a hang; child killed)")
    if killed_for == "memory":
        raise AssertionError(f"{what}: grew by more than {max_rss >> 20} MB (child killed)")
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise AssertionError(f"{what}: the process died of {name} (a codec crashed it)")
    code = os.WEXITSTATUS(status)
    if code:
        raise AssertionError(message or f"{what}: the child exited with status {code}")


def _wait(pid: int, deadline_s: float, max_rss: int) -> tuple[int, str]:
    """The child's wait status, and why the parent killed it (``""``: it was not)."""
    deadline = time.monotonic() + deadline_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, ""
        reason = "deadline" if time.monotonic() > deadline else ""
        if resident(pid) > max_rss:
            reason = "memory"
        if reason:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1], reason
        time.sleep(_POLL_S)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
