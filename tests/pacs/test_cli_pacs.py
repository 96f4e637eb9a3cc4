"""The export --dicom, send and pull commands: exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchfrac.cli import app
from tests.pacs import scan_output as so
from tests.pacs.tools import free_port

runner = CliRunner()
GOOD_URL = "http://127.0.0.1:1/dicom-web"  # never contacted: the arguments fail first


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    return so.make_scan_output(tmp_path / "scan")


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


class TestExportDicom:
    def test_writes_the_objects_and_says_so(self, scan: Path, tmp_path: Path) -> None:
        code, out, _ = invoke("export", str(scan), "--dicom", str(tmp_path / "d"))
        assert code == 0
        assert "2 SR, 1 KOS" in out and len(list((tmp_path / "d").iterdir())) == 3

    def test_pseudonymised_export(self, scan: Path, tmp_path: Path) -> None:
        key = tmp_path / "key"
        key.write_bytes(b"x" * 40)
        code, out, _ = invoke("export", str(scan), "--dicom", str(tmp_path / "d"),
                              "--pseudonymize-key-file", str(key))  # fmt: skip
        assert code == 0 and "pseudonymised" in out

    def test_short_key_is_fatal_and_never_printed(self, scan: Path, tmp_path: Path) -> None:
        key = tmp_path / "key"
        key.write_bytes(b"tiny-secret-key\n")
        code, out, err = invoke("export", str(scan), "--dicom", str(tmp_path / "d"),
                                "--pseudonymize-key-file", str(key))  # fmt: skip
        assert code == 1 and "at least 32" in err and "Traceback" not in err + out
        assert "tiny-secret-key" not in err + out

    def test_malformed_reports_are_one_line_and_exit_1(self, scan: Path, tmp_path: Path) -> None:
        (scan / "images.parquet").write_bytes(b"garbage")
        code, out, err = invoke("export", str(scan), "--dicom", str(tmp_path / "d"))
        assert code == 1 and err.startswith("error: cannot read") and len(err.splitlines()) == 1
        assert "Traceback" not in err + out

    def test_warnings_reach_stderr_one_line_each(self, scan: Path, tmp_path: Path) -> None:
        for path in (scan.parent / "archive").rglob("*.dcm"):
            path.unlink()
        for attempt in ("first", "second"):  # the handler follows the runner's stderr
            code, _, err = invoke("export", str(scan), "--dicom", str(tmp_path / attempt))
            assert code == 0
            assert (
                sum("SOP Class UID assumed from the modality" in line for line in err.splitlines())
                == 2
            )
            assert all(line.startswith("warning: study ") for line in err.splitlines())

    @pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # a hostile UID on purpose
    def test_a_failed_study_exits_3(self, tmp_path: Path) -> None:
        studies = so.standard_studies()
        studies[1].uid = "not-a-uid"
        scan = so.make_scan_output(tmp_path / "scan", studies)
        code, _, err = invoke("export", str(scan), "--dicom", str(tmp_path / "d"))
        assert code == 3 and "study not-a-uid: no objects (invalid_uid" in err


class TestExitCodesAsUsersSeeThem:
    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "batchfrac", *args], capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    def test_key_file_alone_is_a_usage_error(self, scan: Path, tmp_path: Path) -> None:
        # A key applies to --csv and --html too (tests/cli/test_pseudonymize.py); alone it
        # exports nothing.
        result = self.run("export", str(scan), "--pseudonymize-key-file", str(tmp_path / "k"))
        assert result.returncode == 1 and "nothing to export" in result.stderr

    def test_unreachable_dicomweb_server_is_fatal(self, scan: Path) -> None:
        url = f"http://127.0.0.1:{free_port()}/dicom-web"
        result = self.run("send", str(scan), "--dicomweb", url, "--http-attempts", "1")
        assert result.returncode == 1
        assert (
            result.stderr.strip().splitlines()[-1] == f"error: cannot reach {url}: ConnectionError"
        )

    def test_unreachable_pull_server_is_fatal(self, tmp_path: Path) -> None:
        url = f"http://127.0.0.1:{free_port()}/dicom-web"
        result = self.run("pull", url, "--out", str(tmp_path / "p"), "--http-attempts", "1")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip() == "error: server unreachable: ConnectionError"


class TestArguments:
    def test_send_needs_exactly_one_destination(self, scan: Path) -> None:
        code, _, err = invoke("send", str(scan))
        assert code == 1 and "exactly one of --dicomweb URL or --dimse HOST:PORT" in err
        code, _, err = invoke(
            "send", str(scan), "--dicomweb", "http://127.0.0.1:1/x", "--dimse", "h:1"
        )
        assert code == 1

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--dimse", "127.0.0.1"], "--dimse must be HOST:PORT"),
            (["--dimse", "127.0.0.1:104"], "--called-ae must be an AE title"),
            (["--dimse", "127.0.0.1:104", "--called-ae", "A" * 17], "--called-ae must be"),
            (["--dicomweb", "ftp://x"], "--dicomweb must be an http(s) URL"),
        ],
    )
    def test_bad_destinations(self, scan: Path, args: list[str], message: str) -> None:
        code, _, err = invoke("send", str(scan), *args)
        assert code == 1 and message in err

    def test_dry_run_lists_without_contacting_anyone(self, scan: Path) -> None:
        url = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
        code, out, _ = invoke("send", str(scan), "--dicomweb", url, "--dry-run")
        assert code == 0 and out.count("would_send: ") == 3 and "3 would send" in out

    @pytest.mark.parametrize(
        ("url", "args", "message"),
        [
            (GOOD_URL, ["--since", "2024-13-01"], "month must be in 1..12"),
            (GOOD_URL, ["--since", "2024-02-01", "--until", "2024-01-01"], "is after --until"),
            ("pacs:8042", [], "URL must be an http(s) DICOMweb base URL"),
            ("http://[::1", [], "bad DICOMweb URL 'http://[::1'"),
        ],
    )
    def test_bad_pull_arguments(
        self, tmp_path: Path, url: str, args: list[str], message: str
    ) -> None:
        code, _, err = invoke("pull", url, "--out", str(tmp_path / "p"), *args)
        assert code == 1 and message in err and "Traceback" not in err


def test_help_imports_no_dicom_network_or_arrow_library() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from batchfrac.cli import app\n"
        "for cmd in (['--help'], ['send', '--help'], ['pull', '--help'], ['export', '--help']):\n"
        "    r = CliRunner().invoke(app, cmd)\n"
        "    assert r.exit_code == 0, r.output\n"
        "names = ('highdicom', 'pynetdicom', 'dicomweb_client', 'pyarrow', 'tensorflow')\n"
        "print(','.join(m for m in names if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
