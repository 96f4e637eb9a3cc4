"""Exit codes of every ``batchfrac`` command: one table, part of the interface.

Cron jobs and schedulers read these, so they mean the same in every command.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit status of a ``batchfrac`` command."""

    #: Everything done: every file ``ok`` or ``skipped`` (every object stored, ...).
    OK = 0
    #: Nothing (or nothing more) could be done: bad arguments, unreadable bundle or
    #: reports, unreachable server, no space left, an unexpected internal error.
    FATAL = 1
    #: Finished, but some items failed: ``error`` rows in a scan, files that would fail in
    #: ``doctor``, objects refused by a server; each one's reason is reported.
    PARTIAL = 3
    #: Stopped by Ctrl-C (SIGINT); finished work is kept, the same command resumes.
    INTERRUPTED = 130


#: The table as shown at the end of each command's ``--help``.
EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0    success (every file ok or skipped)\n"
    "  3    finished, but some items failed (error rows; see their reason)\n"
    "  1    fatal: bad arguments, unreadable bundle, no space left, ...\n"
    "  130  interrupted (Ctrl-C); finished work is kept, run again to resume"
)
