"""Tests for batchfrac.ingest.decode: every transfer syntax the installed codecs can encode,
pydicom's bundled colour / palette / multi-frame files, the display rules, and each
way a file can fail (one class per function, scenario-named tests)."""

from __future__ import annotations

import copy
import dataclasses
import time
import tracemalloc
from pathlib import Path

import cv2
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
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from batchfrac.enums import Reason
from batchfrac.errors import FileRejected
from batchfrac.ingest import decode as decode_module
from batchfrac.ingest import direct, j2k
from batchfrac.ingest import plugins as plugins_module
from batchfrac.ingest.decode import DecodePolicy, FramePolicy, decode
from batchfrac.ingest.display import LUMA_WEIGHTS
from batchfrac.ingest.frames import encapsulated
from batchfrac.ingest.header import read_header
from batchfrac.ingest.preprocess import PreprocessSpec, preprocess
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
    return list(decode(path, read_header(path), policy or DecodePolicy()))


def decode_one(path: Path) -> np.ndarray:
    (image,) = decode_file(path)
    return image


def bundled(name: str) -> Path:
    return Path(get_testdata_file(name))


class TestDecodePolicy:
    def test_defaults(self) -> None:
        policy = DecodePolicy()
        assert policy.max_frame_pixels == 64_000_000 and policy.max_frames == 256
        assert policy.max_decoded_bytes == 1 << 30 and policy.min_side == 32
        assert policy.frames is FramePolicy.ALL

    def test_frames_string_becomes_the_enum(self) -> None:
        assert DecodePolicy(frames="first").frames is FramePolicy.FIRST

    def test_unknown_frames_policy_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="frames must be one of all, first"):
            DecodePolicy(frames="middle")

    @pytest.mark.parametrize(
        "field", ["max_frame_pixels", "max_frames", "max_decoded_bytes", "min_side"]
    )
    def test_non_positive_cap_is_rejected(self, field: str) -> None:
        with pytest.raises(ValueError, match=field):
            DecodePolicy(**{field: 0})  # type: ignore[arg-type]

    def test_full_resolution_by_default_and_positive_min_long_side(self) -> None:
        assert DecodePolicy().min_long_side is None
        with pytest.raises(ValueError, match="min_long_side must be positive"):
            DecodePolicy(min_long_side=0)


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
        np.testing.assert_array_equal(list(decode(tmp_path / "raw.dcm", header))[0], reference)


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

        monkeypatch.setattr(decode_module, "open_pixel_source", no_read)
        with pytest.raises(FileRejected) as caught:
            decode(tmp_path / "gone.dcm", header, DecodePolicy(max_frame_pixels=64 * 48 - 1))
        assert caught.value.reason is Reason.TOO_LARGE
        assert "64 x 48 x 1 = 3,072 pixels per frame" in caught.value.detail

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

    @pytest.mark.parametrize(
        "cap", [{"max_frames": 2}, {"max_decoded_bytes": 2 * SHAPE[0] * SHAPE[1] * 2}]
    )
    def test_first_frame_policy_caps_only_the_frame_it_decodes(
        self, tmp_path: Path, cap: dict[str, int]
    ) -> None:
        frames = np.stack([stored_image(12)] * 4)
        path = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        with pytest.raises(FileRejected) as caught:
            decode_file(path, DecodePolicy(**cap))  # type: ignore[arg-type]
        assert caught.value.reason is Reason.TOO_LARGE
        assert len(decode_file(path, DecodePolicy(**cap, frames="first"))) == 1  # type: ignore[arg-type]

    def test_each_frame_is_capped_alone_so_a_long_cine_decodes(self, tmp_path: Path) -> None:
        frames = np.stack([stored_image(12)] * 4)
        path = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        assert len(decode_file(path, DecodePolicy(max_frame_pixels=SHAPE[0] * SHAPE[1]))) == 4

    @pytest.mark.parametrize("shape", [(1, 1), (8, 8), (31, 400), (400, 31)])
    def test_too_small_to_score_is_skipped_from_the_header(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int]
    ) -> None:
        path = write_dataset(make_image_dataset(gradient_image(*shape)), tmp_path / "tiny.dcm")
        header = read_header(path)
        monkeypatch.setattr(decode_module, "open_pixel_source", None)
        with pytest.raises(FileRejected) as caught:
            decode(path, header)
        assert caught.value.reason is Reason.TOO_SMALL and caught.value.status.value == "skipped"
        assert f"{shape[0]} x {shape[1]}" in caught.value.detail

    def test_native_pixel_data_shorter_than_announced_is_truncated(self, tmp_path: Path) -> None:
        path = write_dataset(make_image_dataset(stored_image(12)), tmp_path / "cut.dcm")
        header = read_header(path)
        ds = dcmread(path)
        ds.PixelData = ds.PixelData[:-200]
        ds.save_as(path)
        with pytest.raises(FileRejected) as caught:
            list(decode(path, header))
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
            list(decode(path, header))
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
        content[start + 51 : start + 70] = b"\xff" * 19  # garble the COD segment after SIZ
        path.write_bytes(bytes(content))
        with pytest.raises(FileRejected) as caught:
            decode_file(path)
        assert caught.value.reason is Reason.DECODE_ERROR
        assert "JPEG 2000" in caught.value.detail and "pylibjpeg" in caught.value.detail
        assert "gdcm" not in caught.value.detail  # it may abort the process on such streams

    def test_stream_header_that_disagrees_is_rejected_before_decoding(self, tmp_path: Path) -> None:
        path = write_encoded(make_image_dataset(stored_image(12)), tmp_path / "bad.dcm", JPEG2000)
        content = bytearray(path.read_bytes())
        start = content.index(b"\xff\x4f\xff\x51")  # J2K codestream: SOC, SIZ
        content[start + 4 : start + 60] = b"\x00" * 56  # wipe the image size segment
        path.write_bytes(bytes(content))
        with pytest.raises(FileRejected) as caught:
            decode_file(path)
        assert caught.value.reason is Reason.DECODE_ERROR
        assert "JPEG 2000" in caught.value.detail and "SIZ" in caught.value.detail

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
        monkeypatch.setattr(plugins_module, "get_decoder", lambda uid: bare)
        path = write_encoded(
            make_image_dataset(stored_image(12)), tmp_path / "jls.dcm", JPEGLSLossless
        )
        with pytest.raises(FileRejected) as caught:
            decode_file(path)
        assert caught.value.reason is Reason.UNSUPPORTED_TRANSFER_SYNTAX
        assert "pyjpegls - requires numpy and pyjpegls" in caught.value.detail
        assert "pylibjpeg - requires" in caught.value.detail


