"""Decoder lookup: which installed plugin decodes a transfer syntax, and why not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLSLossless,
    RLELossless,
)

import batchfrac.ingest.plugins as plugins_module
from batchfrac.ingest.plugins import decodable, plugin_order, transfer_syntax_name


def fake_decoder(uid: str, plugins: tuple[str, ...]) -> SimpleNamespace:
    return SimpleNamespace(UID=UID(uid), is_native=False, available_plugins=plugins)


class TestPluginOrder:
    @pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEG2000, HTJ2K])
    def test_gdcm_never_decodes_jpeg_2000_while_another_plugin_is_installed(
        self, syntax: str
    ) -> None:
        decoder = fake_decoder(syntax, ("gdcm", "pillow", "pylibjpeg"))
        assert plugin_order(decoder, 1) == ("pylibjpeg", "pillow")  # type: ignore[arg-type]
        only_pillow = fake_decoder(syntax, ("gdcm", "pillow"))
        assert plugin_order(only_pillow, 1) == ("pillow",)  # type: ignore[arg-type]

    def test_gdcm_is_the_last_resort_for_jpeg_2000(self) -> None:
        decoder = fake_decoder(JPEG2000Lossless, ("gdcm",))
        assert plugin_order(decoder, 1) == ("gdcm",)  # type: ignore[arg-type]

    def test_pydicoms_rle_decoder_only_without_pylibjpeg_rle(self) -> None:
        both = fake_decoder(RLELossless, ("pydicom", "pylibjpeg"))
        assert plugin_order(both, 1) == ("pylibjpeg",)  # type: ignore[arg-type]
        own = fake_decoder(RLELossless, ("pydicom",))
        assert plugin_order(own, 1) == ("pydicom",)  # type: ignore[arg-type]

    def test_preferred_first_then_pydicoms_order(self) -> None:
        decoder = fake_decoder(JPEGLSLossless, ("gdcm", "pyjpegls", "pylibjpeg", "pillow"))
        assert plugin_order(decoder, 1) == ("pyjpegls", "pylibjpeg", "pillow")  # type: ignore[arg-type]

    @pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEGLSLossless, JPEGLossless])
    def test_gdcm_is_the_last_resort_for_every_syntax(self, syntax: str) -> None:
        # it aborts the process on some corrupt baseline JPEG frames too (hostile.gdcm_abort_jpeg)
        assert plugin_order(fake_decoder(syntax, ("gdcm", "pylibjpeg")), 1) == ("pylibjpeg",)  # type: ignore[arg-type]
        assert plugin_order(fake_decoder(syntax, ("gdcm",)), 1) == ("gdcm",)  # type: ignore[arg-type]

    def test_native_syntaxes_need_no_plugin(self) -> None:
        native = SimpleNamespace(UID=UID(ExplicitVRLittleEndian), is_native=True)
        assert plugin_order(native, 1) == ()  # type: ignore[arg-type]


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
