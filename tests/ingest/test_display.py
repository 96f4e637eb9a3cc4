"""Tests for batchfrac.ingest.display: one class per function, checked against pydicom where it
has the same operation (pydicom's functions return unnormalised float64, ours [0, 1])."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from batchfrac.enums import Reason
from batchfrac.errors import FileRejected
from batchfrac.ingest import display
from batchfrac.ingest.display import (
    LUMA_WEIGHTS,
    LookupTable,
    ValueRange,
    colour_to_grey,
    grey_to_display,
    modality_lut,
    palette_to_grey,
    read_lut,
    stored_range,
    to_display,
    to_unit,
    voi_lut,
    window,
    window_is_valid,
)
from tests.factories import gradient_image, make_image_dataset
from tests.hostile_bytes import set_raw

PALETTE_FILE = "examples_palette.dcm"  # bundled with pydicom: 8-bit PALETTE COLOR, 16-bit LUTs
MAX_12 = 4095


def grey_dataset(photometric: str = "MONOCHROME2", bits: int = 12, **tags: object) -> Dataset:
    return make_image_dataset(
        gradient_image(16, 12, bits), photometric=photometric, bits_stored=bits, **tags
    )


def lut_item(values: np.ndarray | list[int], first_mapped: int = 0, bits: int = 16) -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [len(values), first_mapped, bits])
    item.add_new(0x00283006, "US", [int(v) for v in values])
    return item


def ramp(low: int, high: int) -> np.ndarray:
    return np.arange(low, high + 1, dtype=np.int32).reshape(1, -1)


class TestStoredRange:
    def test_unsigned_12_bit(self) -> None:
        assert stored_range(grey_dataset(bits=12)) == ValueRange(0, 4095)

    def test_signed_16_bit(self) -> None:
        ds = grey_dataset(bits=16)
        ds.PixelRepresentation = 1
        assert stored_range(ds) == ValueRange(-32768, 32767)


class TestToUnit:
    def test_maps_range_ends_to_zero_and_one_and_clips_outside(self) -> None:
        out = to_unit(np.array([-10, 0, 50, 100, 200]), ValueRange(0, 100))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1])

    def test_empty_range_gives_zeros_instead_of_dividing_by_zero(self) -> None:
        assert not to_unit(np.array([3, 3]), ValueRange(3, 3)).any()

    def test_does_not_modify_its_input(self) -> None:
        values = np.array([1.0, 2.0], dtype=np.float32)
        to_unit(values, ValueRange(0, 4))
        np.testing.assert_array_equal(values, [1.0, 2.0])


class TestWindowIsValid:
    @pytest.mark.parametrize(
        ("width", "function", "valid"),
        [
            (1, "LINEAR", True),
            (0.5, "LINEAR", False),
            (0.5, "LINEAR_EXACT", True),
            (0, "LINEAR_EXACT", False),
            (0.5, "sigmoid", True),
            (-1, "SIGMOID", False),
        ],
    )
    def test_width_limits_per_function(self, width: float, function: str, valid: bool) -> None:
        assert window_is_valid(width, function) is valid


class TestWindow:
    # pydicom's own SIGMOID overflows in exp for narrow windows (ours clips the exponent).
    @pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
    @pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
    @pytest.mark.parametrize(("center", "width"), [(2048, 1000), (300.5, 41), (1000, 2)])
    def test_equals_pydicom_windowing_rescaled_to_unit(
        self, function: str, center: float, width: float
    ) -> None:
        ds = grey_dataset(WindowCenter=center, WindowWidth=width, VOILUTFunction=function)
        values = ramp(0, MAX_12)
        expected = apply_windowing(values, ds) / MAX_12  # pydicom outputs [0, 4095]
        np.testing.assert_allclose(window(values, center, width, function), expected, atol=2e-6)

    def test_width_one_is_a_step_at_center_minus_half(self) -> None:
        out = window(np.array([99, 99.5, 100, 101]), 100, 1)
        np.testing.assert_array_equal(out, [0, 0, 1, 1])

    def test_unknown_function_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="VOI LUT Function"):
            window(ramp(0, 3), 1, 2, "GAMMA")

    def test_invalid_width_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="Window Width 0.5"):
            window(ramp(0, 3), 1, 0.5, "LINEAR")


class TestReadLut:
    def test_us_values_and_descriptor(self) -> None:
        lut = read_lut(lut_item([5, 6, 7], first_mapped=10), Dataset())
        assert lut.first_mapped == 10
        np.testing.assert_array_equal(lut.values, [5, 6, 7])

    @pytest.mark.parametrize("little_endian", [True, False])
    def test_ow_bytes_follow_the_data_set_byte_order(self, little_endian: bool) -> None:
        item = lut_item([0, 0])
        item.add_new(
            0x00283006, "OW", np.array([1, 513], dtype="<u2" if little_endian else ">u2").tobytes()
        )
        ds = Dataset()
        ds.set_original_encoding(False, little_endian)
        np.testing.assert_array_equal(read_lut(item, ds).values, [1, 513])

    def test_zero_entries_in_descriptor_means_65536(self) -> None:
        item = Dataset()
        item.add_new(0x00283002, "US", [0, 0, 16])
        item.add_new(0x00283006, "US", [0] * 2**16)
        assert len(read_lut(item, Dataset()).values) == 2**16

    def test_lut_data_shorter_than_descriptor_is_a_decode_error(self) -> None:
        item = lut_item([1, 2, 3])
        item.LUTDescriptor = [4, 0, 16]
        with pytest.raises(FileRejected) as caught:
            read_lut(item, Dataset())
        assert caught.value.reason is Reason.DECODE_ERROR
        assert "announces 4" in caught.value.detail


class TestLookupTable:
    def test_clamps_below_first_mapped_and_past_the_end(self) -> None:
        lut = LookupTable(first_mapped=-2, values=np.array([10, 20, 30]))
        np.testing.assert_array_equal(lut.apply(np.array([-5, -2, -1, 0, 9])), [10, 10, 20, 30, 30])

    def test_rounds_float_input(self) -> None:
        lut = LookupTable(first_mapped=0, values=np.array([10, 20, 30]))
        np.testing.assert_array_equal(lut.apply(np.array([0.4, 1.6])), [10, 30])

    def test_output_range_is_the_table_extent(self) -> None:
        assert LookupTable(0, np.array([7, 3, 4000])).output_range == ValueRange(3, 4000)


class TestModalityLut:
    def test_rescale_equals_pydicom_and_maps_the_stored_range(self) -> None:
        ds = grey_dataset(RescaleSlope=0.5, RescaleIntercept=-1024)
        values, value_range = modality_lut(ramp(0, MAX_12), ds)
        np.testing.assert_allclose(values, apply_modality_lut(ramp(0, MAX_12), ds))
        assert value_range == ValueRange(-1024, MAX_12 * 0.5 - 1024)

    def test_negative_slope_keeps_low_below_high(self) -> None:
        _, value_range = modality_lut(ramp(0, 3), grey_dataset(RescaleSlope=-1, RescaleIntercept=0))
        assert value_range == ValueRange(-MAX_12, 0)

    def test_without_rescale_values_pass_through_with_the_stored_range(self) -> None:
        values, value_range = modality_lut(ramp(0, 9), grey_dataset())
        np.testing.assert_array_equal(values, ramp(0, 9))
        assert value_range == ValueRange(0, MAX_12)

    def test_modality_lut_sequence_wins_over_rescale_and_equals_pydicom(self) -> None:
        table = (np.arange(4096) // 2 + 100).tolist()
        ds = grey_dataset(RescaleSlope=3, RescaleIntercept=7)
        ds.ModalityLUTSequence = Sequence([lut_item(table)])
        values, value_range = modality_lut(ramp(0, MAX_12), ds)
        del ds.RescaleSlope, ds.RescaleIntercept  # pydicom also prefers the sequence
        np.testing.assert_array_equal(values, apply_modality_lut(ramp(0, MAX_12), ds))
        assert value_range == ValueRange(100, 100 + MAX_12 // 2)


class TestVoiLut:
    def test_voi_lut_sequence_equals_pydicom_normalised_by_the_lut_range(self) -> None:
        # A 16-bit descriptor with 12-bit data (a common vendor quirk): white is 4095.
        table = np.round(np.sqrt(np.arange(4096) / MAX_12) * MAX_12).astype(int)
        ds = grey_dataset(WindowCenter=10, WindowWidth=2)  # ignored: the LUT wins
        ds.VOILUTSequence = Sequence([lut_item(table, bits=16)])
        out = voi_lut(ramp(0, MAX_12).astype(np.float32), ds, ValueRange(0, MAX_12))
        np.testing.assert_allclose(out, apply_voi(ramp(0, MAX_12), ds) / MAX_12, atol=1e-6)
        assert out.min() == 0 and out.max() == 1

    def test_first_of_several_windows_is_used(self) -> None:
        ds = grey_dataset(WindowCenter=[1000, 3000], WindowWidth=[200, 400])
        out = voi_lut(np.array([899.0, 1000.0, 1101.0]), ds, ValueRange(0, MAX_12))
        assert out[0] == 0 and out[2] == 1 and 0.45 < out[1] < 0.55

    def test_voi_lut_function_selects_the_window_shape(self) -> None:
        ds = grey_dataset(WindowCenter=100, WindowWidth=20, VOILUTFunction="SIGMOID")
        out = voi_lut(np.array([100.0]), ds, ValueRange(0, MAX_12))
        np.testing.assert_allclose(out, [0.5])

    def test_invalid_window_width_falls_back_to_the_modality_range(self) -> None:
        ds = grey_dataset(WindowCenter=100, WindowWidth=0)
        out = voi_lut(np.array([0.0, MAX_12 / 2, MAX_12]), ds, ValueRange(0, MAX_12))
        np.testing.assert_allclose(out, [0, 0.5, 1])

    def test_no_voi_maps_the_modality_range_not_the_image_extent(self) -> None:
        out = voi_lut(np.array([1000.0, 2000.0]), grey_dataset(), ValueRange(0, 4000))
        np.testing.assert_allclose(out, [0.25, 0.5])


class TestGreyToDisplay:
    def test_monochrome2_without_voi_is_stored_value_over_stored_maximum(self) -> None:
        stored = ramp(0, MAX_12)
        np.testing.assert_allclose(
            grey_to_display(stored, grey_dataset()), stored / MAX_12, atol=1e-6
        )

    def test_monochrome1_is_inverted_against_the_range_not_the_image_maximum(self) -> None:
        stored = np.array([[0, 100, 200]])  # the image maximum (200) is far below 4095
        out = grey_to_display(stored, grey_dataset("MONOCHROME1"))
        np.testing.assert_allclose(out, 1 - stored / MAX_12, atol=1e-6)

    def test_monochrome1_is_inverted_after_the_window(self) -> None:
        # The window is on stored values: [900, 1100] is the band of interest. Stored
        # 900 is white in MONOCHROME1 (window output 0, inverted to 1).
        ds = grey_dataset(
            "MONOCHROME1", WindowCenter=1000, WindowWidth=200, VOILUTFunction="LINEAR_EXACT"
        )
        out = grey_to_display(np.array([[0, 900, 1000, 1100, MAX_12]]), ds)
        np.testing.assert_allclose(out, [[1, 1, 0.5, 0, 0]])

    def test_rescale_then_window_in_rescaled_units(self) -> None:
        ds = grey_dataset(
            RescaleSlope=2,
            RescaleIntercept=-100,
            WindowCenter=1900,
            WindowWidth=400,
            VOILUTFunction="LINEAR_EXACT",
        )
        out = grey_to_display(np.array([[850, 1000, 1100]]), ds)  # -> 1600, 1900, 2100
        np.testing.assert_allclose(out, [[0, 0.5, 1]])


class TestAffineDisplay:
    """The one-pass display of linear transforms against the step-by-step path."""

    @staticmethod
    def step_by_step(
        stored: np.ndarray, ds: Dataset, monkeypatch: pytest.MonkeyPatch
    ) -> np.ndarray:
        with monkeypatch.context() as patched:
            patched.setattr(display, "_affine_display", lambda arr, ds: None)
            return grey_to_display(stored, ds)

    @pytest.mark.parametrize("dtype", ["u1", "i1", "u2", "i2", "i4", ">u2", ">i2"])
    @pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
    @pytest.mark.parametrize(
        "tags",
        [
            {},
            {"RescaleSlope": 1, "RescaleIntercept": 0},
            {"RescaleSlope": 2.5, "RescaleIntercept": -1024},
            {"RescaleSlope": -1, "RescaleIntercept": 100},
            {"WindowCenter": 40, "WindowWidth": 50},
            {"WindowCenter": 40.5, "WindowWidth": 2, "VOILUTFunction": "LINEAR_EXACT"},
            {"RescaleSlope": 0.5, "RescaleIntercept": 3, "WindowCenter": 20, "WindowWidth": 30},
            {"WindowCenter": 40, "WindowWidth": 50, "VOILUTFunction": "NONSENSE"},  # -> LINEAR
            {"WindowCenter": 40, "WindowWidth": 0.5},  # invalid for LINEAR: the range
        ],
    )
    def test_equals_the_step_by_step_path(
        self, monkeypatch: pytest.MonkeyPatch, dtype: str, photometric: str, tags: dict[str, object]
    ) -> None:
        kind = np.dtype(dtype)
        bits = 8 * kind.itemsize
        info = np.iinfo(kind)
        stored = np.linspace(max(info.min, -300), min(info.max, 300), 7 * 11).astype(kind)
        stored = stored.reshape(7, 11)
        ds = grey_dataset(photometric, bits=min(bits, 16), **tags)
        ds.BitsStored, ds.PixelRepresentation = bits, int(kind.kind == "i")
        fused = display._affine_display(stored, ds)
        assert fused is not None and fused.dtype == np.float32 and fused.shape == stored.shape
        expected = self.step_by_step(stored, ds, monkeypatch)
        np.testing.assert_allclose(fused, expected, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(grey_to_display(stored, ds), fused)  # it is what runs

    @pytest.mark.parametrize(
        ("stored", "tags"),
        [
            (np.zeros((3, 3), np.uint32), {}),  # a dtype OpenCV does not read
            (np.zeros((3, 3), np.float32), {}),
            (np.zeros(9, np.uint16), {}),  # not 2-D
            (np.zeros((3, 3), np.uint16), {"WindowCenter": 5, "WindowWidth": 1}),  # a step
            (
                np.zeros((3, 3), np.uint16),
                {"WindowCenter": 5, "WindowWidth": 10, "VOILUTFunction": "SIGMOID"},
            ),
            (np.zeros((3, 3), np.uint16), {"ModalityLUTSequence": Sequence([lut_item([1, 2])])}),
            (np.zeros((3, 3), np.uint16), {"VOILUTSequence": Sequence([lut_item([1, 2])])}),
            (  # a scale that could overflow float32 on some stored value
                np.zeros((3, 3), np.uint16),
                {
                    "RescaleSlope": 1e30,
                    "RescaleIntercept": 0,
                    "WindowCenter": 0,
                    "WindowWidth": 1.5,
                },
            ),
        ],
    )
    def test_leaves_what_is_not_one_affine_map_to_the_steps(
        self, monkeypatch: pytest.MonkeyPatch, stored: np.ndarray, tags: dict[str, object]
    ) -> None:
        ds = grey_dataset(**tags)
        assert display._affine_display(stored, ds) is None
        np.testing.assert_array_equal(
            grey_to_display(stored, ds), self.step_by_step(stored, ds, monkeypatch)
        )

    def test_malformed_attributes_are_the_same_decode_error(self) -> None:
        ds = grey_dataset(RescaleSlope=0, RescaleIntercept=0)
        with pytest.raises(FileRejected, match="Rescale Slope 0"):
            display._affine_display(np.zeros((2, 2), np.uint16), ds)


class TestColourToGrey:
    def test_grey_rgb_pixels_keep_their_value(self) -> None:
        rgb = np.repeat(np.array([[0, 51, 255]], dtype=np.uint8)[..., None], 3, axis=2)
        np.testing.assert_allclose(colour_to_grey(rgb, 255), [[0, 0.2, 1]], atol=1e-6)

    def test_primaries_use_bt601_weights(self) -> None:
        rgb = np.eye(3, dtype=np.uint16)[None] * 1000
        np.testing.assert_allclose(colour_to_grey(rgb, 1000)[0], LUMA_WEIGHTS, atol=1e-6)


class TestPaletteToGrey:
    def test_equals_luma_of_pydicom_palette_lookup(self) -> None:
        ds = dcmread(get_testdata_file(PALETTE_FILE))
        stored = ds.pixel_array
        expected = (apply_color_lut(stored, ds).astype(np.float64) @ LUMA_WEIGHTS) / 65535
        out = palette_to_grey(stored, ds)
        assert out.shape == stored.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=1e-5)
        assert out.std() > 0.05  # a real picture, not a constant

    def test_missing_palette_is_a_decode_error(self) -> None:
        with pytest.raises(FileRejected) as caught:
            palette_to_grey(np.zeros((2, 2), dtype=np.uint8), grey_dataset("PALETTE COLOR", bits=8))
        assert caught.value.reason is Reason.DECODE_ERROR


class TestToDisplay:
    def test_dispatches_monochrome_to_the_grey_pipeline(self) -> None:
        stored = ramp(0, MAX_12)
        ds = grey_dataset("MONOCHROME1")
        np.testing.assert_array_equal(
            to_display(stored, ds, "MONOCHROME1"), grey_to_display(stored, ds)
        )

    def test_ybr_full_left_unconverted_uses_its_luma_channel(self) -> None:
        ybr = np.zeros((2, 2, 3), dtype=np.uint8)
        ybr[..., 0] = [[0, 51], [102, 255]]
        ybr[..., 1:] = 128
        ds = make_image_dataset(ybr, photometric="YBR_FULL", bits_stored=8)
        np.testing.assert_allclose(to_display(ybr, ds, "YBR_FULL"), [[0, 0.2], [0.4, 1]], atol=1e-6)

    def test_unsupported_photometric_interpretation_is_a_decode_error(self) -> None:
        with pytest.raises(FileRejected) as caught:
            to_display(np.zeros((2, 2, 3)), grey_dataset(), "YBR_PARTIAL_420")
        assert caught.value.reason is Reason.DECODE_ERROR
        assert "YBR_PARTIAL_420" in caught.value.detail


def raw_dataset(**values: tuple[str, bytes]) -> Dataset:
    """A grey data set with attributes written as raw bytes (what a file may hold)."""
    ds = grey_dataset()
    for keyword, (vr, value) in values.items():
        set_raw(ds, Tag(keyword), vr, value)
    return ds


def decode_error(function: object, *args: object) -> str:
    with pytest.raises(FileRejected) as caught:
        function(*args)  # type: ignore[operator]
    assert caught.value.reason is Reason.DECODE_ERROR
    return caught.value.detail


class TestUnusableDisplayAttributes:
    @pytest.mark.parametrize("slope", [b"NaN ", b"inf ", b"-inf"])
    def test_non_finite_rescale_slope(self, slope: bytes) -> None:
        ds = raw_dataset(RescaleSlope=("DS", slope), RescaleIntercept=("DS", b"0 "))
        detail = decode_error(modality_lut, ds.pixel_array, ds)
        assert "(0028,1053) RescaleSlope" in detail and "not finite" in detail

    def test_two_rescale_slopes(self) -> None:
        ds = raw_dataset(RescaleSlope=("DS", b"1\\2 "), RescaleIntercept=("DS", b"0 "))
        assert "has 2 values (1\\2), expected 1" in decode_error(modality_lut, ds.pixel_array, ds)

    def test_zero_slope_or_one_past_float32(self) -> None:
        zero = raw_dataset(RescaleSlope=("DS", b"0 "), RescaleIntercept=("DS", b"0 "))
        assert "maps every pixel to one value" in decode_error(modality_lut, zero.pixel_array, zero)
        huge = raw_dataset(RescaleSlope=("DS", b"1e300 "), RescaleIntercept=("DS", b"0 "))
        assert "float32 range" in decode_error(modality_lut, huge.pixel_array, huge)

    @pytest.mark.parametrize(
        ("keyword", "value", "expected"),
        [
            ("WindowCenter", b"ab.c", "(0028,1050) WindowCenter"),
            ("WindowWidth", b"inf ", "(0028,1051) WindowWidth inf is not finite"),
            ("WindowWidth", b"NaN ", "(0028,1051) WindowWidth nan is not finite"),
        ],
    )
    def test_window_that_is_not_a_finite_number(
        self, keyword: str, value: bytes, expected: str
    ) -> None:
        ds = raw_dataset(WindowCenter=("DS", b"2048"), WindowWidth=("DS", b"400 "))
        set_raw(ds, Tag(keyword), "DS", value)
        arr = ds.pixel_array.astype(np.float32)
        assert expected in decode_error(voi_lut, arr, ds, ValueRange(0, MAX_12))

    def test_window_center_of_the_wrong_length(self) -> None:
        ds = raw_dataset(WindowCenter=("FD", b"\x00\x01"), WindowWidth=("DS", b"400 "))
        detail = decode_error(voi_lut, ds.pixel_array, ds, ValueRange(0, MAX_12))
        assert "(0028,1050) WindowCenter: BytesLengthException" in detail

    def test_a_lut_sequence_that_is_no_sequence(self) -> None:
        ds = raw_dataset(VOILUTSequence=("UL", b"\x01\x00\x00\x00"))
        detail = decode_error(voi_lut, ds.pixel_array, ds, ValueRange(0, MAX_12))
        assert "(0028,3010) VOILUTSequence" in detail
