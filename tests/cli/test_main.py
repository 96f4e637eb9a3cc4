"""The console script's exit codes, run as a user runs them (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchfrac", *args], capture_output=True, text=True, timeout=120
    )


class TestConsoleScript:
    def test_version_prints_the_package_version(self) -> None:
        from batchfrac import __version__

        result = _run("--version")
        assert result.returncode == 0
        assert result.stdout.strip() == __version__

    def test_bad_arguments_exit_1_not_clicks_2(self, tmp_path: Path) -> None:
        result = _run("doctor", str(tmp_path / "missing"))
        assert result.returncode == 1
        assert "Invalid value" in result.stderr

    def test_help_does_not_import_tensorflow_dask_pyarrow_or_onnx(self) -> None:
        code = (
            "import sys\n"
            "from typer.testing import CliRunner\n"
            "from batchfrac.cli import app\n"
            "r = CliRunner().invoke(app, ['--help'])\n"
            "assert r.exit_code == 0, r.output\n"
            "names = ('tensorflow', 'keras', 'dask', 'distributed', 'pyarrow', 'onnxruntime',"
            " 'onnx')\n"
            "heavy = [m for m in names if m in sys.modules]\n"
            "print(','.join(heavy))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == ""
