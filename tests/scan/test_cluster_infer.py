"""``--infer-on workers`` on a real loopback cluster: a ``dask scheduler`` and two
``dask worker`` processes (one advertising ``GPU=1``) on 127.0.0.1, started here and
stopped by pid. Rows must equal a local scan's; a worker killed mid-scan loses and
duplicates nothing; workers of another version or that cannot see the archive refuse."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchfrac.scan.resume import PARTS_DIR
from tests.scan_fakes import make_dicom_archive

DASK = str(Path(sys.executable).with_name("dask"))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1",
       # as the README asks of a --scheduler cluster: our retry policy, not the scheduler's
       "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
       "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}  # fmt: skip
DRIVER_FORBIDDEN = ("tensorflow", "keras", "onnxruntime", "jax", "torch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A scheduler and workers on 127.0.0.1, each process stopped by its pid."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self._start([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                     "--no-dashboard"])  # fmt: skip

    def _start(self, argv: list[str]) -> None:
        log = open(self.cwd / f"proc{len(self.procs)}.log", "wb")  # noqa: SIM115 - kept open
        self.procs.append(subprocess.Popen(argv, cwd=self.cwd, env=ENV, stdout=log, stderr=log))

    def add_worker(self, *extra: str) -> None:
        self._start([DASK, "worker", self.address, "--host", "127.0.0.1", "--no-dashboard",
                     "--nthreads", "1", "--nworkers", "1", *extra])  # fmt: skip

    def wait(self, n: int) -> dict[str, dict[str, object]]:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(n, timeout=120)
            return dict(client.scheduler_info()["workers"])

    def gpu_worker_pid(self) -> int:
        """The pid of the worker process (below its nanny) that advertises ``GPU``."""
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            workers = client.scheduler_info()["workers"]
            gpu = [a for a, info in workers.items() if (info.get("resources") or {}).get("GPU")]
            return int(client.run(os.getpid, workers=gpu)[gpu[0]])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers (one with ``GPU=1``) whose working directory holds no archive."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.add_worker("--resources", "GPU=1")
        cluster.add_worker()
        cluster.wait(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, sample_archive: Path) -> Path:
    root = tmp_path_factory.mktemp("arch") / "archive"
    shutil.copytree(sample_archive, root / "sample")
    for copy in range(3):
        make_dicom_archive(root / f"copy{copy}")
    return root


def scan_argv(archive: Path | str, out: Path, bundle: Path, *extra: str) -> list[str]:
    return ["scan", str(archive), "--out", str(out), "--bundle", str(bundle), "--backend", "onnx",
            "--chunk-size", "2", "--quiet", *extra]  # fmt: skip


#: Runs the CLI, then writes the names of the modules it loaded to argv[1].
WRAPPER = (
    "import sys\n"
    "from batchfrac.cli import app\n"
    "code = 0\n"
    "try:\n"
    "    app(sys.argv[2:])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code or 0\n"
    "open(sys.argv[1], 'w').write('\\n'.join(sorted(sys.modules)))\n"
    "sys.exit(code)\n"
)


def run_cli(
    argv: list[str], modules: Path, cwd: Path | None = None, **kw: object
) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRAPPER, str(modules), *argv], env=ENV,
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)  # type: ignore[call-overload]  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out + err


#: Picture columns: filled when the driver infers, null when the workers do (rows only).
PICTURES = ("thumbnail", "heatmap", "heatmap_peak_x", "heatmap_peak_y")


def comparable(out: Path, *, pictures: bool = True) -> list[dict[str, object]]:
    rows = pq.read_table(out / "images.parquet").to_pylist()
    for row in rows:
        row.pop("decode_ms", None)
        if not pictures:
            assert all(row.pop(key) is None for key in PICTURES), row["path"]
        for key in ("abnormal_probability", "bone_confidence"):
            if row.get(key) is not None:
                row[key] = round(row[key], 5)
    return sorted(rows, key=lambda r: (r["path"], r["frame"]))


def without_pictures(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    assert any(row["thumbnail"] for row in rows)  # the local scan drew them
    return [{k: v for k, v in row.items() if k not in PICTURES} for row in rows]


@pytest.fixture(scope="module")
def local_rows(archive: Path, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("local") / "out"
    modules = out.parent / "modules.txt"
    code, text = finish(run_cli(scan_argv(archive, out, tiny_bundle, "--workers", "0"), modules))
    assert code in (0, 3), text
    return comparable(out)


@pytest.mark.timeout(300)
def test_rows_on_workers_equal_a_local_scan_and_the_driver_builds_no_network(
    cluster: Cluster, archive: Path, tiny_bundle: Path, tmp_path: Path, local_rows: list
) -> None:
    for mode in ("driver", "workers"):
        out, modules = tmp_path / mode, tmp_path / f"{mode}-modules.txt"
        argv = scan_argv(archive, out, tiny_bundle, "--scheduler", cluster.address,
                         "--infer-on", mode)  # fmt: skip
        code, text = finish(run_cli(argv, modules))
        assert code in (0, 3), text
        if mode == "driver":
            assert comparable(out) == local_rows
        else:  # no pictures: every other column equal
            assert comparable(out, pictures=False) == without_pictures(local_rows)
        inference = json.loads((out / "run.json").read_text())["inference"]
        assert inference["where"] == mode
    assert [w["resources"] for w in inference["workers"]] == [{"GPU": 1}]  # the GPU worker only
    assert inference["workers"][0]["backend"] == "onnx"
    loaded = {name.split(".")[0] for name in modules.read_text().split()}
    assert loaded & set(DRIVER_FORBIDDEN) == set()
    assert "batchfrac.scan.remote" in modules.read_text().split()  # the task came from here


@pytest.mark.timeout(420)
def test_a_worker_killed_mid_scan_loses_and_duplicates_nothing(
    cluster: Cluster, archive: Path, tiny_bundle: Path, tmp_path: Path, local_rows: list
) -> None:
    cluster.wait(2)
    pid = cluster.gpu_worker_pid()
    out = tmp_path / "out"
    argv = scan_argv(archive, out, tiny_bundle, "--scheduler", cluster.address,
                     "--infer-on", "workers")  # fmt: skip
    proc = run_cli(argv, tmp_path / "modules.txt")
    try:
        deadline = time.monotonic() + 180
        while not (out / PARTS_DIR).is_dir() or not any((out / PARTS_DIR).glob("part-*")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)  # the worker process (its nanny starts a fresh one)
        assert not (out / "run.json").exists()  # killed mid-scan
    finally:
        code, text = finish(proc)
    assert code in (0, 3), text
    rows = comparable(out, pictures=False)
    keys = [(r["path"], r["frame"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert rows == without_pictures(local_rows)
    # The driver saw the death and applied the retry policy: the chunk the worker was
    # running is split and its files go again, or, when it died holding a finished
    # chunk's rows, that chunk goes again whole.
    log_text = (out / "scan.log").read_text()
    assert "a worker died on a chunk of 2 files" in log_text or (
        "could not be fetched" in log_text
    ), log_text
    cluster.wait(2)  # the nanny brought the worker back


@pytest.mark.timeout(180)
@pytest.mark.parametrize("infer_on", ["workers", "driver"])
def test_an_archive_workers_cannot_see_is_refused_before_any_work(
    cluster: Cluster, archive: Path, tiny_bundle: Path, tmp_path: Path, infer_on: str
) -> None:
    # A relative archive path: readable from here, not from the workers' directory.
    out = tmp_path / "out"
    argv = scan_argv(archive.name, out, tiny_bundle, "--scheduler", cluster.address,
                     "--infer-on", infer_on)  # fmt: skip
    code, text = finish(run_cli(argv, tmp_path / "m.txt", cwd=archive.parent))
    assert code == 1, text
    assert "cannot read the archive archive" in text and "shared storage" in text
    assert not (out / PARTS_DIR).is_dir() or not any((out / PARTS_DIR).glob("part-*"))


@pytest.mark.timeout(240)
def test_a_worker_of_another_batchfrac_version_is_refused(
    archive: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    # The worker's interpreter reports another version (what an older install would).
    preload = tmp_path / "other_version.py"
    preload.write_text("import batchfrac\nbatchfrac.__version__ = '0.0.1+other'\n")
    other = Cluster(tmp_path)
    try:
        other.add_worker("--preload", str(preload))
        other.wait(1)
        argv = scan_argv(archive, tmp_path / "out", tiny_bundle, "--scheduler", other.address,
                         "--infer-on", "workers")  # fmt: skip
        code, text = finish(run_cli(argv, tmp_path / "m.txt"))
    finally:
        other.stop()
    assert code == 1, text
    assert "runs batchfrac 0.0.1+other" in text
    assert not (tmp_path / "out" / "images.parquet").exists()


def test_a_worker_seeing_another_bundle_keeps_why(
    tiny_bundle: Path, demo_bundle_path: Path
) -> None:
    from batchfrac import __version__
    from batchfrac.bundle.format import ModelBundle
    from batchfrac.scan.remote import BundlePlugin

    driver = ModelBundle.load(tiny_bundle)
    # The same path shows this worker other weight files (e.g. a stale copy on its disk).
    plugin = BundlePlugin(str(demo_bundle_path), driver.bundle_id, driver.weights_sha256(),
                          __version__, "onnx")  # fmt: skip
    plugin.setup()
    assert plugin.bundle is None
    assert plugin.problem is not None and f"not the driver's {driver.bundle_id}" in plugin.problem


def test_infer_on_workers_without_a_scheduler_is_a_clear_error(tmp_path: Path) -> None:
    from batchfrac.scan.config import ScanConfig

    with pytest.raises(ValueError, match="--infer-on workers needs --scheduler"):
        ScanConfig(archive=tmp_path, out=tmp_path / "o", bundle=tmp_path, infer_on="workers")
