"""Tests for batchfrac.decode: every transfer syntax the installed codecs can encode,
pydicom's bundled colour / palette / multi-frame files, the display rules, and each
way a file can fail (one class per function, scenario-named tests)."""

from __future__ import annotations

import copy
import dataclasses
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut
from pydicom.pixels.decoders import base as decoders_base
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from batchfrac import decode as decode_module
from batchfrac.decode import DecodePolicy, FramePolicy, decode
from batchfrac.display import LUMA_WEIGHTS
from batchfrac.enums import Reason
from batchfrac.errors import FileRejected
from batchfrac.header import read_header
from batchfrac.preprocess import PreprocessSpec, preprocess
from tests.encoders import LOSSLESS_SYNTAXES, LOSSY_OPTIONS, write_encoded
from tests.factories import gradient_image, make_image_dataset, write_dataset

# pydicom's bundled test files (available offline), named by what they exercise.
MR_SAME_IMAGE_SIX_SYNTAXES = (
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
)
RGB_RLE = "SC_rgb_rle.dcm"  # lossless reference of the SC_rgb_* picture
RGB_AS_YBR_FULL_JPEG = "SC_rgb_dcmtk_+eb+cy+s4.dcm"  # same picture, JPEG baseline YBR_FULL
RGB_AS_YBR_FULL_422_JPEG = "SC_rgb_dcmtk_+eb+cy+np.dcm"  # same picture, JPEG YBR_FULL_422
YBR_FULL_422_NATIVE = "SC_ybr_full_422_uncompressed.dcm"
PALETTE = "examples_palette.dcm"
RGB_RLE_TWO_FRAMES = "SC_rgb_rle_2frame.dcm"
YBR_JPEG_30_FRAMES = "examples_ybr_color.dcm"

SHAPE = (64, 48)
BITS = (8, 12, 16)
LOSSY_CASES = [
    pytest.param(syntax, bits, id=f"{syntax.keyword}-{bits}")
    for syntax in LOSSY_OPTIONS
    for bits in BITS
    if bits == 8 or syntax != JPEGBaseline8Bit  # JPEG baseline holds 8-bit samples only
]


def stored_image(bits: int) -> np.ndarray:
    img = gradient_image(*SHAPE, bits_stored=bits)
    return img.astype(np.uint8) if bits == 8 else img


def decode_file(path: Path, policy: DecodePolicy | None = None) -> list[np.ndarray]:
    return decode(path, read_header(path), policy or DecodePolicy())


def decode_one(path: Path) -> np.ndarray:
    (image,) = decode_file(path)
    return image


def bundled(name: str) -> Path:
    return Path(get_testdata_file(name))


class TestDecodePolicy:
    def test_defaults(self) -> None:
        policy = DecodePolicy()
        assert policy.max_pixels == 64_000_000 and policy.frames is FramePolicy.ALL

    def test_frames_string_becomes_the_enum(self) -> None:
        assert DecodePolicy(frames="first").frames is FramePolicy.FIRST

    def test_unknown_frames_policy_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="frames must be one of all, first"):
            DecodePolicy(frames="middle")

    def test_non_positive_cap_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="max_pixels"):
            DecodePolicy(max_pixels=0)


