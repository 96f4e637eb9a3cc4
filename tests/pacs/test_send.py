"""batchfrac.pacs.send and .ledger: each object once per destination; refusals retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchfrac.pacs.export import ExportedObject, ObjectKind
from batchfrac.pacs.ledger import SendLedger
from batchfrac.pacs.send import SendStatus, StoreResult, send_objects

DEST = "dicomweb:http://127.0.0.1:1/dicom-web"


class FakeDestination:
    """Stores every object except those whose name is in ``refuse``; records calls."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.stored: list[str] = []
        self.closed = False

    def store(self, path: Path) -> StoreResult:
        if path.name in self.refuse:
            return StoreResult(False, "status 0xA700")
        self.stored.append(path.name)
        return StoreResult(True)

    def close(self) -> None:
        self.closed = True


def objects(tmp_path: Path, n: int = 3) -> list[ExportedObject]:
    out = []
    for i in range(n):
        path = tmp_path / f"1.2.{i}.dcm"
        path.write_bytes(b"object %d" % i)
        out.append(
            ExportedObject(ObjectKind.SR, path, "1.2", "1.2.840.10008.5.1.4.1.1.88.33", f"1.2.{i}")
        )
    return out


def test_stores_each_object_once_and_records_it(tmp_path: Path) -> None:
    objs, ledger = objects(tmp_path), SendLedger(tmp_path / "ledger.jsonl")
    dest = FakeDestination(set())
    first = send_objects(objs, lambda: dest, DEST, ledger)
    assert first.count(SendStatus.STORED) == 3 and first.exit_code == 0 and dest.closed
    second = send_objects(objs, lambda: pytest.fail("nothing new: must not connect"), DEST,
                          SendLedger(tmp_path / "ledger.jsonl"))  # fmt: skip
    assert second.count(SendStatus.ALREADY_STORED) == 3 and second.exit_code == 0


def test_refused_objects_are_reported_and_retried_next_time(tmp_path: Path) -> None:
    objs, ledger = objects(tmp_path), SendLedger(tmp_path / "ledger.jsonl")
    first = send_objects(objs, lambda: FakeDestination({"1.2.1.dcm"}), DEST, ledger)
    assert [o.status for o in first.outcomes] == [
        SendStatus.STORED,
        SendStatus.REFUSED,
        SendStatus.STORED,
    ]
    assert first.outcomes[1].detail == "status 0xA700" and first.exit_code == 3
    dest = FakeDestination(set())
    second = send_objects(objs, lambda: dest, DEST, ledger)
    assert dest.stored == ["1.2.1.dcm"] and second.exit_code == 0


def test_other_destinations_have_their_own_record(tmp_path: Path) -> None:
    objs, ledger = objects(tmp_path), SendLedger(tmp_path / "ledger.jsonl")
    send_objects(objs, lambda: FakeDestination(set()), DEST, ledger)
    dest = FakeDestination(set())
    send_objects(objs, lambda: dest, "dimse:PACS@127.0.0.1:104", ledger)
    assert len(dest.stored) == 3


def test_changed_bytes_under_a_stored_uid_are_not_resent(tmp_path: Path) -> None:
    objs, ledger = objects(tmp_path), SendLedger(tmp_path / "ledger.jsonl")
    send_objects(objs, lambda: FakeDestination(set()), DEST, ledger)
    objs[0].path.write_bytes(b"other content")
    summary = send_objects(objs, lambda: pytest.fail("must not connect"), DEST, ledger)
    assert summary.outcomes[0].status is SendStatus.CHANGED and summary.exit_code == 0


def test_dry_run_connects_to_nobody(tmp_path: Path) -> None:
    summary = send_objects(objects(tmp_path), lambda: pytest.fail("dry run connected"), DEST,
                           SendLedger(tmp_path / "l.jsonl"), dry_run=True)  # fmt: skip
    assert summary.count(SendStatus.WOULD_SEND) == 3
    assert not (tmp_path / "l.jsonl").exists()


def test_a_torn_last_ledger_line_is_ignored(tmp_path: Path) -> None:
    ledger = SendLedger(tmp_path / "ledger.jsonl")
    ledger.record(DEST, "1.2.0", "ab" * 32)
    with (tmp_path / "ledger.jsonl").open("a") as handle:
        handle.write('{"destination": "dicomweb:ht')
    again = SendLedger(tmp_path / "ledger.jsonl")
    assert len(again) == 1 and again.get(DEST, "1.2.0") is not None
