"""The scan pipeline: in-process and on a 2-worker Dask LocalCluster."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import dask
import pyarrow.parquet as pq
import pytest

import batchfrac.scan.cluster as cluster_module
from batchfrac.enums import Backend, Reason, Status
from batchfrac.errors import BundleError
from batchfrac.records import ImageResult
from batchfrac.report.rows import ImageRow
from batchfrac.scan.chunks import EmptyArchive
from batchfrac.scan.cluster import dask_ingest
from batchfrac.scan.config import ScanConfig
from batchfrac.scan.feed import ChunkInference
from batchfrac.scan.forkserver import WORKER_ENVIRON
from batchfrac.scan.inference import BatchPredictor
from batchfrac.scan.resume import PARTS_DIR
from batchfrac.scan.retry import (
    LOST_ROWS_ATTEMPTS,
    WORKER_DIED,
    after_lost_rows,
    after_worker_death,
)
from batchfrac.scan.run import run_scan
from batchfrac.scan.workers import LOCAL_CLUSTER_CONFIG
from tests.scan_fakes import (
    FakeBundle,
    crashing_ingest,
    environ_ingest,
    failing_ingest,
    hanging_ingest,
    make_dicom_archive,
    ok_result,
    process_ingest,
    rejected_result,
    text_ingest,
)


def statuses(out: Path, archive: Path) -> dict[str, str]:
    rows = pq.read_table(out / "images.parquet").to_pylist()
    return {str(Path(r["path"]).relative_to(archive)): r["status"] for r in rows}


class TestChunkInference:
    def test_a_chunk_is_written_once_all_its_images_are_predicted(self) -> None:
        bundle = FakeBundle()
        written: list[list[ImageRow]] = []
        inference = ChunkInference(BatchPredictor(bundle, batch_size=3), written.append)
        inference.add(["/a", "/b"], [ok_result("/a", 0.1), ok_result("/b", 0.2)])
        assert written == []  # its images wait for a full batch
        inference.add(["/c"], [rejected_result("/c", Reason.NOT_DICOM)])
        assert [[r.path for r in rows] for rows in written] == [["/c"]]
        inference.add(["/d", "/e"], [ok_result("/d", 0.3), ok_result("/e", 0.9)])
        assert [r.path for r in written[1]] == ["/a", "/b"]
        inference.finish()
        assert [r.path for r in written[2]] == ["/d", "/e"]
        assert bundle.trunk_batches == [3, 3]
        assert all(r.bone is not None for rows in written for r in rows if r.status == "ok")

    def test_idle_time_is_time_without_images_once_the_networks_are_ready(self) -> None:
        inference = ChunkInference(BatchPredictor(FakeBundle(), batch_size=2), lambda rows: None)
        inference.add(["/a"], [ok_result("/a", 0.1)])  # before ready(): not idle time
        assert inference.idle_s == 0.0 and inference.idle_share is None
        inference.ready()
        time.sleep(0.2)  # waiting for the next decoded chunk
        inference.add(["/b"], [ok_result("/b", 0.2)])
        waited = inference.idle_s
        assert waited >= 0.2
        inference.finish()
        share = inference.idle_share
        assert share is not None and 0.0 < share <= 1.0
        assert inference.idle_s >= waited

    def test_an_ok_result_without_pixels_is_a_bug(self) -> None:
        inference = ChunkInference(BatchPredictor(FakeBundle()), lambda rows: None)
        broken = ok_result("/a", 0.1)
        object.__setattr__(broken, "pixels", None)
        with pytest.raises(ValueError, match="without pixels"):
            inference.add(["/a"], [broken])


def test_in_process_scan_accounts_for_every_file(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    expected = make_dicom_archive(archive)
    out = tmp_path / "out"
    config = ScanConfig(archive, out, Path("unused"), workers=0, batch_size=3, chunk_size=3)
    summary = run_scan(config, bundle=FakeBundle())
    assert statuses(out, archive) == expected
    assert summary.exit_code == 3  # the truncated file is an error row
    counts = summary.run["counts"]
    assert counts["reason"] == {"not_dicom": 1, "unsupported_modality": 1, "truncated": 1}
    assert counts["studies"] == 2
    assert summary.run["throughput"]["trunk_passes_per_image"] == pytest.approx(6 / 4)
    assert len(list((out / PARTS_DIR).glob("part-*.parquet"))) == 3
    inference = summary.run["inference"]
    assert (inference["requested"], inference["backend"], inference["batch_size"]) == (
        "auto", "fake", 3
    )  # fmt: skip
    assert 0.0 <= summary.run["throughput"]["inference_idle_share"] <= 1.0


def test_the_scan_asks_the_bundle_for_its_backend_with_the_free_cores(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    make_dicom_archive(archive)
    bundle = FakeBundle()
    config = ScanConfig(archive, tmp_path / "out", Path("unused"), workers=0, backend="keras")
    summary = run_scan(config, bundle=bundle)
    assert bundle.backend_requested == (Backend.KERAS, config.inference_threads)
    assert summary.run["inference"]["batch_size"] == FakeBundle.backend.batch_size
    assert summary.run["arguments"]["backend"] == "keras"


def test_inference_threads_are_the_cores_decoding_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    import batchfrac.scan.config as config_module

    monkeypatch.setattr(config_module, "default_workers", lambda: 4)
    base = (Path("a"), Path("o"), Path("b"))
    assert ScanConfig(*base, workers=0).inference_threads == 4  # decoding between batches
    assert ScanConfig(*base, workers=3).inference_threads == 1
    assert ScanConfig(*base, workers=8).inference_threads == 1
    assert ScanConfig(*base, workers=2, scheduler="tcp://h:8786").inference_threads == 4


def test_walk_rows_reach_the_report_and_a_copy_of_an_instance_counts_once(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "archive"
    expected = make_dicom_archive(archive)
    study = archive / "study"
    study.mkdir()
    ok_files = sorted(rel for rel, status in expected.items() if status == "ok")
    shutil.copy(archive / ok_files[0], study / "copy_of_first.dcm")  # same SOP Instance UID
    os.mkfifo(study / "pipe")
    (study / "dangling").symlink_to(archive / "nowhere")
    (study / "alias.dcm").symlink_to(archive / ok_files[0])
    (study / "out").symlink_to(tmp_path, target_is_directory=True)
    out = tmp_path / "out"
    config = ScanConfig(archive, out, Path("unused"), workers=0, batch_size=3, chunk_size=2)
    summary = run_scan(config, bundle=FakeBundle())
    rows = {
        Path(r["path"]).relative_to(archive).as_posix(): r
        for r in pq.read_table(out / "images.parquet").to_pylist()
    }
    assert (rows["study/pipe"]["status"], rows["study/pipe"]["reason"]) == (
        "skipped",
        "not_regular_file",
    )
    assert rows["study/dangling"]["reason"] == "dangling_link"
    assert rows["study/alias.dcm"]["reason"] == "duplicate"
    assert rows["study/out"]["reason"] == "outside_archive"
    assert "duplicate_instance" in rows["study/copy_of_first.dcm"]["flags"]
    assert summary.exit_code == 3  # the dangling link (and the truncated file) are errors
    studies = pq.read_table(out / "studies.parquet").to_pylist()
    flagged = [s for s in studies if "duplicate_instances" in s["flags"]]
    assert len(flagged) == 1
    assert summary.run["counts"]["files"] == len(expected) + 5


def test_an_empty_archive_stops_the_scan(tmp_path: Path) -> None:
    (tmp_path / "archive" / "empty_sub").mkdir(parents=True)
    config = ScanConfig(tmp_path / "archive", tmp_path / "out", Path("unused"), workers=0)
    with pytest.raises(EmptyArchive, match="no files"):
        run_scan(config, bundle=FakeBundle())
    assert not (tmp_path / "out" / "run.json").exists()


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="--workers must be >= 0.*--batch-size"):
        ScanConfig(Path("a"), Path("o"), Path("b"), workers=-1, batch_size=0)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from dask.distributed import LocalCluster

    with dask.config.set(LOCAL_CLUSTER_CONFIG):  # the settings of a scan's own cluster
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local:
            yield local


def test_two_worker_cluster_scan_and_workers_never_import_tensorflow(
    tmp_path: Path, cluster: object
) -> None:
    from dask.distributed import Client

    archive = tmp_path / "archive"
    expected = make_dicom_archive(archive)
    out = tmp_path / "out"
    address = cluster.scheduler_address  # type: ignore[attr-defined]
    config = ScanConfig(
        archive, out, Path("unused"), workers=2, batch_size=4, chunk_size=2, scheduler=address
    )
    summary = run_scan(config, bundle=FakeBundle())
    assert statuses(out, archive) == expected
    assert summary.run["counts"]["files_processed"] == len(expected)
    with Client(address) as client:
        loaded = client.run(
            lambda: (
                "tensorflow" in sys.modules,
                "keras" in sys.modules,
                "batchfrac.ingest.entry" in sys.modules,
            )
        )
    assert len(loaded) == 2
    assert all(flags == (False, False, True) for flags in loaded.values()), loaded


def text_files_in_pairs(
    folder: Path, n: int, special: dict[str, str]
) -> tuple[dict[str, str], list[list[str]]]:
    """``n`` text_ingest files f00, f01, ... (``special`` overrides contents) in chunks of 2."""
    files = {f"f{i:02d}": str(i / 20) for i in range(n)} | special
    for name, text in files.items():
        (folder / name).write_text(text)
    paths = [str(folder / name) for name in sorted(files)]
    return files, [paths[i : i + 2] for i in range(0, len(paths), 2)]


def test_window_bounds_chunks_in_flight_and_a_dead_worker_costs_one_file(
    tmp_path: Path, cluster: object
) -> None:
    files, chunks = text_files_in_pairs(tmp_path, 12, {"f05": "crash"})
    pulled = 0

    def source() -> Iterator[list[str]]:
        nonlocal pulled
        for chunk in chunks:
            pulled += 1
            yield chunk

    window, consumed, results = 2, 0, []
    for _paths, chunk_results in dask_ingest(
        source(), None, crashing_ingest, workers=2, window=window,
        scheduler=cluster.scheduler_address,  # type: ignore[attr-defined]
    ):  # fmt: skip
        consumed += 1
        assert pulled - consumed <= window
        results.extend(chunk_results)
    by_path = {Path(r.file.path).name: r for r in results}
    assert sorted(by_path) == sorted(files)
    crashed = by_path["f05"]
    assert (crashed.status, crashed.reason, crashed.detail) == (
        Status.ERROR, Reason.DECODE_ERROR, WORKER_DIED,
    )  # fmt: skip
    assert all(r.status is Status.OK for name, r in by_path.items() if name != "f05")
    assert text_ingest  # the crash-free path is the same function


def rows_by_name(
    cluster: object,
    chunks: list[list[str]],
    files: Collection[str],
    task: object,
    **options: object,
) -> dict[str, ImageResult]:
    """The rows of ``chunks`` ingested by ``task`` on the test cluster (2 workers, a window
    of 2), by file name; every file comes back exactly once."""
    results = [
        result
        for _paths, chunk in dask_ingest(
            iter(chunks),
            None,
            task,
            workers=2,
            window=2,
            scheduler=cluster.scheduler_address,  # type: ignore[attr-defined]
            **options,
        )  # fmt: skip
        for result in chunk
    ]
    by_path = {Path(r.file.path).name: r for r in results}
    assert sorted(by_path) == sorted(files) and len(results) == len(files)
    return by_path


def test_a_hung_file_gets_a_timeout_row_and_the_rest_of_its_chunk_is_decoded(
    tmp_path: Path, cluster: object
) -> None:
    files, chunks = text_files_in_pairs(tmp_path, 6, {"f02": "hang"})

    by_path = rows_by_name(cluster, chunks, files, hanging_ingest, timeout=2.0)
    hung = by_path["f02"]
    assert (hung.status, hung.reason) == (Status.ERROR, Reason.TIMEOUT)
    assert "2.0 s" in (hung.detail or "")
    assert all(r.status is Status.OK for name, r in by_path.items() if name != "f02")


def test_a_panic_or_an_exception_in_a_task_costs_one_file_and_never_hangs(
    tmp_path: Path, cluster: object
) -> None:
    files, chunks = text_files_in_pairs(tmp_path, 8, {"f01": "panic", "f04": "raise"})
    by_path = rows_by_name(cluster, chunks, files, failing_ingest)
    for name, kind in (("f01", "FakePanic"), ("f04", "ValueError")):
        failed = by_path[name]
        assert (failed.status, failed.reason) == (Status.ERROR, Reason.DECODE_ERROR)
        assert kind in (failed.detail or "")
    assert all(r.status is Status.OK for n, r in by_path.items() if n not in ("f01", "f04"))


def test_a_worker_that_neither_answers_nor_dies_is_given_up_on(
    tmp_path: Path, cluster: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_module, "DEADLINE_GRACE_S", 4.0)
    monkeypatch.setattr(cluster_module, "RESULT_FETCH_TIMEOUT_S", 5.0)
    files, chunks = text_files_in_pairs(tmp_path, 4, {"f03": "freeze"})
    started = time.monotonic()
    by_path = rows_by_name(cluster, chunks, files, failing_ingest, timeout=5.0)
    frozen = by_path["f03"]
    # Normally the task goes overdue and is given up on (timeout, "no answer"). On a loaded
    # machine the scheduler may first lose the stopped worker's connection and report it
    # dead (KilledWorker): then the retry policy blames the file (decode_error, worker
    # died). Either way the file is an error row, the others are ok, and nothing waits for
    # the worker TTL.
    assert frozen.status is Status.ERROR
    if frozen.reason is Reason.TIMEOUT:
        assert "no answer" in (frozen.detail or "")
    else:
        assert (frozen.reason, frozen.detail) == (Reason.DECODE_ERROR, WORKER_DIED)
    # Its worker is restarted before the rest of its chunk goes again, so the frozen
    # worker is never handed an innocent file (which would then go unanswered too).
    assert all(r.status is Status.OK for n, r in by_path.items() if n != "f03"), by_path
    assert time.monotonic() - started < 120  # deadlines, not the 300 s worker TTL


class TestAfterWorkerDeath:
    def test_a_reported_hung_file_is_blamed_and_the_rest_goes_again(self, tmp_path) -> None:
        paths = [str(tmp_path / n) for n in ("a", "b", "c")]
        retry, blamed, rows = after_worker_death(paths, {paths[1]}, {}, 5.0)
        assert retry == [[paths[0], paths[2]]] and blamed == [paths[1]]
        assert [r.reason for r in rows] == [Reason.TIMEOUT]

    def test_an_unexplained_death_splits_the_chunk_then_blames_a_file_alone(self, tmp_path) -> None:
        paths = [str(tmp_path / n) for n in ("a", "b")]
        assert after_worker_death(paths, set(), {}, None) == ([[paths[0]], [paths[1]]], [], [])
        deaths: dict[str, int] = {}
        for _ in range(2):
            assert after_worker_death([paths[0]], set(), deaths, None) == ([[paths[0]]], [], [])
        retry, blamed, rows = after_worker_death([paths[0]], set(), deaths, None)
        assert (retry, blamed) == ([], [paths[0]])
        assert (rows[0].reason, rows[0].detail) == (Reason.DECODE_ERROR, WORKER_DIED)


class BrokenTrunkBundle(FakeBundle):
    def trunk_features(self, x):
        raise BundleError("the trunk weights do not fit the network")


def test_networks_warm_up_beside_decoding_and_their_errors_stop_the_scan(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    make_dicom_archive(archive)
    config = ScanConfig(archive, tmp_path / "out", Path("unused"), workers=0, chunk_size=3)
    with pytest.raises(BundleError, match="do not fit"):
        run_scan(config, bundle=BrokenTrunkBundle())


def test_a_scans_driver_leaves_pydicom_to_the_workers_that_decode(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "a.dcm").write_bytes(b"\0" * 200)  # decoded (rejected) by a worker
    bundle = Path(__file__).resolve().parents[2] / "batchfrac" / "demo_bundle"
    code = (
        "import sys; from pathlib import Path\n"
        "from batchfrac.scan.config import ScanConfig\n"
        "from batchfrac.scan.run import run_scan\n"
        f"config = ScanConfig(Path({str(archive)!r}), Path({str(tmp_path / 'out')!r}), "
        f"Path({str(bundle)!r}), workers=1)\n"
        "summary = run_scan(config)\n"
        "print(summary.run['counts']['status'], 'pydicom' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.split("\n")[-2] == "{'skipped': 1} False"


def test_a_rerun_with_nothing_left_to_decode_builds_no_network(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    make_dicom_archive(archive)
    config = ScanConfig(archive, tmp_path / "out", Path("unused"), workers=0, chunk_size=3)
    first = FakeBundle()
    run_scan(config, bundle=first)
    assert first.trunk_batches[0] == FakeBundle.backend.batch_size  # the warm-up batch
    again = FakeBundle()
    summary = run_scan(config, bundle=again)
    assert summary.run["counts"]["files_reused"] > 0
    assert again.trunk_batches == [] and not again.head_calls


def test_local_cluster_workers_reuse_freed_image_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an earlier Dask cluster in this process leaves behind (nannies export their env).
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    (tmp_path / "a").write_text("x")
    [(_paths, results)] = list(
        dask_ingest(iter([[str(tmp_path / "a")]]), None, environ_ingest, workers=1, window=1)
    )
    settings = dict(item.split("=") for item in (results[0].detail or "").split(","))
    assert settings == {key: WORKER_ENVIRON[key] for key in settings}
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # this process's env restored


def test_local_cluster_workers_are_forked_from_the_fork_server_ignoring_sigint(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").write_text("x")
    [(_paths, results)] = list(
        dask_ingest(iter([[str(tmp_path / "a")]]), None, process_ingest, workers=1, window=1)
    )
    detail = results[0].detail or ""
    assert detail.startswith("sigint_ignored=True parent=")
    assert "from multiprocessing.forkserver import main" in detail  # not this process
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the driver's is restored


def test_without_a_fork_server_local_workers_are_spawned_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import multiprocessing.forkserver

    def refuse() -> None:
        raise PermissionError("no socket in the temporary directory")

    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", refuse)
    (tmp_path / "a").write_text("x")
    [(_paths, results)] = list(
        dask_ingest(iter([[str(tmp_path / "a")]]), None, process_ingest, workers=1, window=1)
    )
    detail = results[0].detail or ""
    assert detail.startswith("sigint_ignored=True parent=")
    assert "forkserver" not in detail  # a nanny of this process spawned it
    assert "cannot start a fork server (no socket" in caplog.text


def test_a_files_warnings_and_traceback_go_to_scan_log_not_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "odd").write_text("0.4")

    def noisy(paths: list[str], config: object) -> list[ImageResult]:
        return [
            dataclasses.replace(r, log=("UserWarning: Invalid value for VR UI", "Traceback: x"))
            for r in text_ingest(paths, config)
        ]

    config = ScanConfig(archive, tmp_path / "out", Path("unused"), workers=0)
    run_scan(config, bundle=FakeBundle(), ingest=noisy)
    text = (tmp_path / "out" / "scan.log").read_text()
    assert f"{archive / 'odd'}: UserWarning: Invalid value for VR UI" in text
    assert "Traceback: x" in text
    captured = capfd.readouterr()
    assert "Invalid value" not in captured.out + captured.err


class _NeverStarts:
    """A Dask future whose task no worker ever takes."""

    def __init__(self, key: str) -> None:
        self.key = key

    def done(self) -> bool:
        return False


class _ClusterWithoutWorkers:
    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, *args: object, **kwargs: object) -> _NeverStarts:
        self.submitted += 1
        return _NeverStarts(f"task-{self.submitted}")

    def processing(self) -> dict[str, list[str]]:
        return {}


def test_a_cluster_where_nothing_ever_starts_stops_the_scan_instead_of_waiting_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import distributed

    monkeypatch.setattr(cluster_module, "STALL_S", 0.5)
    monkeypatch.setattr(cluster_module, "POLL_S", 0.05)
    monkeypatch.setattr(distributed, "wait", lambda futures, timeout, return_when: time.sleep(
        min(timeout or 0.05, 0.05)))  # fmt: skip
    tasks = cluster_module._Tasks(_ClusterWithoutWorkers(), text_ingest, None, timeout=60.0)
    tasks.submit(["a", "b"])
    started = time.monotonic()
    with pytest.raises(cluster_module.ClusterStalled, match="no working worker"):
        while True:
            assert tasks.next_finished() == []
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("chunk_size", "workers"), [(3, 3), (16, 1)])  # 7 files
def test_a_small_archive_starts_one_decoding_process_per_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size: int, workers: int
) -> None:
    import batchfrac.scan.run as run_module
    from batchfrac.scan.chunks import local_ingest

    started: list[int] = []

    def fake_dask_ingest(chunks, config, task, **options):
        started.append(options["workers"])
        yield from local_ingest(chunks, config, task)

    monkeypatch.setattr(run_module, "dask_ingest", fake_dask_ingest)
    archive = tmp_path / "archive"
    expected = make_dicom_archive(archive)
    config = ScanConfig(archive, tmp_path / "out", Path("unused"), workers=4, chunk_size=chunk_size)
    run_scan(config, bundle=FakeBundle())
    assert started == [workers]
    assert statuses(tmp_path / "out", archive) == expected
    run_scan(config, bundle=FakeBundle())  # nothing left to decode: no cluster at all
    assert started == [workers]


class TestAfterLostRows:
    def test_the_chunk_goes_again_whole_and_no_death_is_counted(self, tmp_path) -> None:
        paths = [str(tmp_path / n) for n in ("a", "b")]
        losses: dict[str, int] = {}
        assert after_lost_rows(paths, losses) == ([paths], [], [])
        assert losses == {paths[0]: 1, paths[1]: 1}

    def test_a_file_whose_rows_are_lost_again_and_again_gets_a_row(self, tmp_path) -> None:
        path = str(tmp_path / "a")
        losses: dict[str, int] = {}
        for _ in range(LOST_ROWS_ATTEMPTS - 1):
            assert after_lost_rows([path], losses) == ([[path]], [], [])
        retry, blamed, rows = after_lost_rows([path], losses)
        assert (retry, blamed) == ([], [path])
        assert (rows[0].status, rows[0].reason) == (Status.ERROR, Reason.TIMEOUT)
        assert "could not be fetched" in (rows[0].detail or "")
