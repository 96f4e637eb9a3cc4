"""The *Image Pixel* module (PS3.3 C.7.6.3) of a data set, validated before any pixel is read.

Every value decoding sizes or interprets pixels by is read once here, as one value of
the expected type and range, so that a malformed header is a ``decode_error`` naming
the attribute (``"(0028,0002) SamplesPerPixel has 2 values (1\\3), expected 1"``)
rather than whatever a codec makes of it. :func:`attribute_value` is the one place a
raw value is converted (pydicom converts lazily: a US of one byte raises only then).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from ..enums import Reason
from ..errors import FileRejected
from .capture import describe

__all__ = ["ImagePixel", "attribute_value", "read_image_pixel", "tag_name"]

# Type 1 attributes of the Image Pixel module that decoding cannot do without.
_REQUIRED = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
)
_BITS_ALLOCATED = (1, 8, 16, 32)
_SAMPLES = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
    "YBR_ICT": 3,
    "YBR_RCT": 3,
    "YBR_PARTIAL_420": 3,
}


@dataclass(frozen=True, slots=True)
class ImagePixel:
    """The Image Pixel module values of one data set, each a single valid value.

    (0028,0010) *Rows*, (0028,0011) *Columns*, (0028,0002) *Samples per Pixel*,
    (0028,0004) *Photometric Interpretation* (stripped, upper case), (0028,0100) *Bits
    Allocated*, (0028,0101) *Bits Stored*, (0028,0103) *Pixel Representation*,
    (0028,0006) *Planar Configuration* (0 when absent) and (0028,0008) *Number of Frames*
    (1 when absent or not positive, as pydicom reads it).
    """

    rows: int
    columns: int
    samples_per_pixel: int
    photometric_interpretation: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    planar_configuration: int
    number_of_frames: int

    @property
    def frame_pixels(self) -> int:
        """Samples per frame: Rows x Columns x Samples per Pixel."""
        return self.rows * self.columns * self.samples_per_pixel

    @property
    def frame_bytes(self) -> int:
        """Bytes one frame decodes to (whole bytes per sample)."""
        return self.frame_pixels * -(-self.bits_allocated // 8)

    def options(self, transfer_syntax_uid: str, pixel_vr: str | None) -> dict[str, Any]:
        """pydicom's decoding options for a buffer that holds exactly one frame."""
        options: dict[str, Any] = {
            "transfer_syntax_uid": transfer_syntax_uid,
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "photometric_interpretation": self.photometric_interpretation,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "number_of_frames": 1,
            "pixel_keyword": "PixelData",
            "allow_excess_frames": False,
        }
        if self.samples_per_pixel > 1:
            options["planar_configuration"] = self.planar_configuration
        if pixel_vr:
            options["pixel_vr"] = pixel_vr
        return options


def read_image_pixel(ds: Dataset) -> ImagePixel:
    """Validate the Image Pixel module of ``ds``; raise ``FileRejected(decode_error)``
    naming the first attribute that is missing, multi-valued, of the wrong type, out of
    range, or inconsistent with another (Samples per Pixel with the photometric
    interpretation, Bits Stored with Bits Allocated)."""
    missing = [keyword for keyword in _REQUIRED if attribute_value(ds, keyword) in (None, "")]
    if missing:
        names = ", ".join(tag_name(keyword) for keyword in missing)
        raise FileRejected(Reason.DECODE_ERROR, f"missing Image Pixel attributes: {names}")
    photometric = _single(ds, "PhotometricInterpretation")
    pixel = ImagePixel(
        rows=_integer(ds, "Rows", 1, 0xFFFF),
        columns=_integer(ds, "Columns", 1, 0xFFFF),
        samples_per_pixel=_integer(ds, "SamplesPerPixel", 1, 3),
        photometric_interpretation=str(photometric).strip().upper(),
        bits_allocated=_integer(ds, "BitsAllocated", 1, 32),
        bits_stored=_integer(ds, "BitsStored", 1, 32),
        pixel_representation=_integer(ds, "PixelRepresentation", 0, 1),
        planar_configuration=_integer(ds, "PlanarConfiguration", 0, 1, default=0),
        number_of_frames=max(_integer(ds, "NumberOfFrames", None, None, default=1), 1),
    )
    _check_consistent(pixel)
    return pixel


def attribute_value(ds: Dataset, keyword: str, reason: Reason = Reason.DECODE_ERROR) -> Any:
    """``ds.get(keyword)``, or ``FileRejected(reason)`` naming the attribute when its raw
    value cannot be converted (wrong length for its VR, undecodable text...)."""
    try:
        return ds.get(keyword)
    except Exception as exc:  # noqa: BLE001 - any conversion failure belongs to the file
        raise FileRejected(reason, f"{tag_name(keyword)}: {describe(exc)}") from exc


def tag_name(keyword: str) -> str:
    """``"(0028,0010) Rows"`` for ``"Rows"``."""
    tag = Tag(keyword)
    return f"({tag.group:04X},{tag.element:04X}) {keyword}"


def _single(ds: Dataset, keyword: str) -> Any:
    """The one value of an attribute of VM 1; ``FileRejected`` when it has several."""
    value = attribute_value(ds, keyword)
    if isinstance(value, (MultiValue, list, tuple)):
        if len(value) != 1:
            shown = "\\".join(str(item) for item in list(value)[:4])
            raise FileRejected(
                Reason.DECODE_ERROR,
                f"{tag_name(keyword)} has {len(value)} values ({shown}), expected 1",
            )
        value = value[0]
    return value


def _integer(
    ds: Dataset, keyword: str, low: int | None, high: int | None, *, default: int | None = None
) -> int:
    value = _single(ds, keyword)
    if value in (None, "") and default is not None:
        return default
    try:
        if isinstance(value, (bytes, bytearray)):
            raise TypeError("undecoded bytes")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not a whole number")
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value)[:40]
        raise FileRejected(
            Reason.DECODE_ERROR, f"{tag_name(keyword)} {shown} is not an integer"
        ) from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise FileRejected(
            Reason.DECODE_ERROR, f"{tag_name(keyword)} {number} is outside {low}..{high}"
        )
    return number


def _check_consistent(pixel: ImagePixel) -> None:
    photometric, samples = pixel.photometric_interpretation, pixel.samples_per_pixel
    expected = _SAMPLES.get(photometric)
    if expected is None:
        known = ", ".join(_SAMPLES)
        raise FileRejected(
            Reason.DECODE_ERROR,
            f"(0028,0004) PhotometricInterpretation {photometric!r} is not one of {known}",
        )
    if samples != expected:
        raise FileRejected(
            Reason.DECODE_ERROR,
            f"(0028,0002) SamplesPerPixel {samples} does not fit (0028,0004) "
            f"PhotometricInterpretation {photometric}, which has {expected}",
        )
    if pixel.bits_allocated not in _BITS_ALLOCATED:
        raise FileRejected(
            Reason.DECODE_ERROR,
            f"(0028,0100) BitsAllocated {pixel.bits_allocated} is not one of "
            f"{', '.join(map(str, _BITS_ALLOCATED))}",
        )
    if pixel.bits_stored > pixel.bits_allocated:
        raise FileRejected(
            Reason.DECODE_ERROR,
            f"(0028,0101) BitsStored {pixel.bits_stored} exceeds (0028,0100) BitsAllocated "
            f"{pixel.bits_allocated}",
        )
