"""The direct codec path: pydicom's values for plain greyscale frames, or it steps aside."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from rle.utils import encode_pixel_data

from batchfrac.errors import FileRejected
from batchfrac.ingest import direct
from batchfrac.ingest.frames import FrameDecoder, encapsulated
from batchfrac.ingest.image_pixel import ImagePixel
from batchfrac.ingest.plugins import plugin_order
from batchfrac.ingest.sources import open_pixel_source
from tests.encoders import write_encoded
from tests.factories import gradient_image, make_image_dataset

# An odd side, so no codec lines up by luck (not an odd pixel count: that aborts the
# 8-bit RLE encoder the tests write with).
SHAPE = (67, 46)
TAKEN = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEGLossless,
    JPEGLosslessSV1,
)


def pixel_module(bits_allocated: int = 16, bits_stored: int = 12, **changes: object) -> ImagePixel:
    pixel = ImagePixel(
        rows=SHAPE[0],
        columns=SHAPE[1],
        samples_per_pixel=1,
        photometric_interpretation="MONOCHROME2",
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=0,
        planar_configuration=0,
        number_of_frames=1,
    )
    return dataclasses.replace(pixel, **changes)


def first_frame(path: Path, syntax: UID) -> tuple[bytes, ImagePixel]:
    with open_pixel_source(path, True, syntax) as source:
        return next(iter(source.frames(1))), source.pixel


def through_pydicom(data: bytes, syntax: UID, plugin: str, pixel: ImagePixel) -> np.ndarray:
    decoder = get_decoder(syntax)
    buffer = data if decoder.is_native else encapsulated(data)
    options = {**pixel.options(syntax, None), "as_rgb": True}
    arr, _ = decoder.as_array(buffer, decoding_plugin=plugin, **options)
    return arr


@pytest.mark.parametrize("syntax", TAKEN, ids=lambda s: UID(s).name)
@pytest.mark.parametrize(
    ("bits", "photometric"), [(8, "MONOCHROME2"), (12, "MONOCHROME1"), (16, "MONOCHROME2")]
)
def test_a_plain_frame_decodes_to_pydicoms_values(
    tmp_path: Path, syntax: str, bits: int, photometric: str
) -> None:
    stored = gradient_image(*SHAPE, bits_stored=bits)
    stored = stored.astype(np.uint8) if bits == 8 else stored
    ds = make_image_dataset(stored, bits_stored=bits, photometric=photometric)
    path = write_encoded(ds, tmp_path / "image.dcm", syntax)
    data, pixel = first_frame(path, UID(syntax))
    plugin = plugin_order(get_decoder(UID(syntax)), 1)[0] if UID(syntax).is_encapsulated else ""
    assert direct.takes(syntax, plugin, pixel)
    got = direct.decode_plain(data, syntax, plugin, pixel)
    assert got is not None, "the shortcut stepped aside on a frame it takes"
    expected = through_pydicom(data, UID(syntax), plugin, pixel)
    assert got.dtype == expected.dtype and got.shape == SHAPE
    np.testing.assert_array_equal(got, expected)
    if UID(syntax) != JPEGLSNearLossless:
        np.testing.assert_array_equal(got, stored)


@pytest.mark.parametrize(
    ("syntax", "plugin"), [(ExplicitVRLittleEndian, ""), (RLELossless, "pylibjpeg")]
)
def test_junk_in_the_unused_high_bits_is_cleared_as_pydicom_clears_it(
    syntax: str, plugin: str
) -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 1 << 16, SHAPE, dtype=np.uint16)  # bits 12-15 are junk
    raw = values.tobytes()
    pixel = pixel_module(bits_stored=12)
    data = raw
    if plugin:
        data = encode_pixel_data(
            raw,
            rows=SHAPE[0],
            columns=SHAPE[1],
            samples_per_pixel=1,
            bits_allocated=16,
            byteorder="<",
        )
    got = direct.decode_plain(data, syntax, plugin, pixel)
    assert got is not None
    np.testing.assert_array_equal(got, values & 0x0FFF)
    np.testing.assert_array_equal(got, through_pydicom(data, UID(syntax), plugin, pixel))


def test_jpeg_ls_keeps_its_samples_as_pydicom_does(tmp_path: Path) -> None:
    """pydicom corrects no unused bits of JPEG-LS: Bits Stored under the stream's
    precision leaves the samples as the stream has them, here too."""
    stored = gradient_image(*SHAPE, bits_stored=12)
    path = write_encoded(
        make_image_dataset(stored, bits_stored=12), tmp_path / "a.dcm", JPEGLSLossless
    )
    data, pixel = first_frame(path, UID(JPEGLSLossless))
    narrower = dataclasses.replace(pixel, bits_stored=8)
    got = direct.decode_plain(data, JPEGLSLossless, "pyjpegls", narrower)
    assert got is not None and got.max() > 255
    np.testing.assert_array_equal(
        got, through_pydicom(data, UID(JPEGLSLossless), "pyjpegls", narrower)
    )


@pytest.mark.parametrize(
    ("syntax", "plugin", "changes"),
    [
        (ExplicitVRLittleEndian, "", {"pixel_representation": 1}),
        (ExplicitVRLittleEndian, "", {"bits_allocated": 32, "bits_stored": 32}),
        (ExplicitVRLittleEndian, "", {"bits_allocated": 1, "bits_stored": 1}),
        (ExplicitVRLittleEndian, "", {"samples_per_pixel": 3, "photometric_interpretation": "RGB"}),
        (ExplicitVRLittleEndian, "", {"photometric_interpretation": "PALETTE COLOR"}),
        (ExplicitVRBigEndian, "", {}),
        (JPEG2000Lossless, "pylibjpeg", {}),
        (RLELossless, "pydicom", {}),
        (JPEGLSLossless, "gdcm", {}),
    ],
)
def test_it_takes_only_plain_frames_of_codecs_it_knows(
    syntax: str, plugin: str, changes: dict[str, object]
) -> None:
    assert direct.takes(ExplicitVRLittleEndian, "", pixel_module())
    assert not direct.takes(syntax, plugin, pixel_module(**changes))  # type: ignore[arg-type]


def outcome(frame_decoder: FrameDecoder, data: bytes) -> tuple[str, object]:
    try:
        stored, photometric = frame_decoder(data, 0)
    except FileRejected as exc:
        return "rejected", (exc.reason, exc.detail)
    return "decoded", (stored.dtype.str, stored.tobytes(), photometric)


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEGLosslessSV1, RLELossless])
@pytest.mark.parametrize("cut", [3, 2**20], ids=["a third", "header only"])
def test_a_broken_stream_has_the_outcome_it_has_without_the_shortcut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syntax: str, cut: int
) -> None:
    """A cut stream is refused before any codec sees it (``truncated``) or fails in one:
    the same outcome with the shortcut as without."""
    stored = gradient_image(*SHAPE, bits_stored=12)
    path = write_encoded(make_image_dataset(stored, bits_stored=12), tmp_path / "a.dcm", syntax)
    data, pixel = first_frame(path, UID(syntax))
    broken = data[: max(len(data) // cut, 40)]
    frame_decoder = FrameDecoder(get_decoder(UID(syntax)), pixel)
    with_shortcut = outcome(frame_decoder, broken)
    monkeypatch.setattr(direct, "takes", lambda *args: False)
    without = outcome(FrameDecoder(get_decoder(UID(syntax)), pixel), broken)
    assert with_shortcut == without


def test_a_codec_error_steps_aside() -> None:
    pixel = pixel_module()
    assert (
        direct.decode_plain(b"\xff\xd8\xff\xf7 not a stream", JPEGLSLossless, "pyjpegls", pixel)
        is None
    )


def test_a_native_frame_of_the_wrong_length_steps_aside() -> None:
    pixel = pixel_module()
    assert (
        direct.decode_plain(
            b"\x00" * (SHAPE[0] * SHAPE[1] * 2 - 2), ExplicitVRLittleEndian, "", pixel
        )
        is None
    )
