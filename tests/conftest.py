"""Fixtures shared across the test tree.

DICOM files are built by the factories in ``tests/factories.py`` at test time; the only
committed data is ``sample_data/`` (synthetic, made by ``batchfrac synth``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.scan_fakes import cached_tiny_bundle

REPO = Path(__file__).resolve().parents[1]

# Subprocesses that import TensorFlow inherit this: its C++ start-up lines are noise here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def sample_archive() -> Path:
    """The committed synthetic sample archive (read only)."""
    return REPO / "sample_data" / "archive"


@pytest.fixture(scope="session")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    """A real bundle at image size 64 (random, calibrated weights; all eight heads), built
    once and cached between test sessions in pytest's cache directory."""
    return cached_tiny_bundle(Path(request.config.cache.mkdir("batchfrac-tiny-bundle-v2")))


@pytest.fixture(scope="session")
def demo_bundle_path() -> Path:
    """The shipped demo bundle (read only)."""
    return REPO / "batchfrac" / "demo_bundle"


@pytest.fixture(scope="session")
def demo_on_keras(demo_bundle_path: Path):  # -> ModelBundle (imported lazily: Keras)
    """The demo bundle on Keras, its nine networks built once per test session (~30 s)."""
    from batchfrac.bundle.format import ModelBundle

    bundle = ModelBundle.load(demo_bundle_path)
    bundle.use_backend("keras")
    return bundle