class TestDecodeTransferSyntaxes:
    @pytest.mark.parametrize("bits", BITS)
    @pytest.mark.parametrize("syntax", LOSSLESS_SYNTAXES, ids=lambda uid: UID(uid).keyword)
    def test_lossless_syntax_decodes_exactly_like_uncompressed(
        self, tmp_path: Path, syntax: UID, bits: int
    ) -> None:
        ds = make_image_dataset(stored_image(bits), bits_stored=bits)
        reference = decode_one(write_dataset(ds, tmp_path / "reference.dcm"))
        encoded = write_encoded(ds, tmp_path / "encoded.dcm", syntax)
        assert read_header(encoded).transfer_syntax_uid == syntax
        decoded = decode_one(encoded)
        assert decoded.dtype == np.float32 and decoded.shape == SHAPE
        np.testing.assert_array_equal(decoded, reference)
        np.testing.assert_allclose(reference, stored_image(bits) / (2**bits - 1), atol=1e-6)

    @pytest.mark.parametrize(("syntax", "bits"), LOSSY_CASES)
    def test_lossy_syntax_decodes_close_to_uncompressed(
        self, tmp_path: Path, syntax: UID, bits: int
    ) -> None:
        ds = make_image_dataset(stored_image(bits), bits_stored=bits)
        reference = decode_one(write_dataset(ds, tmp_path / "reference.dcm"))
        decoded = decode_one(write_encoded(ds, tmp_path / "encoded.dcm", syntax))
        error = np.abs(decoded - reference)
        if syntax == JPEGLSNearLossless:  # bounded by construction: NEAR = jls_error
            assert error.max() <= LOSSY_OPTIONS[syntax]["jls_error"] / (2**bits - 1) + 1e-6
        else:
            assert error.max() < 0.1 and error.mean() < 0.01
        assert error.max() > 0  # the codec really was lossy

    def test_bundled_mr_in_six_syntaxes_decodes_identically(self) -> None:
        images = [decode_one(bundled(name)) for name in MR_SAME_IMAGE_SIX_SYNTAXES]
        for image in images[1:]:
            np.testing.assert_array_equal(image, images[0])
        assert images[0].std() > 0.05

    def test_preamble_less_file_without_meta_decodes_like_the_normal_file(
        self, tmp_path: Path
    ) -> None:
        ds = make_image_dataset(stored_image(12))
        reference = decode_one(write_dataset(ds, tmp_path / "reference.dcm"))
        raw = copy.deepcopy(ds)
        del raw.file_meta
        raw.save_as(tmp_path / "raw.dcm", implicit_vr=True, little_endian=True)
        header = read_header(tmp_path / "raw.dcm")
        assert header.has_preamble is False
        np.testing.assert_array_equal(decode(tmp_path / "raw.dcm", header)[0], reference)


class TestDecodeColour:
    def test_rgb_becomes_bt601_luma(self) -> None:
        rgb = dcmread(bundled(RGB_RLE)).pixel_array
        expected = rgb.astype(np.float64) @ LUMA_WEIGHTS / 255
        np.testing.assert_allclose(decode_one(bundled(RGB_RLE)), expected, atol=1e-5)

    @pytest.mark.parametrize("name", [RGB_AS_YBR_FULL_JPEG, RGB_AS_YBR_FULL_422_JPEG])
    def test_ybr_jpeg_of_the_same_picture_matches_the_lossless_rgb(self, name: str) -> None:
        error = np.abs(decode_one(bundled(name)) - decode_one(bundled(RGB_RLE)))
        assert error.mean() < 0.01 and error.max() < 0.1

    def test_native_ybr_full_422_is_upsampled_to_full_size(self) -> None:
        ds = dcmread(bundled(YBR_FULL_422_NATIVE))
        image = decode_one(bundled(YBR_FULL_422_NATIVE))
        assert image.shape == (ds.Rows, ds.Columns)
        np.testing.assert_allclose(image, ds.pixel_array @ LUMA_WEIGHTS / 255, atol=1e-5)

    def test_palette_colour_becomes_the_luma_of_its_palette(self) -> None:
        ds = dcmread(bundled(PALETTE))
        expected = apply_color_lut(ds.pixel_array, ds) @ LUMA_WEIGHTS / 65535
        np.testing.assert_allclose(decode_one(bundled(PALETTE)), expected, atol=1e-5)


