"""Write test images in the syntaxes :mod:`tests.encoders` cannot: JPEG Extended 12-bit
(1.2.840.10008.1.2.4.51) and HTJ2K Lossless (1.2.840.10008.1.2.4.201), both encoded with
imagecodecs (libjpeg-turbo 3 writes 12-bit SOF1; OpenJPH-compatible HTJ2K via openjpeg).

:data:`ALL_SYNTAXES` lists every transfer syntax batchfrac decodes that a test can write.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, HTJ2KLossless, JPEGExtended12Bit

from tests.encoders import LOSSLESS_SYNTAXES, LOSSY_SYNTAXES, write_encoded
from tests.factories import write_dataset
from tests.hostile_bytes import wrap_stream

IMAGECODECS_SYNTAXES = (JPEGExtended12Bit, HTJ2KLossless)
#: Every syntax batchfrac decodes that the installed encoders write: uncompressed
#: explicit/implicit/big endian/deflated, RLE, JPEG baseline/extended, JPEG lossless
#: 4.57/4.70, JPEG-LS lossless/near-lossless, JPEG 2000 lossless/lossy, HTJ2K lossless.
ALL_SYNTAXES: tuple[UID, ...] = LOSSLESS_SYNTAXES + LOSSY_SYNTAXES + IMAGECODECS_SYNTAXES


def encode_frame(pixels: np.ndarray, syntax: str) -> bytes:
    """One frame's codestream in an :data:`IMAGECODECS_SYNTAXES` syntax."""
    import imagecodecs

    if UID(syntax) == JPEGExtended12Bit:
        return bytes(imagecodecs.jpeg8_encode(pixels, level=95))
    if UID(syntax) == HTJ2KLossless:
        return bytes(imagecodecs.htj2k_encode(pixels))
    raise ValueError(f"not an imagecodecs syntax here: {syntax}")


def write_any(ds: Dataset, path: Path, syntax: str) -> Path:
    """Write ``ds`` (uncompressed, one grey frame) to ``path`` in one of :data:`ALL_SYNTAXES`."""
    if UID(syntax) not in IMAGECODECS_SYNTAXES:
        return write_encoded(ds, path, syntax)
    ds = copy.deepcopy(ds)
    stream = encode_frame(ds.pixel_array, syntax)
    return write_dataset(wrap_stream(ds, syntax, [stream]), path)
