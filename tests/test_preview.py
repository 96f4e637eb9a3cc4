"""`batchfrac preview`: the filter panel, reading pictures and DICOM, safe output names."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from batchfrac.cli import app
from batchfrac.enums import Reason
from batchfrac.errors import FileRejected
from batchfrac.ingest.filters import letterbox
from batchfrac.ingest.preprocess import PreprocessSpec
from batchfrac.preview import (
    COLUMNS,
    GAP,
    LABEL_HEIGHT,
    TILE_SIZE,
    panel_tiles,
    preview_path,
    read_picture,
    render_panel,
)
from tests.factories import gradient_image, make_image_dataset, write_dataset

N_TILES = 9  # original, CLAHE, Sobel, Prewitt, Roberts, Canny, Laplacian x1.5/x3.0, input
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*_preview\.png$")


def panel_shape(tile: int) -> tuple[int, int, int]:
    rows = -(-N_TILES // COLUMNS)
    return (
        rows * (LABEL_HEIGHT + tile) + (rows + 1) * GAP,
        COLUMNS * tile + (COLUMNS + 1) * GAP,
        3,
    )


def step_image(rows: int = 90, cols: int = 60) -> np.ndarray:
    img = np.full((rows, cols), 0.2, np.float32)
    img[:, cols // 2 :] = 0.8
    return img


def write_png(path: Path, pixels: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), pixels)
    return path


class TestRenderPanel:
    def test_layout_size_and_dtype(self) -> None:
        panel = render_panel(step_image(), PreprocessSpec(image_size=32), tile=64)
        assert panel.shape == panel_shape(64) and panel.dtype == np.uint8

    def test_tiles_in_the_paper_order(self) -> None:
        labels = [label for label, _ in panel_tiles(step_image(), PreprocessSpec())]
        assert len(labels) == N_TILES
        expected = ["original", "CLAHE", "Sobel", "Prewitt", "Roberts", "Canny"]
        expected += ["Laplacian x1.5", "Laplacian x3.0", "input clahe/clahe/clahe"]
        for label, prefix in zip(labels, expected, strict=True):
            assert label.startswith(prefix)

    def test_first_tile_is_the_image_under_its_label(self) -> None:
        img = step_image()
        tile = 60
        panel = render_panel(img, PreprocessSpec(image_size=32), tile=tile)
        y, x = GAP + LABEL_HEIGHT, GAP
        expected = letterbox(np.round(img * 255).astype(np.uint8), tile)
        np.testing.assert_array_equal(panel[y : y + tile, x : x + tile, 1], expected)
        label_band = panel[GAP : GAP + LABEL_HEIGHT, GAP : GAP + tile]
        assert label_band.max() == 255  # white text on black

    def test_edge_tiles_show_the_step(self) -> None:
        tiles = dict(panel_tiles(step_image(), PreprocessSpec()))
        sobel_tile = tiles["Sobel"]
        assert np.flatnonzero(sobel_tile.any(axis=0)).tolist() == [29, 30]
        canny_tile = next(v for k, v in tiles.items() if k.startswith("Canny"))
        assert canny_tile.any()

    def test_model_input_tile_is_rgb_in_bgr_order(self) -> None:
        spec = PreprocessSpec(image_size=32, channels=("image", "canny", "canny"))
        img = np.full((40, 40), 0.5, np.float32)  # no edges: canny channels are 0
        tile = 50
        panel = render_panel(img, spec, tile=tile)
        y, x = GAP + 2 * (LABEL_HEIGHT + tile + GAP) + LABEL_HEIGHT, GAP + 2 * (tile + GAP)
        centre = panel[y + tile // 2, x + tile // 2]
        assert centre.tolist() == [0, 0, 128]  # channel 0 (red) holds the image


class TestReadPicture:
    def test_8_bit_png(self, tmp_path: Path) -> None:
        pixels = np.array([[0, 51], [204, 255]], np.uint8)
        out = read_picture(write_png(tmp_path / "a.png", pixels))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, pixels / 255.0, atol=1e-6)

    def test_16_bit_png_keeps_depth(self, tmp_path: Path) -> None:
        pixels = np.array([[0, 1000], [40000, 65535]], np.uint16)
        out = read_picture(write_png(tmp_path / "b.png", pixels))
        np.testing.assert_allclose(out, pixels / 65535.0, atol=1e-6)

    def test_colour_becomes_grey(self, tmp_path: Path) -> None:
        out = read_picture(write_png(tmp_path / "c.png", np.full((4, 4, 3), 100, np.uint8)))
        assert out.shape == (4, 4)

    def test_garbage_is_a_decode_error(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.png"
        path.write_bytes(b"not a png at all")
        with pytest.raises(FileRejected) as info:
            read_picture(path)
        assert info.value.reason is Reason.DECODE_ERROR


HOSTILE_NAMES = [
    "..",
    "...",
    "....png",
    "..\\..\\escape.png",
    "-rf.png",
    "a b;c|d$e.dcm",
    ".bashrc",
]


class TestPreviewPath:
    @pytest.mark.parametrize("name", HOSTILE_NAMES)
    def test_hostile_stem_stays_in_out(self, tmp_path: Path, name: str) -> None:
        target = preview_path(tmp_path / "out", Path("/archive") / name)
        assert target.parent == tmp_path / "out"
        assert SAFE_NAME.match(target.name), target.name

    def test_ordinary_stem_is_kept(self, tmp_path: Path) -> None:
        assert preview_path(tmp_path, Path("x/image1.png")).name == "image1_preview.png"

    def test_long_stem_is_truncated(self, tmp_path: Path) -> None:
        assert len(preview_path(tmp_path, Path("a" * 500 + ".dcm")).name) <= 120


class TestPreviewCommand:
    def invoke(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["preview", *args])
        return result.exit_code, result.output

    def test_png(self, tmp_path: Path) -> None:
        src = write_png(tmp_path / "image1.png", (step_image() * 255).astype(np.uint8))
        code, output = self.invoke(str(src), "--out", str(tmp_path / "out"))
        assert code == 0, output
        written = tmp_path / "out" / "image1_preview.png"
        panel = cv2.imread(str(written))
        assert panel is not None and panel.shape == panel_shape(TILE_SIZE)
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [written.name]

    def test_dicom(self, tmp_path: Path) -> None:
        ds = make_image_dataset(gradient_image(64, 48), BodyPartExamined="HAND")
        src = write_dataset(ds, tmp_path / "study" / "IM0001.dcm")
        code, output = self.invoke(str(src), "--out", str(tmp_path / "out"))
        assert code == 0, output
        panel = cv2.imread(str(tmp_path / "out" / "IM0001_preview.png"))
        assert panel is not None and panel.shape == panel_shape(TILE_SIZE)
        original = panel[GAP + LABEL_HEIGHT : GAP + LABEL_HEIGHT + TILE_SIZE, GAP : GAP + TILE_SIZE]
        assert original.max() == 255  # the saturated square of gradient_image

    def test_dicom_frame_option(self, tmp_path: Path) -> None:
        frames = np.stack([gradient_image(32, 32), 4095 - gradient_image(32, 32)])
        src = write_dataset(make_image_dataset(frames), tmp_path / "multi.dcm")
        panels = []
        for frame in ("0", "1"):
            out = tmp_path / f"out{frame}"
            code, output = self.invoke(str(src), "--out", str(out), "--frame", frame)
            assert code == 0, output
            panels.append(cv2.imread(str(out / "multi_preview.png")))
        assert panels[0].shape == panels[1].shape and not np.array_equal(*panels)
        code, output = self.invoke(str(src), "--out", str(tmp_path / "o"), "--frame", "2")
        assert code == 1 and "2 frame" in output

    def test_not_dicom_fails_cleanly(self, tmp_path: Path) -> None:
        src = tmp_path / "notes.txt"
        src.write_text("hello")
        code, output = self.invoke(str(src), "--out", str(tmp_path / "o"))
        assert code == 1 and "not_dicom" in output
        assert not (tmp_path / "o").exists()

    def test_hostile_stem_cannot_escape_out(self, tmp_path: Path) -> None:
        archive = tmp_path / "archive"
        archive.mkdir()
        src = write_png(archive / "..\\..\\escape.png", (step_image() * 255).astype(np.uint8))
        out = tmp_path / "out"
        code, output = self.invoke(str(src), "--out", str(out))
        assert code == 0, output
        [written] = list(out.iterdir())
        assert SAFE_NAME.match(written.name)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["archive", "out"]
        assert sorted(p.name for p in archive.iterdir()) == [src.name]

    def test_spec_file(self, tmp_path: Path) -> None:
        src = write_png(tmp_path / "a.png", (step_image() * 255).astype(np.uint8))
        spec = tmp_path / "spec.json"
        spec.write_text(PreprocessSpec(image_size=64, channels=("sobel",) * 3).to_json())
        code, output = self.invoke(str(src), "--out", str(tmp_path / "o"), "--spec", str(spec))
        assert code == 0, output
        assert (tmp_path / "o" / "a_preview.png").is_file()

    def test_invalid_spec_is_a_fatal_error(self, tmp_path: Path) -> None:
        src = write_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
        spec = tmp_path / "spec.json"
        spec.write_text('{"version": 1, "channels": ["x", "y", "z"]}')
        code, output = self.invoke(str(src), "--out", str(tmp_path / "o"), "--spec", str(spec))
        assert code == 1 and "channels" in output
        assert not (tmp_path / "o").exists()

    def test_unreadable_picture_fails_cleanly(self, tmp_path: Path) -> None:
        src = tmp_path / "broken.png"
        src.write_bytes(b"\x89PNG garbage")
        code, output = self.invoke(str(src), "--out", str(tmp_path / "o"))
        assert code == 1 and "decode_error" in output

    def test_frame_out_of_range(self, tmp_path: Path) -> None:
        src = write_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
        code, output = self.invoke(str(src), "--out", str(tmp_path / "o"), "--frame", "3")
        assert code == 1 and "1 frame" in output
