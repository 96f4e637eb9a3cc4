"""Display transforms: decoded stored values -> grey float32 image in ``[0, 1]``, bone bright.

Pure array -> array functions in the order of the DICOM grayscale pipeline (PS3.4
N.2.1): stored values -> **modality LUT** (PS3.3 C.11.1) -> **VOI LUT** or window
(C.11.2) -> **MONOCHROME1 inversion** (the presentation step, C.7.6.3.1.2), and
**colour -> grey** for the colour photometric interpretations. Like pydicom's
``pixels/processing.py`` they read the attributes they act on from a ``Dataset``;
unlike pydicom's ``apply_modality_lut``/``apply_voi_lut`` they return float32 (a
radiograph is 5 Mpixel: float64 doubles the memory and the time) and every step
knows its *output range*, which is what maps the result onto ``[0, 1]`` without
looking at the image content. Palette colour is expanded with pydicom's
``apply_color_lut``.

A malformed attribute that makes an image undisplayable raises
``FileRejected(decode_error)`` naming it: a rescale or window value that is not a
finite number (``NaN``, ``inf``, ``ab.c``), several values where one is required, a
LUT that is no LUT. A well-formed but unusable window (width out of range for its
function) is ignored with a debug log, as DICOM viewers do, and the output range is
used instead.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut

from ..enums import Reason
from ..errors import FileRejected
from .image_pixel import attribute_value, tag_name

logger = logging.getLogger(__name__)

#: ITU-R BT.601 luma weights: the Y of DICOM's YBR_FULL (PS3.3 C.7.6.3.1.2).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Integer dtypes OpenCV's arithmetic reads (in native byte order; not uint32, int64).
_OPENCV_INTEGERS = frozenset(np.dtype(t) for t in ("u1", "i1", "u2", "i2", "i4"))
# What converting a malformed LUT Descriptor or LUT Data raises.
_LUT_ERRORS = (TypeError, ValueError, OverflowError, IndexError, BytesLengthException)


class ValueRange(NamedTuple):
    """The closed range ``[low, high]`` a transform can output (not what an image uses)."""

    low: float
    high: float


@dataclass(frozen=True)
class LookupTable:
    """One LUT item of (0028,3000) *Modality LUT Sequence* or (0028,3010) *VOI LUT Sequence*.

    ``first_mapped`` is the input value mapped to ``values[0]`` (the 2nd value of
    (0028,3002) *LUT Descriptor*); inputs below it map to the first entry, inputs
    past the end to the last (PS3.3 C.11.1.1.1).
    """

    first_mapped: int
    values: np.ndarray

    @property
    def output_range(self) -> ValueRange:
        """The LUT's own output extent, ``[min(values), max(values)]``.

        Taken from the LUT Data rather than from the descriptor's bit depth because
        a 16-bit descriptor with 12-bit data is a common vendor quirk; either way it
        is a property of the LUT, the same for every image that carries it.
        """
        return ValueRange(float(self.values.min()), float(self.values.max()))

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """Map ``arr`` (rounded to integers) through the table; returns the table's dtype."""
        index = np.rint(arr) if arr.dtype.kind == "f" else arr.astype(np.int64)
        index = np.clip(index - self.first_mapped, 0, len(self.values) - 1)
        return self.values[index.astype(np.intp)]


