"""Fixtures for the PACS tests: a real Orthanc on 127.0.0.1 (see tools.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pacs.tools import Orthanc, start_orthanc


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A fresh, empty Orthanc with the DICOMweb plugin, stopped (by its pid) afterwards."""
    server = start_orthanc(tmp_path / "orthanc")
    try:
        yield server
    finally:
        server.stop()
