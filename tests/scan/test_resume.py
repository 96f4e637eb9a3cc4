"""The part-file ledger: an interrupted scan resumes to exactly the uninterrupted result."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import batchfrac.report.writer as writer_module
from batchfrac.atomic import TEMP_SUFFIX
from batchfrac.scan.config import ScanConfig
from batchfrac.scan.resume import DAMAGED_DIR, PARTS_DIR, Ledger, OutdirBusy
from batchfrac.scan.run import run_scan
from tests.conftest import REPO
from tests.scan_fakes import CountingIngest, FakeBundle

FILES = {
    "s1/a": "0.1",
    "s1/b": "0.5",
    "s1/c": "bad",
    "s2/m": "frames:0.2,0.9",
    "s2/n": "0.7",
    "s3/x": "not an image",
    "s3/y": "0.33",
    "s3/z": "0.66",
}


def make_archive(root: Path) -> Path:
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def scan(archive: Path, out: Path, ingest: CountingIngest, bundle: FakeBundle | None = None):
    config = ScanConfig(archive, out, Path("unused"), workers=0, batch_size=2, chunk_size=2)
    return run_scan(config, bundle=bundle or FakeBundle(), ingest=ingest)


def images(out: Path) -> list[dict[str, object]]:
    return pq.read_table(out / "images.parquet").to_pylist()


def without_heatmaps(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    drop = ("heatmap", "heatmap_peak_x", "heatmap_peak_y")
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return make_archive(tmp_path / "archive")


@pytest.fixture
def reference(tmp_path: Path, archive: Path) -> list[dict[str, object]]:
    scan(archive, tmp_path / "reference", CountingIngest())
    return images(tmp_path / "reference")


def test_interrupted_scan_resumes_to_the_uninterrupted_result(
    tmp_path: Path, archive: Path, reference: list[dict[str, object]]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        scan(archive, out, CountingIngest(interrupt_after=4))
    parts = list((out / PARTS_DIR).glob("part-*.parquet"))
    assert parts, "finished chunks must be kept"
    assert not (out / "images.parquet").exists()
    done = {r["path"] for p in parts for r in pq.read_table(p).to_pylist()}

    second = CountingIngest()
    summary = scan(archive, out, second)
    assert done.isdisjoint(second.paths), "reported files are not decoded again"
    assert set(second.paths) | done == {str(archive / rel) for rel in FILES}
    # Heatmaps are drawn after the last batch, for the images inferred in that run: rows
    # resumed from the parts of a run that never finished have none (README, "Pictures").
    resumed = images(out)
    assert all(r["heatmap"] is None for r in resumed if r["path"] in done)
    assert without_heatmaps(resumed) == without_heatmaps(reference)
    assert summary.run["counts"]["files_reused"] == len(done)
    assert summary.run["counts"]["files"] == len(FILES)


def test_rerun_of_a_finished_scan_does_no_work(
    tmp_path: Path, archive: Path, reference: list[dict[str, object]]
) -> None:
    ingest = CountingIngest()
    summary = scan(archive, tmp_path / "reference", ingest)
    assert ingest.paths == []
    assert summary.run["throughput"]["trunk_passes_per_image"] is None
    assert images(tmp_path / "reference") == reference


def test_changed_and_deleted_files_are_not_reported_from_old_parts(
    tmp_path: Path, archive: Path
) -> None:
    out = tmp_path / "out"
    scan(archive, out, CountingIngest())
    (archive / "s1/a").write_text("0.95")  # size unchanged, mtime changed
    os.utime(archive / "s1/a", ns=(1, 1))
    (archive / "s3/z").unlink()
    ingest = CountingIngest()
    scan(archive, out, ingest)
    assert ingest.paths == [str(archive / "s1/a")]
    rows = images(out)
    paths = [(r["path"], r["frame"]) for r in rows]
    assert len(paths) == len(set(paths)), "no row twice"
    assert str(archive / "s3/z") not in {p for p, _ in paths}
    (changed,) = [r for r in rows if r["path"] == str(archive / "s1/a")]
    assert changed["bone"] == "wrist" and changed["file_mtime_ns"] == 1


def test_another_bundle_redoes_everything_and_never_mixes(tmp_path: Path, archive: Path) -> None:
    out = tmp_path / "out"
    scan(archive, out, CountingIngest())
    other = FakeBundle()
    other.bundle_id = "anotherbundle002"
    ingest = CountingIngest()
    summary = scan(archive, out, ingest, bundle=other)
    assert sorted(ingest.paths) == sorted(str(archive / rel) for rel in FILES)
    assert summary.run["counts"]["files_reused"] == 0
    assert summary.run["counts"]["rows"] == len(FILES) + 1  # one two-frame file
    ledger = Ledger(out, summary.run["config_id"]).load()
    assert ledger.foreign_parts > 0 and len(ledger) == len(FILES)


def test_rows_are_sorted_by_path_then_frame(reference: list[dict[str, object]]) -> None:
    keys = [(r["path"], r["frame"]) for r in reference]
    assert keys == sorted(keys)
    assert [k for k in keys if k[0].endswith("s2/m")] == [(keys[3][0], 0), (keys[3][0], 1)]


SLOW_SCAN = """
import sys, time
from pathlib import Path
from batchfrac.scan.config import ScanConfig
from batchfrac.scan.run import run_scan
from tests.conftest import REPO
from tests.scan_fakes import CountingIngest, FakeBundle

