"""A pydicom decoding plugin for lossless JPEG (process 14) on libjpeg-turbo, via imagecodecs.

Radiograph archives are full of *JPEG Lossless, Non-Hierarchical* (1.2.840.10008.1.2.4.57)
and its *First-Order Prediction* variant (1.2.840.10008.1.2.4.70). Of pydicom's plugins,
gdcm and pylibjpeg-libjpeg decode a 2000 x 2300 12-bit frame in 150-180 ms on one core;
libjpeg-turbo 3 (which gained lossless JPEG for 2-16 bit samples) decodes it in about 40 ms,
bit for bit the same values. It reaches Python through imagecodecs' ``jpeg8_decode``.

Only single-component frames are taken: libjpeg-turbo may colour-convert
multi-component lossless frames, so those raise here and :mod:`batchfrac.ingest.decode` falls
back to pydicom's own plugin order. The module follows pydicom's decoder plugin
interface (``DECODER_DEPENDENCIES``, ``is_available``, ``_decode_frame``);
:func:`register` adds it to pydicom's lossless JPEG decoders under :data:`PLUGIN`.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from pydicom import uid
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import DecodeRunner

__all__ = ["PLUGIN", "SYNTAXES", "decode", "register"]

#: Label of this plugin in pydicom's decoders (``decoding_plugin=PLUGIN``).
PLUGIN = "imagecodecs"
#: Transfer syntaxes it decodes.
SYNTAXES = (uid.JPEGLossless, uid.JPEGLosslessSV1)

DECODER_DEPENDENCIES = {syntax: ("numpy", "imagecodecs") for syntax in SYNTAXES}


@cache
def is_available(syntax: str) -> bool:
    """Whether imagecodecs is installed with its libjpeg-turbo codec, for ``syntax``."""
    if syntax not in SYNTAXES:
        return False
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(imagecodecs.JPEG8.available)


def decode(src: bytes, rows: int, columns: int) -> np.ndarray:
    """Stored values of one greyscale lossless JPEG frame of ``rows`` x ``columns``
    (uint8 or uint16, native byte order); raises ``ValueError`` for another shape."""
    import imagecodecs

    arr: np.ndarray = imagecodecs.jpeg8_decode(src)
    if arr.ndim != 2:
        raise ValueError(f"{PLUGIN}: expected one component, the frame decoded to {arr.shape}")
    if arr.shape != (rows, columns):
        raise ValueError(
            f"{PLUGIN}: the frame is {arr.shape[0]} x {arr.shape[1]}, "
            f"the data set says {rows} x {columns}"
        )
    return arr


def _decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """Stored values of one greyscale lossless JPEG frame, native byte order, as bytes."""
    if runner.samples_per_pixel != 1:
        raise ValueError(f"{PLUGIN}: only single-component lossless JPEG frames are decoded")
    arr = decode(src, runner.rows, runner.columns)
    runner.set_option("bits_allocated", 8 * arr.dtype.itemsize)
    return arr.tobytes()


@cache
def register() -> bool:
    """Add this plugin to pydicom's lossless JPEG decoders (once); whether it is usable."""
    for syntax in SYNTAXES:
        get_decoder(syntax).add_plugin(PLUGIN, (__name__, "_decode_frame"))
    return is_available(SYNTAXES[0])
