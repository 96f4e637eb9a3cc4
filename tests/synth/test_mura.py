"""generate_mura: the exact MURA-v1.1 layout, headerless CSVs, disjoint patients."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import pytest

from batchfrac.enums import Bone
from batchfrac.synth import SynthConfig, generate_mura
from tests.factories import tree_bytes

CONFIG = SynthConfig(studies=16, seed=4, mura_sides=(48, 64))
PARTS = "|".join(b.mura_part for b in Bone)
IMAGE_RE = re.compile(
    rf"^MURA-v1\.1/(train|valid)/({PARTS})/(patient\d{{5}})/study(\d+)_(positive|negative)/image(\d+)\.png$"
)
STUDY_RE = re.compile(
    rf"^MURA-v1\.1/(train|valid)/({PARTS})/(patient\d{{5}})/study(\d+)_(positive|negative)/,([01])$"
)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def mura(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mura")
    generate_mura(out, CONFIG)
    return out


def test_drawing_processes_do_not_change_the_bytes(mura: Path, tmp_path: Path) -> None:
    generate_mura(tmp_path, CONFIG, jobs=3)
    assert tree_bytes(tmp_path) == tree_bytes(mura)


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        generate_mura(tmp_path, CONFIG, jobs=0)


class TestMuraLayout:
    def test_every_png_path_matches_the_layout(self, mura: Path) -> None:
        pngs = [
            p.relative_to(mura).as_posix()
            for p in mura.rglob("*.png")
            if not p.name.startswith("._")
        ]
        assert pngs
        for path in pngs:
            assert IMAGE_RE.match(path), path

    def test_image_path_csvs_are_headerless_and_complete(self, mura: Path) -> None:
        listed = []
        for split in ("train", "valid"):
            lines = _lines(mura / "MURA-v1.1" / f"{split}_image_paths.csv")
            assert lines, f"{split} split is empty"
            for line in lines:
                m = IMAGE_RE.match(line)
                assert m and m.group(1) == split, line
                assert (mura / line).is_file()
            listed += lines
        on_disk = {
            p.relative_to(mura).as_posix()
            for p in mura.rglob("*.png")
            if not p.name.startswith("._")
        }
        assert sorted(listed) == sorted(on_disk)

    def test_labels_agree_with_folder_suffix(self, mura: Path) -> None:
        for split in ("train", "valid"):
            for line in _lines(mura / "MURA-v1.1" / f"{split}_labeled_studies.csv"):
                m = STUDY_RE.match(line)
                assert m, line
                assert (m.group(5) == "positive") == (m.group(6) == "1")
                assert (mura / line.rsplit(",", 1)[0]).is_dir()

    def test_patients_are_disjoint_and_parts_cover_both_splits(self, mura: Path) -> None:
        patients, parts = {}, {}
        for split in ("train", "valid"):
            rows = [
                STUDY_RE.match(x)
                for x in _lines(mura / "MURA-v1.1" / f"{split}_labeled_studies.csv")
            ]
            patients[split] = {m.group(3) for m in rows if m}
            parts[split] = {m.group(2) for m in rows if m}
        assert not patients["train"] & patients["valid"]
        assert parts["train"] == parts["valid"] == {b.mura_part for b in Bone}

    def test_pngs_are_8bit_grey(self, mura: Path) -> None:
        first = _lines(mura / "MURA-v1.1" / "train_image_paths.csv")[0]
        img = cv2.imread(str(mura / first), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 2 and img.dtype.name == "uint8"
        assert 48 <= max(img.shape) <= 64

    def test_apple_double_junk_is_present_but_not_listed(self, mura: Path) -> None:
        junk = list(mura.rglob("._image1.png"))
        assert len(junk) == 1
        assert junk[0].read_bytes()[:4] == b"\x00\x05\x16\x07"
        listed = _lines(mura / "MURA-v1.1" / "train_image_paths.csv")
        assert all("._" not in line for line in listed)

    def test_same_seed_same_bytes(self, mura: Path, tmp_path: Path) -> None:
        generate_mura(tmp_path, CONFIG)
        assert tree_bytes(tmp_path) == tree_bytes(mura)

    def test_default_png_size_is_mura_like(self, tmp_path: Path) -> None:
        generate_mura(tmp_path, SynthConfig(studies=1, seed=0, junk=False))
        (png,) = tmp_path.rglob("image1.png")
        img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        assert 300 <= max(img.shape) <= 512
