"""PreprocessSpec (serialisation, schema, provenance id) and the preprocess stage."""

from __future__ import annotations

import dataclasses
import json
from importlib.resources import files
from typing import Any

import jsonschema
import numpy as np
import pytest

from batchfrac.errors import SpecError
from batchfrac.ingest.filters import canny, letterbox, resize_long_side, sobel
from batchfrac.ingest.preprocess import (
    SCHEMA_NAME,
    SPEC_VERSION,
    ChannelOp,
    PreprocessSpec,
    apply_channel_op,
    preprocess,
    to_working_size,
)


def load_schema() -> dict[str, Any]:
    return json.loads((files("batchfrac") / "schemas" / SCHEMA_NAME).read_text("utf-8"))


def radiograph_like(rows: int = 300, cols: int = 200, seed: int = 0) -> np.ndarray:
    """A bright 'bone' band with a thin dark line across it, plus mild noise."""
    rng = np.random.default_rng(seed)
    img = np.full((rows, cols), 0.15, np.float32)
    img[:, cols // 3 : 2 * cols // 3] = 0.7
    img[rows // 2 : rows // 2 + 2, cols // 3 : 2 * cols // 3] = 0.45
    img += rng.normal(0.0, 0.01, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


class TestSchemaFile:
    def test_is_a_valid_json_schema(self) -> None:
        schema = load_schema()
        jsonschema.validators.validator_for(schema).check_schema(schema)

    def test_channel_enum_matches_channel_op(self) -> None:
        items = load_schema()["properties"]["channels"]["items"]["enum"]
        assert items == [op.value for op in ChannelOp]

    def test_covers_every_field_and_version(self) -> None:
        props = set(load_schema()["properties"])
        assert props == {"version"} | {f.name for f in dataclasses.fields(PreprocessSpec)}

    def test_default_spec_validates(self) -> None:
        jsonschema.validate(PreprocessSpec().to_dict(), load_schema())


class TestSpecRoundTrip:
    def test_dict_round_trip(self) -> None:
        spec = PreprocessSpec(
            image_size=256,
            channels=("image", "laplacian", "canny"),
            laplacian_factor=3.0,
            canny_low=0.1,
            canny_high=0.3,
            clahe_clip=4.0,
            clahe_tiles=4,
            working_size=1024,
        )
        d = spec.to_dict()
        assert d["version"] == SPEC_VERSION
        assert d["channels"] == ["image", "laplacian", "canny"]
        assert PreprocessSpec.from_dict(d) == spec

    def test_json_is_canonical_and_round_trips(self) -> None:
        spec = PreprocessSpec(channels=("sobel", "prewitt", "roberts"))
        text = spec.to_json()
        assert list(json.loads(text)) == sorted(spec.to_dict())
        assert " " not in text
        assert PreprocessSpec.from_json(text) == spec

    def test_omitted_fields_take_defaults(self) -> None:
        spec = PreprocessSpec.from_dict({"version": 1, "image_size": 128})
        assert spec == PreprocessSpec(image_size=128)

    def test_equal_values_normalise_to_one_form(self) -> None:
        a = PreprocessSpec(laplacian_factor=3, channels=["sobel", "sobel", "sobel"])  # type: ignore[arg-type]
        b = PreprocessSpec(laplacian_factor=3.0, channels=(ChannelOp.SOBEL,) * 3)  # type: ignore[arg-type]
        assert a == b and a.to_json() == b.to_json() and a.spec_id == b.spec_id
        assert type(a.laplacian_factor) is float and type(a.channels[0]) is str

    def test_is_frozen_and_hashable(self) -> None:
        spec = PreprocessSpec()
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.image_size = 512  # type: ignore[misc]
        assert len({spec, PreprocessSpec()}) == 1


class TestSpecId:
    def test_stable_and_short_hex(self) -> None:
        first, second = PreprocessSpec().spec_id, PreprocessSpec().spec_id
        assert first == second and len(first) == 12
        int(first, 16)

    @pytest.mark.parametrize(
        "change",
        [
            {"image_size": 225},
            {"channels": ("clahe", "clahe", "sobel")},
            {"laplacian_factor": 3.0},
            {"canny_low": 0.06},
            {"canny_high": 0.11},
            {"clahe_clip": 2.5},
            {"clahe_tiles": 4},
            {"working_size": 1024},
        ],
    )
    def test_changes_when_a_field_changes(self, change: dict[str, Any]) -> None:
        assert dataclasses.replace(PreprocessSpec(), **change).spec_id != PreprocessSpec().spec_id


BAD_SPECS = {
    "unknown op": {"channels": ["clahe", "blur", "sobel"]},
    "two channels": {"channels": ["clahe", "sobel"]},
    "size below 32": {"image_size": 16},
    "size as string": {"image_size": "224"},
    "size as float": {"image_size": 224.5},
    "size as bool": {"image_size": True},
    "factor as string": {"laplacian_factor": "1.5"},
    "negative factor": {"laplacian_factor": -1.0},
    "zero clip": {"clahe_clip": 0},
    "zero tiles": {"clahe_tiles": 0},
    "tiny working size": {"working_size": 8},
    "unknown field": {"blur": 3},
    "wrong version": {"version": 2},
    "canny low above high": {"canny_low": 0.5, "canny_high": 0.2},
}


class TestSpecRejected:
    @pytest.mark.parametrize("name", sorted(BAD_SPECS))
    def test_from_dict_raises_spec_error(self, name: str) -> None:
        with pytest.raises(SpecError, match="invalid preprocess spec"):
            PreprocessSpec.from_dict({"version": SPEC_VERSION, **BAD_SPECS[name]})

    def test_error_names_the_field(self) -> None:
        with pytest.raises(SpecError, match="image_size"):
            PreprocessSpec.from_dict({"version": 1, "image_size": 16})

    def test_missing_version(self) -> None:
        with pytest.raises(SpecError, match="version"):
            PreprocessSpec.from_dict({"image_size": 224})

    def test_not_an_object(self) -> None:
        with pytest.raises(SpecError):
            PreprocessSpec.from_dict(["clahe"])  # type: ignore[arg-type]

    def test_constructor_validates_too(self) -> None:
        with pytest.raises(SpecError):
            PreprocessSpec(image_size=16)
        with pytest.raises(SpecError):
            PreprocessSpec(channels=("clahe", "clahe", "fourier"))

    def test_bad_json_text(self) -> None:
        with pytest.raises(SpecError, match="not valid JSON"):
            PreprocessSpec.from_json("{version: 1")

    def test_spec_error_is_a_value_error(self) -> None:
        assert issubclass(SpecError, ValueError)


class TestPreprocess:
    def test_output_shape_dtype_range(self) -> None:
        spec = PreprocessSpec(image_size=64, channels=("image", "laplacian", "canny"))
        out = preprocess(radiograph_like(), spec)
        assert out.shape == (64, 64, 3) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0

    def test_deterministic_and_input_untouched(self) -> None:
        img = radiograph_like()
        before = img.copy()
        spec = PreprocessSpec(image_size=64, channels=("clahe", "sobel", "canny"))
        np.testing.assert_array_equal(preprocess(img, spec), preprocess(img, spec))
        np.testing.assert_array_equal(img, before)

    def test_bitwise_reproducible_whatever_the_memory_alignment(self) -> None:
        # OpenCV's SIMD paths may round differently on differently aligned buffers;
        # the same image must still give the same bits (training vs scanning).
        img = radiograph_like(130, 97)
        spec = PreprocessSpec(image_size=48, channels=("sobel", "prewitt", "roberts"))
        reference = preprocess(img, spec)
        for offset in range(1, 8):
            buffer = np.empty(img.size + 8, np.float32)
            shifted = buffer[offset : offset + img.size].reshape(img.shape)
            shifted[...] = img
            np.testing.assert_array_equal(preprocess(shifted, spec), reference)

    def test_each_channel_is_its_op_letterboxed(self) -> None:
        img = radiograph_like(120, 80)  # smaller than working_size: filtered at its own size
        spec = PreprocessSpec(image_size=48, channels=("sobel", "image", "canny"))
        out = preprocess(img, spec)
        np.testing.assert_allclose(out[..., 0], letterbox(sobel(img), 48), atol=1e-6)
        np.testing.assert_allclose(out[..., 1], letterbox(img, 48), atol=1e-6)
        expected_canny = letterbox(canny(img, spec.canny_low, spec.canny_high), 48)
        np.testing.assert_allclose(out[..., 2], expected_canny, atol=1e-6)

    def test_portrait_image_is_padded_with_zero_left_and_right(self) -> None:
        spec = PreprocessSpec(image_size=60, channels=("image", "image", "image"))
        out = preprocess(np.ones((300, 150), np.float32), spec)
        np.testing.assert_array_equal(out[:, :15], 0.0)
        np.testing.assert_array_equal(out[:, 45:], 0.0)
        np.testing.assert_allclose(out[:, 15:45], 1.0)

    def test_large_images_are_filtered_at_working_size(self) -> None:
        spec = PreprocessSpec(image_size=64, channels=("sobel", "laplacian", "clahe"))
        big = radiograph_like(1200, 800)
        small = resize_long_side(big, spec.working_size)
        assert to_working_size(big, spec).shape == (512, 341)
        np.testing.assert_array_equal(preprocess(big, spec), preprocess(small, spec))

    def test_edge_strength_does_not_depend_on_resolution(self) -> None:
        # The same scene at 4x the pixels gives the same sobel channel after the
        # working-size step (a sharp step on a multiple of 4 stays sharp).
        spec = PreprocessSpec(image_size=64, working_size=128, channels=("sobel",) * 3)
        small = np.zeros((128, 96), np.float32)
        small[:, 48:] = 0.5
        big = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)
        np.testing.assert_allclose(preprocess(big, spec), preprocess(small, spec), atol=1e-6)

    def test_strided_view_matches_its_copy(self) -> None:
        img = radiograph_like(90, 70)
        spec = PreprocessSpec(image_size=32, channels=("sobel", "image", "clahe"))
        np.testing.assert_array_equal(preprocess(img.T, spec), preprocess(img.T.copy(), spec))

    def test_float64_input_matches_float32(self) -> None:
        img = radiograph_like(90, 70)
        spec = PreprocessSpec(image_size=32)
        np.testing.assert_array_equal(
            preprocess(img.astype(np.float64), spec), preprocess(img, spec)
        )

    @pytest.mark.parametrize(
        "bad",
        [
            np.zeros((10, 10, 3), np.float32),
            np.zeros((0, 10), np.float32),
            np.zeros((8, 8), np.uint16),
        ],
    )
    def test_rejects_non_grey_or_non_float(self, bad: np.ndarray) -> None:
        with pytest.raises(ValueError):
            preprocess(bad, PreprocessSpec())

    @pytest.mark.parametrize("op", list(ChannelOp))
    def test_every_op_is_wired(self, op: ChannelOp) -> None:
        img = radiograph_like(64, 48)
        out = apply_channel_op(op, img, PreprocessSpec())
        assert out.shape == img.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0 and out.any()