def smooth_image(rows: int, columns: int) -> np.ndarray:
    """A 12-bit blob with gentle slopes (steepest ~0.013 of full scale per pixel)."""
    r = np.linspace(-1.0, 1.0, rows)[:, None]
    c = np.linspace(-1.0, 1.0, columns)[None, :]
    return np.rint(500 + 3000 * np.exp(-((c / 0.5) ** 2) - (r / 0.7) ** 2)).astype(np.uint16)


def steepest_slope(image: np.ndarray) -> float:
    return float(max(np.abs(np.diff(image, axis=0)).max(), np.abs(np.diff(image, axis=1)).max()))


class TestDecodeReducedResolution:
    """``DecodePolicy.min_long_side``: JPEG 2000 decoded at a coarser wavelet level.

    Tolerance against the full decode shrunk with INTER_AREA: the level-r low-pass band
    of the LeGall 5/3 wavelet is not a 2**r x 2**r box average; its (wider) filter is
    centred (2**r - 1) / 2 full-resolution pixels from the box's centre. On a smooth
    image the two differ by about that shift times the image's slope, so the bound is
    2**r pixels' worth of the steepest slope of the full-resolution image.
    """

    @pytest.mark.parametrize(
        ("shape", "min_long_side", "level"),
        [
            ((256, 192), 64, 2),  # 256 / 4 = 64 is still >= 64; 256 / 8 is not
            ((256, 192), 65, 1),  # 256 / 4 = 64 < 65: one level only
            ((256, 192), 32, 3),
            ((253, 189), 64, 2),  # odd sides: ceil(253 / 4) = 64, ceil(189 / 4) = 48
        ],
    )
    def test_j2k_decodes_at_the_coarsest_level_still_over_min_long_side(
        self, tmp_path: Path, shape: tuple[int, int], min_long_side: int, level: int
    ) -> None:
        path = write_encoded(
            make_image_dataset(smooth_image(*shape)), tmp_path / "j2k.dcm", JPEG2000Lossless
        )
        full = decode_one(path)
        (reduced,) = decode_file(path, DecodePolicy(min_long_side=min_long_side))
        expected_shape = tuple(-(-side // 2**level) for side in shape)
        assert reduced.dtype == np.float32 and reduced.shape == expected_shape
        area = cv2.resize(full, reduced.shape[::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(reduced - area).max() <= 2**level * steepest_slope(full)
        assert np.abs(reduced - area).mean() < 0.02

    def test_lossy_and_signed_j2k_are_reduced_too(self, tmp_path: Path) -> None:
        signed = (smooth_image(256, 192).astype(np.int32) - 2048).astype(np.int16)
        for syntax, pixels in ((JPEG2000, smooth_image(256, 192)), (JPEG2000Lossless, signed)):
            path = write_encoded(make_image_dataset(pixels), tmp_path / "j2k.dcm", syntax)
            full = decode_one(path)
            (reduced,) = decode_file(path, DecodePolicy(min_long_side=64))
            area = cv2.resize(full, (48, 64), interpolation=cv2.INTER_AREA)
            assert reduced.shape == (64, 48)
            assert np.abs(reduced - area).max() <= 4 * steepest_slope(full) + 0.01

    @pytest.mark.parametrize("min_long_side", [129, 256, 1000])
    def test_min_long_side_over_half_the_image_decodes_exactly_at_full_resolution(
        self, tmp_path: Path, min_long_side: int
    ) -> None:
        ds = make_image_dataset(smooth_image(256, 192))
        reference = decode_one(write_dataset(ds, tmp_path / "native.dcm"))
        path = write_encoded(ds, tmp_path / "j2k.dcm", JPEG2000Lossless)
        (image,) = decode_file(path, DecodePolicy(min_long_side=min_long_side))
        np.testing.assert_array_equal(image, reference)

    def test_never_drops_more_levels_than_the_codestream_has(self, tmp_path: Path) -> None:
        path = write_encoded(
            make_image_dataset(smooth_image(256, 192)), tmp_path / "j2k.dcm", JPEG2000Lossless
        )
        codestream = dcmread(path).PixelData
        levels = j2k.read_codestream(codestream[codestream.index(b"\xff\x4f\xff\x51") :]).levels
        (image,) = decode_file(path, DecodePolicy(min_long_side=1))
        assert image.shape == (-(-256 // 2**levels), -(-192 // 2**levels))

    def test_each_frame_of_a_multi_frame_j2k_is_reduced(self, tmp_path: Path) -> None:
        anatomy = smooth_image(256, 192)
        ds = make_image_dataset(np.stack([anatomy, 4095 - anatomy]))
        path = write_encoded(ds, tmp_path / "multi.dcm", JPEG2000Lossless)
        images = decode_file(path, DecodePolicy(min_long_side=64))
        assert [image.shape for image in images] == [(64, 48), (64, 48)]
        # The reversible 5/3 lifting rounds down at each step, so the low-pass band of
        # 4095 - x is 4095 minus that of x only to within a few stored units.
        np.testing.assert_allclose(images[1], 1 - images[0], atol=8 / 4095)
        (first,) = decode_file(path, DecodePolicy(frames="first", min_long_side=64))
        np.testing.assert_array_equal(first, images[0])

    def test_failed_reduced_decode_falls_back_to_full_resolution(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_encoded(
            make_image_dataset(smooth_image(256, 192)), tmp_path / "j2k.dcm", JPEG2000Lossless
        )

        calls = []

        def broken(*args: object) -> np.ndarray:
            calls.append(args)
            raise OSError("broken data stream when reading image file")

        monkeypatch.setattr(j2k, "_pillow_decode", broken)
        (image,) = decode_file(path, DecodePolicy(min_long_side=64))
        assert len(calls) == 1
        np.testing.assert_array_equal(image, decode_one(path))

    def test_colour_j2k_is_decoded_at_full_resolution(self, tmp_path: Path) -> None:
        rgb = np.repeat((smooth_image(128, 96) >> 4).astype(np.uint8)[..., None], 3, axis=2)
        ds = make_image_dataset(rgb, photometric="RGB", bits_stored=8)
        path = write_encoded(ds, tmp_path / "rgb.dcm", JPEG2000Lossless)
        (image,) = decode_file(path, DecodePolicy(min_long_side=16))
        np.testing.assert_array_equal(image, decode_one(path))

    def test_corrupt_j2k_is_still_a_decode_error(self, tmp_path: Path) -> None:
        path = write_encoded(
            make_image_dataset(smooth_image(256, 192)), tmp_path / "bad.dcm", JPEG2000
        )
        content = bytearray(path.read_bytes())
        start = content.index(b"\xff\x4f\xff\x51")
        content[start + 4 : start + 60] = b"\x00" * 56
        path.write_bytes(bytes(content))
        with pytest.raises(FileRejected) as caught:
            decode_file(path, DecodePolicy(min_long_side=64))
        assert caught.value.reason is Reason.DECODE_ERROR

    @pytest.mark.parametrize(
        "syntax",
        [s for s in LOSSLESS_SYNTAXES if s != JPEG2000Lossless],
        ids=lambda uid: UID(uid).keyword,
    )
    def test_other_syntaxes_ignore_min_long_side(self, tmp_path: Path, syntax: UID) -> None:
        path = write_encoded(make_image_dataset(stored_image(12)), tmp_path / "a.dcm", syntax)
        (image,) = decode_file(path, DecodePolicy(min_long_side=16))
        assert image.shape == SHAPE
        np.testing.assert_array_equal(image, decode_one(path))


PREFERRED_CASES = [
    pytest.param(syntax, bits, signed, id=f"{UID(syntax).keyword}-{bits}{'s' if signed else ''}")
    for syntax in (JPEGLossless, JPEGLosslessSV1, JPEGLSLossless)
    for bits in BITS
    for signed in (False, True)
    if not (signed and bits == 8)
]


def _signed_dataset(bits: int, signed: bool) -> Dataset:
    """A greyscale image whose stored values span the whole range of ``bits`` (signed or not)."""
    values = stored_image(bits).astype(np.int64)
    if not signed:
        return make_image_dataset(values.astype(stored_image(bits).dtype), bits_stored=bits)
    values = (values - 2 ** (bits - 1)).astype(np.int16)
    return make_image_dataset(values, bits_stored=bits, PixelRepresentation=1)


class TestPreferredPlugins:
    @pytest.mark.parametrize(("syntax", "bits", "signed"), PREFERRED_CASES)
    def test_the_fast_plugin_returns_the_values_of_pydicoms_default(
        self, tmp_path: Path, syntax: UID, bits: int, signed: bool
    ) -> None:
        ds = _signed_dataset(bits, signed)
        path = write_encoded(ds, tmp_path / "encoded.dcm", syntax)
        decoder = decoders_base.get_decoder(syntax)
        plugin = plugins_module.preferred_plugin(decoder, 1)
        assert plugin == plugins_module.PREFERRED_PLUGINS[syntax]
        fast, _ = decoder.as_array(dcmread(path), decoding_plugin=plugin)
        default, _ = decoder.as_array(dcmread(path), decoding_plugin="gdcm")
        assert fast.dtype == default.dtype
        np.testing.assert_array_equal(fast, default)
        np.testing.assert_array_equal(fast, ds.pixel_array)

    def test_colour_lossless_jpeg_keeps_pydicoms_order(self) -> None:
        decoder = decoders_base.get_decoder(JPEGLosslessSV1)
        assert plugins_module.preferred_plugin(decoder, 3) == ""
        assert plugins_module.ljpeg.PLUGIN not in plugins_module.plugin_order(decoder, 3)
        assert plugins_module.preferred_plugin(decoders_base.get_decoder(JPEG2000), 1) == (
            "pylibjpeg"
        )

    @pytest.mark.parametrize("bits", [8, 16])
    def test_rle_prefers_pylibjpeg_rle_with_the_values_of_pydicoms_own(
        self, tmp_path: Path, bits: int
    ) -> None:
        ds = make_image_dataset(stored_image(bits), bits_stored=bits)
        path = write_encoded(ds, tmp_path / "rle.dcm", RLELossless)
        decoder = decoders_base.get_decoder(RLELossless)
        assert plugins_module.plugin_order(decoder, 1) == ("pylibjpeg",)
        fast, _ = decoder.as_array(dcmread(path), decoding_plugin="pylibjpeg")
        own, _ = decoder.as_array(dcmread(path), decoding_plugin="pydicom")
        np.testing.assert_array_equal(fast, own)

    def test_a_failing_fast_plugin_falls_back_to_pydicoms_order(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ds = make_image_dataset(stored_image(12), bits_stored=12)
        reference = decode_one(write_dataset(ds, tmp_path / "reference.dcm"))
        path = write_encoded(ds, tmp_path / "encoded.dcm", JPEGLosslessSV1)
        decoder = decoders_base.get_decoder(JPEGLosslessSV1)
        calls = []

        def broken(src: bytes, runner: object) -> bytes:
            calls.append(len(src))
            raise ValueError("this codec is broken")

        # Broken both where pydicom calls it and where the direct path does.
        monkeypatch.setitem(decoder._available, plugins_module.ljpeg.PLUGIN, broken)
        monkeypatch.setitem(direct.CODECS, (JPEGLosslessSV1, plugins_module.ljpeg.PLUGIN), broken)
        np.testing.assert_array_equal(decode_one(path), reference)
        assert len(calls) == 2  # the fast plugin was tried first, directly and through pydicom


@pytest.mark.parametrize("length", [1, 2, 11, 3_000_001])
def test_a_frame_is_encapsulated_as_pydicom_does_it(length: int) -> None:
    from pydicom.encaps import encapsulate

    frame = np.random.default_rng(length).integers(0, 256, length, np.uint8).tobytes()
    assert encapsulated(frame) == encapsulate([frame])
