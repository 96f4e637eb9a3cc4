"""Fixtures shared by the data-set tests: a small synthetic MURA tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.mura_synth import ROOT_NAME, synth_mura


@pytest.fixture(scope="session")
def mura_parent(tmp_path_factory) -> Path:
    return synth_mura(tmp_path_factory.mktemp("mura"))


@pytest.fixture()
def mura_copy(mura_parent, tmp_path) -> Path:
    """A private copy of the tree's root, for tests that edit it."""
    return Path(shutil.copytree(mura_parent / ROOT_NAME, tmp_path / ROOT_NAME))
