"""Write a test dataset in any transfer syntax the installed codecs can *encode*.

pydicom 3 encodes RLE, JPEG-LS and JPEG 2000 (``Dataset.compress``) and writes the
native syntaxes itself; JPEG baseline and JPEG lossless, the commonest syntaxes in
real archives, are encoded here with python-gdcm (``gdcm.ImageChangeTransferSyntax``
on the file written uncompressed). Used by the decode tests and ``benchmarks/decode.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from tests.factories import write_dataset

NATIVE_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
PYDICOM_LOSSLESS = (RLELossless, JPEGLSLossless, JPEG2000Lossless)
GDCM_LOSSLESS = (JPEGLosslessSV1, JPEGLossless)
LOSSLESS_SYNTAXES = NATIVE_SYNTAXES + PYDICOM_LOSSLESS + GDCM_LOSSLESS
#: Lossy syntaxes with the encoder options used here (JPEG baseline: 8-bit only).
LOSSY_OPTIONS: dict[UID, dict[str, Any]] = {
    JPEGLSNearLossless: {"jls_error": 2},
    JPEG2000: {"j2k_cr": [8]},
    JPEGBaseline8Bit: {},
}
LOSSY_SYNTAXES = tuple(LOSSY_OPTIONS)
_GDCM_SYNTAXES = {JPEGLosslessSV1, JPEGLossless, JPEGBaseline8Bit}


def write_encoded(ds: Dataset, path: Path, syntax: str | UID) -> Path:
    """Write ``ds`` (uncompressed, as built by ``make_image_dataset``) to ``path`` in ``syntax``."""
    syntax = UID(syntax)
    if syntax in _GDCM_SYNTAXES:
        return _write_with_gdcm(ds, path, syntax)
    if syntax in PYDICOM_LOSSLESS or syntax in LOSSY_OPTIONS:
        ds = copy.deepcopy(ds)  # Dataset.copy() shares the elements
        ds.compress(syntax, **LOSSY_OPTIONS.get(syntax, {}))
        return write_dataset(ds, path)
    ds = copy.deepcopy(ds)  # Dataset.copy() shares the elements
    if syntax == ExplicitVRBigEndian and ds.BitsAllocated > 8:
        # pydicom writes OW bytes as given: big endian needs them swapped first.
        words = np.frombuffer(ds.PixelData, dtype=f"<u{ds.BitsAllocated // 8}")
        ds.PixelData = words.byteswap().tobytes()
    ds.file_meta.TransferSyntaxUID = syntax
    return write_dataset(ds, path)


def _write_with_gdcm(ds: Dataset, path: Path, syntax: UID) -> Path:
    import gdcm

    source = write_dataset(ds, path.with_suffix(".uncompressed.dcm"))
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        raise RuntimeError(f"gdcm cannot read {source}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(syntax))))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"gdcm cannot encode {syntax.name}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"gdcm cannot write {path}")
    source.unlink()
    return path
