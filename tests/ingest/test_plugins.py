"""Decoder lookup: which installed plugin decodes a transfer syntax, and why not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

import batchfrac.ingest.plugins as plugins_module
from batchfrac.ingest.plugins import decodable, transfer_syntax_name


class TestTransferSyntaxName:
    def test_known_and_unknown(self) -> None:
        assert transfer_syntax_name(RLELossless) == "RLE Lossless"
        assert transfer_syntax_name("1.2.3.4") == "unknown"
        assert transfer_syntax_name(None) == "unknown"


class TestDecodable:
    def test_native_syntax(self) -> None:
        assert decodable(ExplicitVRLittleEndian) == (True, "native")

    def test_compressed_syntax_names_its_plugins(self) -> None:
        ok, detail = decodable(JPEG2000Lossless)
        assert ok is True
        assert "pylibjpeg" in detail or "gdcm" in detail

    def test_syntax_without_any_decoder(self) -> None:
        ok, detail = decodable("1.2.826.0.1.3680043.9999.1")
        assert ok is False
        assert "no pixel data decoder" in detail

    def test_missing_plugin_dependencies_are_reported(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake = SimpleNamespace(
            is_available=False,
            available_plugins=(),
            missing_dependencies=["pylibjpeg: requires pylibjpeg-openjpeg", "gdcm: requires gdcm"],
        )
        monkeypatch.setattr(plugins_module, "get_decoder", lambda uid: fake)
        ok, detail = decodable(UID(JPEG2000Lossless))
        assert ok is False
        assert detail == (
            "no installed plugin decodes JPEG 2000 Image Compression (Lossless Only): "
            "pylibjpeg: requires pylibjpeg-openjpeg; gdcm: requires gdcm"
        )

    def test_no_syntax(self) -> None:
        assert decodable(None)[0] is False
