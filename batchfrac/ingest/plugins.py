"""Which pydicom decoder plugin decodes a transfer syntax, and which is fastest.

pydicom decodes only uncompressed pixel data by itself; compressed syntaxes need an
installed plugin (pylibjpeg, gdcm, pyjpegls, pillow, and our :mod:`batchfrac.ingest.ljpeg`).
:func:`pixel_decoder` tells ``decode`` and ``doctor`` alike whether one is available (and
why not); :func:`preferred_plugin` names the fastest measured on radiographs
(``benchmarks/decode.py``), and :func:`plugin_order` the order decode tries them in:
the preferred one, then pydicom's own order, without the :data:`LAST_RESORT_PLUGINS`
unless nothing else can decode the syntax.
"""

from __future__ import annotations

from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from . import ljpeg

_J2K_SYNTAXES = (JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K)

#: Fastest plugin per transfer syntax, when installed (else pydicom's order, gdcm last):
#: per 2000 x 2300 12-bit frame on one core, JPEG-LS 110 ms (CharLS) against 190 (gdcm),
#: lossless JPEG 40 ms (libjpeg-turbo) against 150 (gdcm), RLE 45 ms (pylibjpeg-rle)
#: against 340 (pydicom's own). JPEG 2000 and HTJ2K go to pylibjpeg-openjpeg, not for
#: speed but because gdcm aborts the process on some corrupt codestreams (see
#: :data:`ALWAYS_LAST_RESORT`).
PREFERRED_PLUGINS: dict[str, str] = {
    JPEGLSLossless: "pyjpegls",
    JPEGLSNearLossless: "pyjpegls",
    JPEGLossless: ljpeg.PLUGIN,
    JPEGLosslessSV1: ljpeg.PLUGIN,
    RLELossless: "pylibjpeg",
    **{syntax: "pylibjpeg" for syntax in _J2K_SYNTAXES},
}
#: Plugins tried only when no other plugin for the syntax is installed, because they
#: turn a corrupt frame into something worse than an error. python-gdcm ends the whole
#: process (an uncaught C++ exception, SIGABRT) on some corrupt JPEG 2000 frames and on
#: some baseline JPEG frames with a flipped bit, where pylibjpeg, Pillow and CharLS raise
#: an ordinary error: it is the last resort for every syntax. pydicom's RLE decoder cuts
#: a segment that decodes to more than Rows x Columns down to size (with a warning), so
#: a stream larger than its header, or an overlong run, passes as an image;
#: pylibjpeg-rle refuses both.
ALWAYS_LAST_RESORT = frozenset({"gdcm"})
LAST_RESORT_PLUGINS: dict[str, frozenset[str]] = {RLELossless: frozenset({"pydicom"})}
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


def plugin_order(decoder: Decoder, samples_per_pixel: int) -> tuple[str, ...]:
    """The installed plugins decode tries on a frame, in order: the preferred one, then
    pydicom's order; the :data:`LAST_RESORT_PLUGINS` only when no other is installed.
    Empty for native (uncompressed) syntaxes, which need no plugin."""
    if decoder.is_native:
        return ()
    preferred = preferred_plugin(decoder, samples_per_pixel)
    installed = [preferred] if preferred else []
    for plugin in decoder.available_plugins:
        if plugin == ljpeg.PLUGIN and samples_per_pixel != 1:
            continue  # greyscale only: it would only fail
        if plugin not in installed:
            installed.append(plugin)
    last_resort = LAST_RESORT_PLUGINS.get(decoder.UID, frozenset()) | ALWAYS_LAST_RESORT
    first_choice = tuple(plugin for plugin in installed if plugin not in last_resort)
    return first_choice or tuple(installed)
