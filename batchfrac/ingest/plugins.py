"""Which pydicom decoder plugin decodes a transfer syntax, and which is fastest.

pydicom decodes only uncompressed pixel data by itself; compressed syntaxes need an
installed plugin (pylibjpeg, gdcm, pyjpegls, pillow, and our :mod:`batchfrac.ingest.ljpeg`).
:func:`pixel_decoder` tells ``decode`` and ``doctor`` alike whether one is available (and
why not); :func:`preferred_plugin` names the fastest measured on radiographs
(``benchmarks/decode.py``), with pydicom's own order as the fallback.
"""

from __future__ import annotations

from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    UID,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from . import ljpeg

#: Fastest plugin per transfer syntax, when installed (else pydicom's order, gdcm first):
#: per 2000 x 2300 12-bit frame on one core, JPEG-LS 110 ms (CharLS) against 190 (gdcm),
#: lossless JPEG 40 ms (libjpeg-turbo) against 150 (gdcm).
PREFERRED_PLUGINS: dict[str, str] = {
    JPEGLSLossless: "pyjpegls",
    JPEGLSNearLossless: "pyjpegls",
    JPEGLossless: ljpeg.PLUGIN,
    JPEGLosslessSV1: ljpeg.PLUGIN,
}
ljpeg.register()
ljpeg.register()


def transfer_syntax_name(uid: str | None) -> str:
    """Human name of a (0002,0010) *Transfer Syntax UID*, ``"unknown"`` when unregistered."""
    if not uid:
        return "unknown"
    syntax = UID(uid)
    return syntax.name if syntax.is_transfer_syntax else "unknown"


def pixel_decoder(transfer_syntax_uid: str) -> tuple[Decoder | None, str]:
    """pydicom's decoder for a syntax, if an installed plugin can run it.

    Returns ``(decoder, plugins)`` with the available plugin names (``"native"`` for
    uncompressed syntaxes), or ``(None, why)``: pydicom has no decoder for the syntax,
    or each of its plugins misses a dependency (as pydicom reports them).
    """
    name = transfer_syntax_name(transfer_syntax_uid)
    try:
        decoder = get_decoder(UID(transfer_syntax_uid))
    except (NotImplementedError, ValueError):
        return None, f"pydicom has no pixel data decoder for {name} ({transfer_syntax_uid})"
    if decoder.is_available:
        return decoder, ", ".join(decoder.available_plugins) or "native"
    missing = "; ".join(decoder.missing_dependencies) or "no plugin is installed"
    return None, f"no installed plugin decodes {name}: {missing}"


def decodable(transfer_syntax_uid: str | None) -> tuple[bool, str]:
    """Whether the installed pydicom decoder plugins can decode pixel data in this syntax:
    ``(True, plugins)`` or ``(False, why)`` (see :func:`pixel_decoder`)."""
    if not transfer_syntax_uid:
        return False, "no transfer syntax"
    decoder, detail = pixel_decoder(transfer_syntax_uid)
    return decoder is not None, detail


def preferred_plugin(decoder: Decoder, samples_per_pixel: int) -> str:
    """The :data:`PREFERRED_PLUGINS` entry for ``decoder`` if installed, else ``""``."""
    plugin = PREFERRED_PLUGINS.get(decoder.UID, "")
    if plugin == ljpeg.PLUGIN and samples_per_pixel != 1:
        return ""
    return plugin if plugin in decoder.available_plugins else ""