def stored_range(ds: Dataset) -> ValueRange:
    """Range of the stored values: (0028,0101) *Bits Stored*, (0028,0103) *Pixel Representation*."""
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 1:
        return ValueRange(-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    return ValueRange(0.0, 2.0**bits - 1)


def read_lut(item: Dataset, ds: Dataset) -> LookupTable:
    """Read a LUT item: (0028,3002) *LUT Descriptor* and (0028,3006) *LUT Data*.

    LUT Data read as OW bytes are 16-bit words in the data set's byte order.
    """
    if not isinstance(item, Dataset):
        raise FileRejected(Reason.DECODE_ERROR, f"LUT item is {type(item).__name__}, no item")
    descriptor_value = attribute_value(item, "LUTDescriptor")
    data = attribute_value(item, "LUTData")
    if descriptor_value is None or data is None:
        raise FileRejected(Reason.DECODE_ERROR, "LUT item without LUT Descriptor or LUT Data")
    try:
        descriptor = [int(v) for v in np.atleast_1d(descriptor_value)]
        if isinstance(data, bytes):
            little_endian = ds.original_encoding[1] is not False
            values = np.frombuffer(data[: len(data) // 2 * 2], "<u2" if little_endian else ">u2")
        else:
            values = np.atleast_1d(np.asarray(data, dtype=np.int64))
    except _LUT_ERRORS as exc:
        raise FileRejected(Reason.DECODE_ERROR, f"unreadable LUT: {exc}") from exc
    if len(descriptor) != 3 or values.ndim != 1 or not len(values):
        raise FileRejected(
            Reason.DECODE_ERROR, f"LUT Descriptor {descriptor[:4]} needs 3 values and LUT Data"
        )
    entries = descriptor[0] or 2**16  # PS3.3 C.11.1.1.1: 0 means 65536
    if len(values) < entries:
        raise FileRejected(
            Reason.DECODE_ERROR,
            f"LUT Data has {len(values)} entries, its LUT Descriptor announces {entries}",
        )
    return LookupTable(descriptor[1], values[:entries].astype(np.int64))


def modality_lut(arr: np.ndarray, ds: Dataset) -> tuple[np.ndarray, ValueRange]:
    """Apply the modality transform; return the values and the transform's output range.

    The first item of (0028,3000) *Modality LUT Sequence* if present, else
    (0028,1053) *Rescale Slope* and (0028,1052) *Rescale Intercept*, else identity.
    The output range is the LUT's, or the stored range through the rescale.
    Values are float32, except for the identity, which returns ``arr`` itself.
    """
    if (item := _first_item(ds, "ModalityLUTSequence")) is not None:
        lut = read_lut(item, ds)
        return lut.apply(arr).astype(np.float32), lut.output_range
    slope, intercept, value_range = _rescale(ds)
    if slope is None or intercept is None:
        return arr, value_range  # identity: later steps convert to float32
    values = arr.astype(np.float32)
    if slope != 1.0:
        values *= slope
    if intercept != 0.0:
        values += intercept
    return values, value_range


def _rescale(ds: Dataset) -> tuple[float | None, float | None, ValueRange]:
    """(0028,1053) *Rescale Slope*, (0028,1052) *Rescale Intercept* (``None`` when either
    is absent: the identity) and the range they map the stored values to."""
    low, high = stored_range(ds)
    slope, intercept = _number(ds, "RescaleSlope", first=False), _number(ds, "RescaleIntercept")
    if slope is None or intercept is None:
        return None, None, ValueRange(low, high)
    if slope == 0:
        raise FileRejected(
            Reason.DECODE_ERROR, "(0028,1053) Rescale Slope 0 maps every pixel to one value"
        )
    ends = sorted((low * slope + intercept, high * slope + intercept))
    if max(abs(ends[0]), abs(ends[1])) > _FLOAT32_MAX:
        raise FileRejected(
            Reason.DECODE_ERROR,
            f"(0028,1053) Rescale Slope {slope} and (0028,1052) Rescale Intercept {intercept} "
            "take the stored values out of the float32 range",
        )
    return slope, intercept, ValueRange(ends[0], ends[1])


def to_unit(arr: np.ndarray, value_range: ValueRange) -> np.ndarray:
    """Map ``value_range`` linearly onto ``[0, 1]`` (clipped); a new float32 array."""
    low, high = value_range
    if high <= low:
        return np.zeros(np.shape(arr), dtype=np.float32)
    out = np.subtract(arr, np.float32(low), dtype=np.float32)
    out *= np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def window_is_valid(width: float, function: str = "LINEAR") -> bool:
    """Whether (0028,1051) *Window Width* is allowed for this *VOI LUT Function*."""
    return width >= 1 if function.upper() == "LINEAR" else width > 0


def window(arr: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The (0028,1056) *VOI LUT Function* with output range ``[0, 1]`` (PS3.3 C.11.2.1.2-3).

    ``LINEAR`` (width >= 1), ``LINEAR_EXACT`` and ``SIGMOID`` (width > 0); returns
    a new float32 array. Raises ``ValueError`` for an unknown function or a width
    out of range (see :func:`window_is_valid`).
    """
    function = function.upper()
    if function not in _VOI_FUNCTIONS:
        raise ValueError(f"unknown VOI LUT Function {function!r}, expected one of {_VOI_FUNCTIONS}")
    if not window_is_valid(width, function):
        raise ValueError(f"Window Width {width} is out of range for VOI LUT Function {function}")
    if function == "SIGMOID":
        out = np.subtract(arr, np.float32(center), dtype=np.float32)
        out *= np.float32(-4.0 / width)
        np.clip(out, -80.0, 80.0, out=out)  # float32 exp overflows past ~88
        np.exp(out, out=out)
        out += 1.0
        return np.reciprocal(out, out=out)
    low, span = _linear_bounds(center, width, function)
    if span == 0:
        return np.greater(arr, low).astype(np.float32)
    return to_unit(arr, ValueRange(low, low + span))


def _linear_bounds(center: float, width: float, function: str) -> tuple[float, float]:
    """``(low, span)``: the window maps ``[low, low + span]`` onto ``[0, 1]`` (0: a step)."""
    if function == "LINEAR_EXACT":
        return center - width / 2, width
    # C.11.2.1.2.1: x <= c - 0.5 - (w-1)/2 -> min; x > c - 0.5 + (w-1)/2 -> max.
    return center - 0.5 - (width - 1) / 2, width - 1


def voi_lut(arr: np.ndarray, ds: Dataset, modality_range: ValueRange) -> np.ndarray:
    """Apply the VOI transform to modality values; return float32 in ``[0, 1]``.

    The first item of (0028,3010) *VOI LUT Sequence* (normalised by the LUT's output
    range), else the first value of (0028,1050) *Window Center* / (0028,1051)
    *Window Width* (the first is the one the modality recommends; later values are
    alternatives) with (0028,1056) *VOI LUT Function*, else ``modality_range`` onto
    ``[0, 1]``. A window whose width is invalid for its function is ignored.
    """
    if (item := _first_item(ds, "VOILUTSequence")) is not None:
        lut = read_lut(item, ds)
        return to_unit(lut.apply(arr), lut.output_range)
    chosen = _window_attributes(ds)
    if chosen is not None:
        return window(arr, *chosen)
    return to_unit(arr, modality_range)


def _window_attributes(ds: Dataset) -> tuple[float, float, str] | None:
    """The first (0028,1050) *Window Center*, (0028,1051) *Window Width* and the (0028,1056)
    *VOI LUT Function* (``LINEAR`` when absent or unknown); ``None`` without a window or
    when its width is invalid for its function."""
    center, width = _number(ds, "WindowCenter"), _number(ds, "WindowWidth")
    if center is None or width is None:
        return None
    function = str(attribute_value(ds, "VOILUTFunction") or "LINEAR").strip().upper()
    if function not in _VOI_FUNCTIONS:
        logger.debug("unknown VOI LUT Function %r, using LINEAR", function)
        function = "LINEAR"
    if window_is_valid(width, function):
        return center, width, function
    logger.debug("ignoring Window Width %s, invalid for %s", width, function)
    return None


def grey_to_display(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """One MONOCHROME1/2 frame of stored values -> float32 ``[0, 1]``, bone bright.

    Modality LUT, then VOI, then MONOCHROME1 inversion as ``1 - y``. When all three are
    linear (no LUT sequence, a rescale or none, a ``LINEAR``/``LINEAR_EXACT`` window or
    none) they are one affine map, applied in one pass (:func:`_affine_display`).
    """
    fused = _affine_display(arr, ds)
    if fused is not None:
        return fused
    values, modality_range = modality_lut(arr, ds)
    out = voi_lut(values, ds, modality_range)
    # MONOCHROME1 is inverted only now, after VOI, and against the VOI *output* range
    # (here [0, 1]): Window Center/Width and VOI LUTs are defined on the stored
    # (min = white) values, so inverting first would need the window inverted too;
    # and inverting against the range rather than the image's own maximum keeps a
    # given stored value on the same grey in every image (a collimator edge or one
    # hot pixel would otherwise shift all the greys), which makes MONOCHROME1 and
    # MONOCHROME2 encodings of the same anatomy decode to the same image.
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        np.subtract(np.float32(1.0), out, out=out)
    return out


def _affine_display(arr: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """:func:`grey_to_display` of an integer frame whose transforms are all linear, as
    ``clip(arr * scale + offset, 0, 1)`` in one OpenCV pass (4 ms against 9-10 ms for the
    three steps on a 5 Mpixel frame; equal within float32 rounding, 1e-6 on ``[0, 1]``);
    ``None`` when they are not (or the image is not 2-D integers OpenCV reads).

    Reads and checks the attributes in the order of the steps, so a malformed one is
    the same ``decode_error`` either way.
    """
    if arr.ndim != 2 or arr.dtype.newbyteorder("=") not in _OPENCV_INTEGERS:
        return None
    if _first_item(ds, "ModalityLUTSequence") is not None:
        return None
    slope, intercept, modality_range = _rescale(ds)
    if _first_item(ds, "VOILUTSequence") is not None:
        return None
    chosen = _window_attributes(ds)
    if chosen is None:
        low, span = modality_range.low, modality_range.high - modality_range.low
    elif chosen[2] == "SIGMOID":
        return None
    else:
        low, span = _linear_bounds(*chosen)
    if span <= 0:
        return None  # a step or an empty range: the general path's special cases
    if slope is None or intercept is None:
        slope, intercept = 1.0, 0.0
    scale, offset = slope / span, (intercept - low) / span
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        scale, offset = -scale, 1.0 - offset
    # x * scale + offset stays finite in float32 for every x of the dtype, so no NaN
    # can appear, and the clip may be OpenCV's (which maps NaN to 0).
    if not abs(scale) * 2.0**32 + abs(offset) < _FLOAT32_MAX:
        return None
    src = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))  # big endian swapped
    out = cv2.addWeighted(src, scale, src, 0.0, offset, dtype=cv2.CV_32F)
    cv2.threshold(out, 1.0, 1.0, cv2.THRESH_TRUNC, dst=out)
    cv2.threshold(out, 0.0, 0.0, cv2.THRESH_TOZERO, dst=out)
    return out


def colour_to_grey(rgb: np.ndarray, max_value: float) -> np.ndarray:
    """An (rows, columns, 3) RGB frame -> float32 luma in ``[0, 1]`` (BT.601 weights)."""
    luma = rgb.astype(np.float32) @ LUMA_WEIGHTS
    return to_unit(luma, ValueRange(0.0, max_value))


def palette_to_grey(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """A PALETTE COLOR frame -> float32 luma via the (0028,1101-1203) palette LUTs."""
    try:
        rgb = apply_color_lut(arr, ds)
    except (*_LUT_ERRORS, KeyError, AttributeError) as exc:  # missing or inconsistent LUTs
        raise FileRejected(Reason.DECODE_ERROR, f"palette colour LUT: {exc}") from exc
    return colour_to_grey(rgb, float(np.iinfo(rgb.dtype).max))


def to_display(arr: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """One decoded frame -> 2-D float32 ``[0, 1]`` grey image, bone bright.

    ``photometric`` is the interpretation of ``arr`` *as decoded* (pydicom converts
    YBR_FULL/YBR_FULL_422 to RGB), ``ds`` the data set it came from. Raises
    ``FileRejected(decode_error)`` for a photometric interpretation we cannot show.
    """
    photometric = photometric.strip().upper()
    if photometric in _MONOCHROME:
        return grey_to_display(arr, ds)
    if photometric == "RGB":
        return colour_to_grey(arr, stored_range(ds).high)
    if photometric in ("YBR_FULL", "YBR_FULL_422"):  # left unconverted: Y is the luma
        return to_unit(arr[..., 0], stored_range(ds))
    if photometric == "PALETTE COLOR":
        return palette_to_grey(arr, ds)
    raise FileRejected(
        Reason.DECODE_ERROR,
        f"Photometric Interpretation {photometric} is not supported, expected "
        "MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422 or PALETTE COLOR",
    )


def _number(ds: Dataset, keyword: str, *, first: bool = True) -> float | None:
    """A DS attribute as one finite float, ``None`` when absent or empty.

    ``first``: take the first of several values (Window Center/Width list alternatives,
    the first being the recommended one); otherwise several values are an error
    (Rescale Slope/Intercept have one). Raises ``FileRejected(decode_error)`` for a
    value that is not a finite number.
    """
    value: Any = attribute_value(ds, keyword)
    if isinstance(value, (MultiValue, list, tuple)):
        if len(value) > 1 and not first:
            shown = "\\".join(str(item) for item in list(value)[:4])
            raise FileRejected(
                Reason.DECODE_ERROR,
                f"{tag_name(keyword)} has {len(value)} values ({shown}), expected 1",
            )
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value)[:40]
        raise FileRejected(
            Reason.DECODE_ERROR, f"{tag_name(keyword)} {shown} is not a number"
        ) from None
    if not math.isfinite(number):
        raise FileRejected(Reason.DECODE_ERROR, f"{tag_name(keyword)} {number} is not finite")
    return number


def _first_item(ds: Dataset, keyword: str) -> Any:
    """The first item of a LUT sequence, ``None`` when absent or empty."""
    value: Any = attribute_value(ds, keyword)
    if value is None or value == "":
        return None
    if isinstance(value, (bytes, str, int, float)) or not hasattr(value, "__len__"):
        raise FileRejected(
            Reason.DECODE_ERROR, f"{tag_name(keyword)} is {type(value).__name__}, no sequence"
        )
    return value[0] if len(value) else None
