"""batchfrac.pacs.pull against a fake DICOMweb client: names, paging, failures, concurrency."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from pydicom.uid import ExplicitVRLittleEndian

from batchfrac.pacs.pull import TEMP_PREFIX, PullError, PullQuery, pull
from tests.factories import gradient_image, make_image_dataset

STUDY = "1.2.826.0.1.3680043.8.498.7"
SERIES = STUDY + ".1"


def uid_item(tag: str, value: str) -> dict[str, Any]:
    return {tag: {"vr": "UI", "Value": [value]}}


class FakeClient:
    """A DICOMweb server in memory: {study: {series: {sop: modality}}}."""

    def __init__(self, tree: dict[str, dict[str, dict[str, str]]], *, honour_offset: bool = True,
                 fail: dict[str, Exception] | None = None, delay: float = 0.0) -> None:  # fmt: skip
        self.tree, self.honour_offset, self.fail, self.delay = (
            tree,
            honour_offset,
            fail or {},
            delay,
        )
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.queries: list[dict[str, Any]] = []

    def _page(self, items: list[dict[str, Any]], limit: int, offset: int) -> list[dict[str, Any]]:
        start = offset if self.honour_offset else 0
        return items[start : start + limit]

    def search_for_studies(
        self, search_filters: dict[str, str], limit: int, offset: int
    ) -> list[dict[str, Any]]:
        self.queries.append(search_filters)
        return self._page([uid_item("0020000D", s) for s in self.tree], limit, offset)

    def search_for_series(
        self, study_instance_uid: str, search_filters: dict[str, str], limit: int, offset: int
    ) -> list[dict[str, Any]]:
        wanted = search_filters.get("Modality")
        series = [s for s, sops in self.tree[study_instance_uid].items()
                  if wanted is None or wanted in sops.values()]  # fmt: skip
        return self._page([uid_item("0020000E", s) for s in series], limit, offset)

    def search_for_instances(
        self, study_instance_uid: str, series_instance_uid: str, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        sops = self.tree[study_instance_uid][series_instance_uid]
        return self._page([uid_item("00080018", s) for s in sops], limit, offset)

    def retrieve_instance(
        self, study: str, series: str, sop: str, media_types: object
    ) -> pydicom.Dataset:
        if sop in self.fail:
            raise self.fail[sop]
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            ds = make_image_dataset(gradient_image(8, 8), modality=self.tree[study][series][sop])
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            return ds
        finally:
            with self.lock:
                self.active -= 1


def tree(n: int = 3) -> dict[str, dict[str, dict[str, str]]]:
    return {STUDY: {SERIES: {f"{SERIES}.{i}": "DX" for i in range(1, n + 1)}}}


def test_writes_study_series_sop_files(tmp_path: Path) -> None:
    summary = pull(lambda: FakeClient(tree()), tmp_path / "out", PullQuery())
    files = sorted(
        p.relative_to(tmp_path / "out").as_posix()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    )
    assert files == [f"{STUDY}/{SERIES}/{SERIES}.{i}.dcm" for i in (1, 2, 3)]
    assert (summary.studies, summary.instances, summary.retrieved, summary.exit_code) == (
        1,
        3,
        3,
        0,
    )
    assert pydicom.dcmread(tmp_path / "out" / files[0]).SOPInstanceUID == f"{SERIES}.1"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # hostile UIDs on purpose
def test_hostile_uids_cannot_escape_the_folder(tmp_path: Path) -> None:
    hostile = {"../../../etc": {"..": {"../../passwd": "DX", "/abs/x": "DX"}}}
    summary = pull(lambda: FakeClient(hostile), tmp_path / "out", PullQuery())
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 2 and summary.retrieved == 2
    for path in written:
        assert path.resolve().is_relative_to((tmp_path / "out").resolve())
        assert all(part.startswith("invalid-") for part in path.relative_to(tmp_path / "out").parts)


def test_rerun_fetches_only_what_is_missing_and_clears_stale_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    pull(lambda: FakeClient(tree()), out, PullQuery())
    (out / STUDY / SERIES / f"{SERIES}.2.dcm").unlink()
    (out / STUDY / SERIES / f"{TEMP_PREFIX}x.part").write_bytes(b"half a file")
    summary = pull(lambda: FakeClient(tree()), out, PullQuery())
    assert (summary.retrieved, summary.already_present) == (1, 2)
    assert sorted(p.name for p in (out / STUDY / SERIES).iterdir()) == [
        f"{SERIES}.{i}.dcm" for i in (1, 2, 3)
    ]


def test_a_server_that_ignores_offset_cannot_loop_forever(tmp_path: Path) -> None:
    big = {STUDY: {SERIES: {f"{SERIES}.{i}": "DX" for i in range(1, 1200)}}}
    summary = pull(
        lambda: FakeClient(big, honour_offset=False), tmp_path / "out", PullQuery(), jobs=8
    )
    assert summary.instances == 500  # the first page, with a warning; not an endless loop


def test_series_of_other_modalities_are_left_out(tmp_path: Path) -> None:
    mixed = {STUDY: {SERIES: {SERIES + ".1": "DX"}, STUDY + ".2": {STUDY + ".2.1": "CT"}}}
    summary = pull(lambda: FakeClient(mixed), tmp_path / "out", PullQuery(modalities=("CR", "DX")))
    assert summary.instances == 1 and not (tmp_path / "out" / STUDY / (STUDY + ".2")).exists()


def test_study_date_range_goes_to_qido(tmp_path: Path) -> None:
    from datetime import date

    client = FakeClient(tree(1))
    pull(
        lambda: client, tmp_path / "out", PullQuery(since=date(2024, 1, 2), until=date(2024, 1, 3))
    )
    assert client.queries == [{"StudyDate": "20240102-20240103"}]
    with pytest.raises(ValueError, match="after --until"):
        PullQuery(since=date(2024, 1, 3), until=date(2024, 1, 2)).study_date()


def test_an_instance_the_server_refuses_is_a_failure_the_rest_arrive(tmp_path: Path) -> None:
    response = requests.Response()
    response.status_code = 404
    fail = {f"{SERIES}.2": requests.HTTPError(response=response)}
    summary = pull(lambda: FakeClient(tree(), fail=fail), tmp_path / "out", PullQuery())
    assert [(r.sop_instance_uid, why) for r, why in summary.failed] == [(f"{SERIES}.2", "HTTP 404")]
    assert summary.retrieved == 2 and summary.exit_code == 3


def test_a_lost_connection_ends_the_pull(tmp_path: Path) -> None:
    fail = {f"{SERIES}.2": requests.ConnectionError("reset")}
    with pytest.raises(PullError, match="unreachable"):
        pull(lambda: FakeClient(tree(), fail=fail), tmp_path / "out", PullQuery(), jobs=1)


def test_at_most_jobs_retrievals_run_at_once(tmp_path: Path) -> None:
    client = FakeClient(tree(12), delay=0.05)
    pull(lambda: client, tmp_path / "out", PullQuery(), jobs=3)
    assert client.max_active == 3
