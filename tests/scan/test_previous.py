"""``--previous``: incremental nights reuse unchanged files' rows from the night before."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchfrac.scan.config import ScanConfig
from batchfrac.scan.run import run_scan
from tests.scan_fakes import CountingIngest, FakeBundle


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def night(
    archive: Path, out: Path, previous: Path | None, ingest: CountingIngest, **options: object
):
    bundle = options.pop("bundle", None) or FakeBundle()
    config = ScanConfig(archive, out, Path("unused"), workers=0, batch_size=2, chunk_size=2,
                        previous=previous, **options)  # type: ignore[arg-type]  # fmt: skip
    return run_scan(config, bundle=bundle, ingest=ingest)


def rows(out: Path) -> dict[str, list[dict[str, object]]]:
    table = pq.read_table(out / "images.parquet").to_pylist()
    by_path: dict[str, list[dict[str, object]]] = {}
    for row in table:
        row.pop("decode_ms")
        by_path.setdefault(str(row["path"]), []).append(row)
    return by_path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    write(root, {"s1/a": "0.1", "s1/b": "0.5", "s1/c": "bad", "s2/m": "frames:0.2,0.9",
                 "s2/n": "0.7"})  # fmt: skip
    return root


def test_a_chain_of_three_nights_reads_only_new_and_changed_files(
    tmp_path: Path, archive: Path
) -> None:
    monday = tmp_path / "2026-11-30"
    first = CountingIngest()
    night(archive, monday, None, first)
    assert len(first.paths) == 5

    write(archive, {"s3/new": "0.33"})  # added
    (archive / "s1/a").write_text("0.95")  # changed (same size, new mtime)
    os.utime(archive / "s1/a", ns=(1, 1))
    (archive / "s2/n").unlink()  # removed
    tuesday = tmp_path / "2026-12-01"
    second = CountingIngest()
    summary = night(archive, tuesday, monday, second)
    # the error row of Monday ("bad") is read again; unchanged files are not
    assert sorted(second.paths) == sorted(str(archive / r) for r in ("s1/a", "s1/c", "s3/new"))
    counts = summary.run["counts"]
    assert (counts["files_reused"], counts["files_processed"]) == (2, 3)
    assert summary.run["previous"] == {
        "used": True, "run_id": json.loads((monday / "run.json").read_text())["run_id"],
        "path": str(monday), "files_removed": 1,
    }  # fmt: skip
    tue = rows(tuesday)
    assert str(archive / "s2/n") not in tue and str(archive / "s3/new") in tue
    assert tue[str(archive / "s1/b")] == rows(monday)[str(archive / "s1/b")]  # the same row
    assert tue[str(archive / "s1/a")][0]["bone"] == "wrist"  # the changed file, read again

    wednesday = tmp_path / "2026-12-02"
    third = CountingIngest()
    summary = night(archive, wednesday, tuesday, third)
    assert third.paths == [str(archive / "s1/c")]  # only the error row, again
    assert summary.run["previous"]["files_removed"] == 0
    full = tmp_path / "full"
    night(archive, full, None, CountingIngest())
    assert rows(wednesday) == rows(full)  # a chain gives what a full scan gives


def test_previous_error_rows_can_be_kept(tmp_path: Path, archive: Path) -> None:
    night(archive, tmp_path / "mon", None, CountingIngest())
    again = CountingIngest()
    night(archive, tmp_path / "tue", tmp_path / "mon", again, previous_errors=True)
    assert again.paths == []


@pytest.mark.parametrize("change", ["bundle", "option"])
def test_another_bundle_or_other_options_mean_a_full_scan(
    tmp_path: Path, archive: Path, change: str
) -> None:
    night(archive, tmp_path / "mon", None, CountingIngest())
    ingest = CountingIngest()
    if change == "bundle":
        other = FakeBundle()
        other.bundle_id = "anotherbundle002"
        summary = night(archive, tmp_path / "tue", tmp_path / "mon", ingest, bundle=other)
    else:
        summary = night(archive, tmp_path / "tue", tmp_path / "mon", ingest,
                        modalities=("CR", "DX", "RF"))  # fmt: skip
    assert len(ingest.paths) == 5
    assert summary.run["previous"]["used"] is False
    assert "another bundle" in summary.run["previous"]["why_not"]


@pytest.mark.parametrize("damage", ["no run.json", "torn images", "edited run.json"])
def test_damaged_previous_reports_mean_a_full_scan_with_a_warning(
    tmp_path: Path, archive: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    monday = tmp_path / "mon"
    night(archive, monday, None, CountingIngest())
    if damage == "no run.json":
        (monday / "run.json").unlink()
    elif damage == "torn images":
        data = (monday / "images.parquet").read_bytes()
        (monday / "images.parquet").write_bytes(data[: len(data) // 2])
    else:
        run = json.loads((monday / "run.json").read_text())
        run["counts"]["files"] = "many"
        (monday / "run.json").write_text(json.dumps(run))
    ingest = CountingIngest()
    summary = night(archive, tmp_path / "tue", monday, ingest)
    assert len(ingest.paths) == 5
    assert summary.run["previous"]["used"] is False
    log = (tmp_path / "tue" / "scan.log").read_text()
    assert "--previous" in log and "not used" in log


def test_the_previous_folder_is_never_written_to(tmp_path: Path, archive: Path) -> None:
    monday = tmp_path / "mon"
    night(archive, monday, None, CountingIngest())
    before = {p: p.read_bytes() for p in monday.rglob("*") if p.is_file()}
    night(archive, tmp_path / "tue", monday, CountingIngest())
    assert {p: p.read_bytes() for p in monday.rglob("*") if p.is_file()} == before
    shutil.rmtree(monday)  # tonight's reports stand alone
    assert (tmp_path / "tue" / "images.parquet").exists()


def test_previous_cannot_be_out_itself(tmp_path: Path, archive: Path) -> None:
    with pytest.raises(ValueError, match="--previous must be another night's folder"):
        ScanConfig(archive, tmp_path / "out", Path("unused"), previous=tmp_path / "out")
