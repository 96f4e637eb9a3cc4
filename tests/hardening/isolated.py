"""Run one check in a forked copy of the test process, so that no codec can take the test
run down with it.

Catching exceptions is not enough for a decoder: python-gdcm aborts the process on some
corrupt JPEG 2000 frames (``terminate called after throwing an instance of 'std::string'``,
SIGABRT, found by the fuzz tests), and a codec stuck in C code cannot be interrupted. A
``fork`` costs a few milliseconds (copy-on-write: the child shares the parent's imports
and state), and the parent sees every outcome: a normal return, an ``AssertionError``
(its message is sent back over a pipe), death by a signal, or no answer by the deadline
(the child is killed). The child also runs under an address-space limit, so a memory
bomb raises ``MemoryError`` there instead of exhausting the machine. Linux only.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path

_MESSAGE_LIMIT = 60_000  # below the 64 KiB pipe buffer: the child never blocks writing
_POLL_S = 0.002


def address_space() -> int:
    """This process's virtual memory size in bytes (VmSize)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmSize:")[1].split()[0]) * 1024


def run_isolated(
    check: Callable[[], None], *, deadline_s: float, extra_memory: int, what: str
) -> None:
    """``check()`` in a forked child; raise ``AssertionError`` here when it failed, raised,
    died or outlived ``deadline_s``. The child may grow ``extra_memory`` bytes of address
    space past the parent's current size."""
    read_end, write_end = os.pipe()
    limit = address_space() + extra_memory
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        code, message = 0, b""
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            check()
        except AssertionError as exc:
            code, message = 1, str(exc).encode("utf-8", "replace")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
            code, message = 2, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
        os.write(write_end, message[:_MESSAGE_LIMIT])
        os._exit(code)
    os.close(write_end)
    try:
        status = _wait(pid, deadline_s)
        message = _read_all(read_end).decode("utf-8", "replace")
    finally:
        os.close(read_end)
    if status is None:
        raise AssertionError(f"{what}: no answer after {deadline_s} s (a hang; child killed)")
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise AssertionError(f"{what}: the process died of {name} (a codec crashed it)")
    code = os.WEXITSTATUS(status)
    if code:
        raise AssertionError(message or f"{what}: the child exited with status {code}")


def _wait(pid: int, deadline_s: float) -> int | None:
    """The child's wait status, or ``None`` after killing it at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(_POLL_S)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
