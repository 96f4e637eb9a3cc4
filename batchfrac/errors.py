"""Typed exceptions. A failure that belongs to one file is one of these and becomes
that file's report row; anything else is a bug and is allowed to crash."""

from __future__ import annotations

from .enums import Reason, Status


class BatchfracError(Exception):
    """Base class of every error batchfrac raises on purpose."""


class FileRejected(BatchfracError):
    """One file cannot yield an image; ``reason`` says why (and whether skipped or error)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)

    @property
    def status(self) -> Status:
        return self.reason.status


class BundleError(BatchfracError):
    """A model bundle is missing, malformed or inconsistent."""


class SpecError(BatchfracError, ValueError):
    """A preprocessing spec (or other JSON document) does not match its schema."""
