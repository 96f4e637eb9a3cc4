"""What each destination has already stored, so that sending again sends nothing twice.

One JSON line per object a destination confirmed, appended and flushed to disk before the
next object goes out: an interrupted send loses at most the object in flight, and running
it again sends only what was not confirmed. Lines that cannot be parsed (a torn last line
after a crash) are ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

LEDGER_NAME = "pacs-sent.jsonl"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """An object a destination confirmed: its UID and the sha256 of the bytes sent."""

    destination: str
    sop_instance_uid: str
    sha256: str


class SendLedger:
    """The append-only record of confirmed stores in ``path`` (usually ``OUT/pacs-sent.jsonl``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[tuple[str, str], LedgerEntry] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                entry = _parse(line)
                if entry is not None:
                    self._entries[(entry.destination, entry.sop_instance_uid)] = entry

    def get(self, destination: str, sop_instance_uid: str) -> LedgerEntry | None:
        """The confirmed store of ``sop_instance_uid`` at ``destination``, if any."""
        return self._entries.get((destination, sop_instance_uid))

    def record(self, destination: str, sop_instance_uid: str, sha256: str) -> None:
        """Remember that ``destination`` confirmed ``sop_instance_uid`` (durably, now)."""
        entry = LedgerEntry(destination, sop_instance_uid, sha256)
        line = json.dumps(
            {
                "destination": destination,
                "sop_instance_uid": sop_instance_uid,
                "sha256": sha256,
                "stored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            sort_keys=True,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._entries[(destination, sop_instance_uid)] = entry

    def __len__(self) -> int:
        return len(self._entries)


def _parse(line: str) -> LedgerEntry | None:
    try:
        doc = json.loads(line)
        entry = LedgerEntry(
            str(doc["destination"]), str(doc["sop_instance_uid"]), str(doc["sha256"])
        )
    except (ValueError, KeyError, TypeError):
        return None
    return entry