class TestDecodeFrames:
    def test_each_frame_is_its_own_image_in_order(self, tmp_path: Path) -> None:
        frames = np.stack([stored_image(12) // (k + 1) for k in range(3)])
        path = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        images = decode_file(path)
        assert len(images) == 3
        for k, image in enumerate(images):
            np.testing.assert_allclose(image, frames[k] / 4095, atol=1e-6)

    def test_compressed_multi_frame(self, tmp_path: Path) -> None:
        frames = np.stack([stored_image(12), 4095 - stored_image(12)])
        path = write_encoded(make_image_dataset(frames), tmp_path / "multi.dcm", JPEG2000Lossless)
        images = decode_file(path)
        np.testing.assert_allclose(images[1], 1 - images[0], atol=1e-6)

    def test_first_frame_policy_decodes_frame_zero_only(self) -> None:
        path = bundled(YBR_JPEG_30_FRAMES)
        everything = decode_file(path)
        first = decode_file(path, DecodePolicy(frames="first"))
        assert len(everything) == 30 and len(first) == 1
        np.testing.assert_array_equal(first[0], everything[0])
        assert not np.array_equal(everything[0], everything[-1])

    def test_bundled_two_frame_rgb(self) -> None:
        assert len(decode_file(bundled(RGB_RLE_TWO_FRAMES))) == 2


class TestDecodeDisplay:
    def test_monochrome1_and_monochrome2_of_the_same_anatomy_give_the_same_images(
        self, tmp_path: Path
    ) -> None:
        anatomy = stored_image(12)
        mono2 = make_image_dataset(anatomy, photometric="MONOCHROME2")
        mono1 = make_image_dataset(4095 - anatomy, photometric="MONOCHROME1")
        decoded2 = decode_one(write_encoded(mono2, tmp_path / "mono2.dcm", RLELossless))
        decoded1 = decode_one(write_encoded(mono1, tmp_path / "mono1.dcm", JPEGLSLossless))
        np.testing.assert_allclose(decoded1, decoded2, atol=1e-6)
        spec = PreprocessSpec(image_size=32, working_size=64)
        np.testing.assert_allclose(
            preprocess(decoded1, spec), preprocess(decoded2, spec), atol=1e-5
        )

    def test_monochrome1_with_window_matches_monochrome2_with_mirrored_window(
        self, tmp_path: Path
    ) -> None:
        anatomy = stored_image(12)
        window = {"VOILUTFunction": "LINEAR_EXACT", "WindowWidth": 1000}
        mono2 = make_image_dataset(anatomy, WindowCenter=1500, **window)
        mono1 = make_image_dataset(
            4095 - anatomy, photometric="MONOCHROME1", WindowCenter=2595, **window
        )
        decoded2 = decode_one(write_dataset(mono2, tmp_path / "mono2.dcm"))
        decoded1 = decode_one(write_dataset(mono1, tmp_path / "mono1.dcm"))
        np.testing.assert_allclose(decoded1, decoded2, atol=1e-6)

    def test_window_clips_outside_and_stretches_inside(self, tmp_path: Path) -> None:
        anatomy = stored_image(12)
        plain = decode_one(write_dataset(make_image_dataset(anatomy), tmp_path / "plain.dcm"))
        windowed_ds = make_image_dataset(anatomy, WindowCenter=2000, WindowWidth=1001)
        windowed = decode_one(write_dataset(windowed_ds, tmp_path / "windowed.dcm"))
        assert (windowed[anatomy <= 1499] == 0).all() and (windowed[anatomy >= 2500] == 1).all()
        inside = (anatomy > 1600) & (anatomy < 2400)
        np.testing.assert_allclose(windowed[inside], (anatomy[inside] - 1499.5) / 1000, atol=1e-5)
        assert windowed.std() > plain.std()  # the window stretched the contrast

    def test_rescale_with_window_equals_the_rescaled_values_stored(self, tmp_path: Path) -> None:
        anatomy = stored_image(12) // 2  # stored 0..2047
        window = {"WindowCenter": 1000, "WindowWidth": 800}
        rescaled = make_image_dataset(anatomy, RescaleSlope=2, RescaleIntercept=-50, **window)
        direct = make_image_dataset(anatomy * 2, RescaleSlope=1, RescaleIntercept=-50, **window)
        np.testing.assert_allclose(
            decode_one(write_dataset(rescaled, tmp_path / "rescaled.dcm")),
            decode_one(write_dataset(direct, tmp_path / "direct.dcm")),
            atol=1e-6,
        )

    def test_rescale_without_window_maps_the_rescaled_stored_range(self, tmp_path: Path) -> None:
        anatomy = stored_image(12)
        ds = make_image_dataset(anatomy, RescaleSlope=0.5, RescaleIntercept=-1024)
        np.testing.assert_allclose(
            decode_one(write_dataset(ds, tmp_path / "rescaled.dcm")), anatomy / 4095, atol=1e-6
        )

    def test_voi_lut_sequence_is_applied(self, tmp_path: Path) -> None:
        anatomy = stored_image(12)
        table = (4095 - np.arange(4096)).tolist()  # an inverting VOI LUT
        item = Dataset()
        item.add_new(0x00283002, "US", [4096, 0, 16])
        item.add_new(0x00283006, "US", table)
        ds = make_image_dataset(anatomy, VOILUTSequence=Sequence([item]))
        decoded = decode_one(write_encoded(ds, tmp_path / "voi.dcm", ExplicitVRLittleEndian))
        np.testing.assert_allclose(decoded, 1 - anatomy / 4095, atol=1e-6)

    def test_modality_lut_sequence_is_applied(self, tmp_path: Path) -> None:
        anatomy = stored_image(12)
        item = Dataset()
        item.add_new(0x00283002, "US", [4096, 0, 16])
        item.add_new(0x00283006, "US", (np.arange(4096) // 4 + 1000).tolist())
        ds = make_image_dataset(anatomy, ModalityLUTSequence=Sequence([item]))
        decoded = decode_one(write_dataset(ds, tmp_path / "mlut.dcm"))
        np.testing.assert_allclose(decoded, (anatomy // 4) / (4095 // 4), atol=1e-6)


class TestDecodeRejections:
    def test_too_large_is_rejected_from_the_header_without_reading_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_dataset(make_image_dataset(stored_image(12)), tmp_path / "small.dcm")
        header = read_header(path)

        def no_read(*args: object, **kwargs: object) -> Dataset:
            pytest.fail("decode read the file although the header was over the cap")

        monkeypatch.setattr(decode_module, "dcmread", no_read)
        with pytest.raises(FileRejected) as caught:
            decode(tmp_path / "gone.dcm", header, DecodePolicy(max_pixels=64 * 48 - 1))
        assert caught.value.reason is Reason.TOO_LARGE
        assert "64 x 48 x 1 x 1" in caught.value.detail

    def test_huge_claimed_dimensions_are_rejected_fast_without_allocating(
        self, tmp_path: Path
    ) -> None:
        ds = make_image_dataset(np.zeros((4, 4), dtype=np.uint16))
        ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 1000
        path = write_dataset(ds, tmp_path / "liar.dcm")
        header = read_header(path)
        tracemalloc.start()
        start = time.perf_counter()
        try:
            with pytest.raises(FileRejected) as caught:
                decode(path, header)
            elapsed = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert caught.value.reason is Reason.TOO_LARGE
        assert elapsed < 1.0 and peak < 1_000_000

    def test_first_frame_policy_caps_only_the_frame_it_decodes(self, tmp_path: Path) -> None:
        frames = np.stack([stored_image(12)] * 4)
        path = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        cap = 2 * SHAPE[0] * SHAPE[1]
        with pytest.raises(FileRejected):
            decode_file(path, DecodePolicy(max_pixels=cap))
        assert len(decode_file(path, DecodePolicy(max_pixels=cap, frames="first"))) == 1

    def test_native_pixel_data_shorter_than_announced_is_truncated(self, tmp_path: Path) -> None:
        path = write_dataset(make_image_dataset(stored_image(12)), tmp_path / "cut.dcm")
        header = read_header(path)
        ds = dcmread(path)
        ds.PixelData = ds.PixelData[:-200]
        ds.save_as(path)
        with pytest.raises(FileRejected) as caught:
            decode(path, header)
        assert caught.value.reason is Reason.TRUNCATED
        assert "need 6144" in caught.value.detail

    @pytest.mark.filterwarnings("ignore:End of file reached before delimiter:UserWarning")
    @pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
    def test_file_ending_inside_compressed_pixel_data_is_truncated(
        self, tmp_path: Path, syntax: UID
    ) -> None:
        path = write_encoded(make_image_dataset(stored_image(12)), tmp_path / "cut.dcm", syntax)
        header = read_header(path)
        path.write_bytes(path.read_bytes()[:-300])
        with pytest.raises(FileRejected) as caught:
            decode(path, header)
        assert caught.value.reason is Reason.TRUNCATED

    def test_image_without_pixel_data(self, tmp_path: Path) -> None:
        ds = make_image_dataset(stored_image(12))
        del ds.PixelData
        path = write_dataset(ds, tmp_path / "empty.dcm")
        with pytest.raises(FileRejected) as caught:
            decode_file(path)
        assert caught.value.reason is Reason.NO_PIXEL_DATA

    def test_corrupt_compressed_stream_is_a_decode_error_naming_the_plugins(
        self, tmp_path: Path
    ) -> None:
        path = write_encoded(make_image_dataset(stored_image(12)), tmp_path / "bad.dcm", JPEG2000)
        content = bytearray(path.read_bytes())
        start = content.index(b"\xff\x4f\xff\x51")  # J2K codestream: SOC, SIZ
        content[start + 4 : start + 60] = b"\x00" * 56  # wipe the image size segment
        path.write_bytes(bytes(content))
        with pytest.raises(FileRejected) as caught:
            decode_file(path)
        assert caught.value.reason is Reason.DECODE_ERROR
        assert "JPEG 2000" in caught.value.detail and "pylibjpeg" in caught.value.detail

    def test_missing_bits_stored_is_a_decode_error(self, tmp_path: Path) -> None:
        ds = make_image_dataset(stored_image(12))
        del ds.BitsStored
        path = write_dataset(ds, tmp_path / "nobits.dcm")
        with pytest.raises(FileRejected) as caught:
            decode_file(path)
        assert caught.value.reason is Reason.DECODE_ERROR
        assert "(0028,0101) BitsStored" in caught.value.detail

    def test_transfer_syntax_without_any_decoder_is_unsupported(self, tmp_path: Path) -> None:
        path = write_dataset(make_image_dataset(stored_image(12)), tmp_path / "mpeg.dcm")
        mpeg2 = "1.2.840.10008.1.2.4.100"
        header = dataclasses.replace(read_header(path), transfer_syntax_uid=mpeg2)
        with pytest.raises(FileRejected) as caught:
            decode(path, header)
        assert caught.value.reason is Reason.UNSUPPORTED_TRANSFER_SYNTAX
        assert "MPEG2" in caught.value.detail

    def test_missing_plugins_are_each_listed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A JPEG-LS decoder whose every plugin lacks its dependency, as on a bare install.
        from pydicom.pixels.decoders import pyjpegls, pylibjpeg

        monkeypatch.setattr(pyjpegls, "is_available", lambda uid: False)
        monkeypatch.setattr(pylibjpeg, "is_available", lambda uid: False)
        bare = decoders_base.Decoder(JPEGLSLossless)
        bare.add_plugin("pyjpegls", ("pydicom.pixels.decoders.pyjpegls", "_decode_frame"))
        bare.add_plugin("pylibjpeg", ("pydicom.pixels.decoders.pylibjpeg", "_decode_frame"))
        monkeypatch.setattr(decode_module, "get_decoder", lambda uid: bare)
        path = write_encoded(
            make_image_dataset(stored_image(12)), tmp_path / "jls.dcm", JPEGLSLossless
        )
        with pytest.raises(FileRejected) as caught:
            decode_file(path)
        assert caught.value.reason is Reason.UNSUPPORTED_TRANSFER_SYNTAX
        assert "pyjpegls - requires numpy and pyjpegls" in caught.value.detail
        assert "pylibjpeg - requires" in caught.value.detail