def slow(paths, config):
    time.sleep(600)
    return text_ingest(paths, config)

archive, out = Path(sys.argv[1]), Path(sys.argv[2])
run_scan(ScanConfig(archive, out, Path("unused"), workers=0), bundle=FakeBundle(), ingest=slow)
"""


def test_a_second_scan_on_the_same_outdir_is_refused(tmp_path: Path, archive: Path) -> None:
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-c", SLOW_SCAN, str(archive), str(out)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "scan.log").exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first scan did not start"
            time.sleep(0.2)
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        with pytest.raises(OutdirBusy, match="another batchfrac scan"):
            scan(archive, out, CountingIngest())
    finally:
        first.kill()
        first.wait()
    assert isinstance(first.returncode, int)
    scan(archive, out, CountingIngest())  # the lock died with its process


def test_a_damaged_part_is_moved_aside_and_its_files_scanned_again(
    tmp_path: Path, archive: Path, reference: list[dict[str, object]]
) -> None:
    out = tmp_path / "out"
    scan(archive, out, CountingIngest())
    part = sorted((out / PARTS_DIR).glob("part-*.parquet"))[0]
    damaged_files = {r["path"] for r in pq.read_table(part).to_pylist()}
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # a torn write
    ingest = CountingIngest()
    scan(archive, out, ingest)
    assert set(ingest.paths) == damaged_files
    assert (out / PARTS_DIR / DAMAGED_DIR / part.name).exists()  # the evidence is kept
    assert {r["path"] for r in pq.read_table(part).to_pylist()} == damaged_files  # rewritten
    assert images(out) == reference


def test_error_rows_are_reused_unless_retry_errors(tmp_path: Path, archive: Path) -> None:
    out = tmp_path / "out"
    scan(archive, out, CountingIngest())
    again = CountingIngest()
    scan(archive, out, again)
    assert again.paths == []
    retry = CountingIngest()
    config = ScanConfig(archive, out, Path("unused"), workers=0, batch_size=2, chunk_size=2,
                        retry_errors=True)  # fmt: skip
    summary = run_scan(config, bundle=FakeBundle(), ingest=retry)
    assert retry.paths == [str(archive / "s1/c")]  # the one error row ("bad")
    assert summary.run["counts"]["files_reused"] == len(FILES) - 1
    rows = [r for r in images(out) if r["path"] == str(archive / "s1/c")]
    assert len(rows) == 1 and rows[0]["status"] == "error"


def test_a_crash_between_report_files_leaves_no_finished_looking_set(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    scan(archive, out, CountingIngest())
    assert (out / "run.json").exists() and (out / "studies.parquet").exists()
    real = writer_module.write_parquet

    def fail_on_studies(table, path, schema, provenance):  # type: ignore[no-untyped-def]
        if path.name == "studies.parquet":
            raise OSError(28, "No space left on device")
        return real(table, path, schema, provenance)

    monkeypatch.setattr(writer_module, "write_parquet", fail_on_studies)
    with pytest.raises(OSError, match="No space"):
        scan(archive, out, CountingIngest())
    # yesterday's run.json (exit code 0) and studies.parquet are gone, not left beside a
    # new images.parquet
    assert not (out / "run.json").exists() and not (out / "studies.parquet").exists()
    monkeypatch.undo()
    summary = scan(archive, out, CountingIngest())
    assert summary.exit_code == 3 and (out / "run.json").exists()


def test_temp_files_of_a_killed_run_are_cleaned(tmp_path: Path, archive: Path) -> None:
    out = tmp_path / "out"
    (out / PARTS_DIR).mkdir(parents=True)
    stale = out / PARTS_DIR / f".part-abc.parquet.x1y2{TEMP_SUFFIX}"
    stale.write_bytes(b"half a parquet file")
    theirs = [out / ".report.xlsx.tmp", out / PARTS_DIR / ".notes.tmp"]
    for path in theirs:
        path.write_bytes(b"another program's temporary file")
    scan(archive, out, CountingIngest())
    assert not stale.exists()
    assert all(path.read_bytes() == b"another program's temporary file" for path in theirs)
