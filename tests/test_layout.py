"""The package tree is the architecture diagram: these tests keep it honest.

README invariant 5: the pure stages import neither Dask nor TensorFlow/Keras; Dask lives
in the scan package, Keras in the bundle and training packages; evaluation does not pull
in the training stack.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import batchfrac

PACKAGE = Path(batchfrac.__file__).parent
HEAVY = ("dask", "distributed", "keras", "tensorflow", "jax", "torch")


def _imported_after(module: str) -> set[str]:
    """Top-level module names and ``batchfrac.*`` modules loaded by importing ``module``."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    names = result.stdout.split()
    return {n.split(".")[0] for n in names} | {n for n in names if n.startswith("batchfrac.")}


@pytest.mark.parametrize(
    "module",
    [
        "batchfrac.ingest.walk",
        "batchfrac.ingest.header",
        "batchfrac.ingest.decode",
        "batchfrac.ingest.display",
        "batchfrac.ingest.preprocess",
        "batchfrac.ingest.entry",
        "batchfrac.report.aggregate",
        "batchfrac.report.rows",
        "batchfrac.scan.inference",
    ],
)
def test_pure_stage_imports_neither_dask_nor_a_deep_learning_framework(module: str) -> None:
    assert _imported_after(module) & set(HEAVY) == set()


def test_evaluation_does_not_import_the_training_stack() -> None:
    loaded = _imported_after("batchfrac.evaluation.evaluate")
    assert {n for n in loaded if n.startswith("batchfrac.train")} == set()
    assert "keras" not in loaded  # Keras comes in only when the bundle builds its networks


def test_at_most_ten_modules_directly_in_the_package() -> None:
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 10, modules


def test_no_source_file_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert long == {}


def test_the_cli_loads_neither_pydicom_nor_opencv_nor_numpy() -> None:
    # Every command pays for what the CLI imports; scan workers are forked ready-loaded.
    assert _imported_after("batchfrac.cli") & {"pydicom", "cv2", "numpy", "pyarrow"} == set()


@pytest.mark.parametrize("module", ["batchfrac.scan.run", "batchfrac.ingest.settings"])
def test_a_scans_driver_side_does_not_load_pydicom(module: str) -> None:
    assert "pydicom" not in _imported_after(module)


def test_the_fork_server_module_is_standard_library_only() -> None:
    loaded = _imported_after("batchfrac.scan.forkserver")
    assert {n for n in loaded if n.startswith("batchfrac.")} == {
        "batchfrac.scan",
        "batchfrac.scan.forkserver",
    }
    assert loaded & {"numpy", "pydicom", "dask", "distributed", "pyarrow"} == set()
