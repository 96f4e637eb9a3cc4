"""Tests for batchfrac.ingest.walk: streaming, deterministic, symlink-safe file discovery."""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

import pytest

from batchfrac.ingest.walk import file_stat, walk
from batchfrac.records import FileStat


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _relative(root: Path, paths: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    for name in ("b.dcm", "a.txt", "noext", "sub2/x", "sub1/y", "sub1/deep/z"):
        _touch(root / name)
    return root


class TestWalk:
    def test_nested_dirs_files_before_subdirs_sorted_by_name(self, archive: Path) -> None:
        found = _relative(archive, list(walk(archive)))
        assert found == ["a.txt", "b.dcm", "noext", "sub1/y", "sub1/deep/z", "sub2/x"]

    def test_order_does_not_depend_on_creation_order(self, tmp_path: Path) -> None:
        first, second = tmp_path / "first", tmp_path / "second"
        names = ["c/2", "a", "c/1", "b/9", "B", "_x"]
        for name in names:
            _touch(first / name)
        for name in reversed(names):
            _touch(second / name)
        assert _relative(first, list(walk(first))) == _relative(second, list(walk(second)))
        assert _relative(first, list(walk(first))) == ["B", "_x", "a", "b/9", "c/1", "c/2"]

    def test_hidden_and_extensionless_files_are_yielded(self, tmp_path: Path) -> None:
        for name in (".DS_Store", "._image1.png", "IM000001", ".hidden/inner"):
            _touch(tmp_path / name)
        found = set(_relative(tmp_path, list(walk(tmp_path))))
        assert found == {".DS_Store", "._image1.png", "IM000001", ".hidden/inner"}

    def test_symlink_to_file_inside_root_is_yielded_under_link_name(self, tmp_path: Path) -> None:
        _touch(tmp_path / "real.dcm")
        (tmp_path / "link.dcm").symlink_to(tmp_path / "real.dcm")
        assert _relative(tmp_path, list(walk(tmp_path))) == ["link.dcm", "real.dcm"]

    def test_symlink_to_dir_outside_root_is_not_followed(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        root = tmp_path / "root"
        _touch(root / "inside.dcm")
        _touch(tmp_path / "outside" / "secret.dcm")
        (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
        (root / "escape_file").symlink_to(tmp_path / "outside" / "secret.dcm")
        with caplog.at_level(logging.WARNING, logger="batchfrac.ingest.walk"):
            found = _relative(root, list(walk(root)))
        assert found == ["inside.dcm"]
        assert "escape" in caplog.text and "outside the archive" in caplog.text

    def test_symlink_loop_terminates_without_duplicates(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        _touch(tmp_path / "a" / "one.dcm")
        _touch(tmp_path / "a" / "b" / "two.dcm")
        (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a", target_is_directory=True)
        (tmp_path / "a" / "self").symlink_to(".", target_is_directory=True)
        (tmp_path / "a" / "root").symlink_to(tmp_path, target_is_directory=True)
        with caplog.at_level(logging.WARNING, logger="batchfrac.ingest.walk"):
            found = _relative(tmp_path, list(walk(tmp_path)))
        assert found == ["a/one.dcm", "a/b/two.dcm"]
        assert "already walked" in caplog.text

    def test_directory_reached_twice_is_walked_once(self, tmp_path: Path) -> None:
        _touch(tmp_path / "z_real" / "img.dcm")
        (tmp_path / "a_alias").symlink_to(tmp_path / "z_real", target_is_directory=True)
        # The alias comes first in walk order, so the files are reported under it.
        assert _relative(tmp_path, list(walk(tmp_path))) == ["a_alias/img.dcm"]

    def test_self_referencing_link_is_logged_and_skipped(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        _touch(tmp_path / "ok.dcm")
        (tmp_path / "dangling").symlink_to(tmp_path / "missing.dcm")
        (tmp_path / "selfloop").symlink_to(tmp_path / "selfloop")
        with caplog.at_level(logging.WARNING, logger="batchfrac.ingest.walk"):
            found = _relative(tmp_path, list(walk(tmp_path)))
        assert found == ["ok.dcm"]
        assert "dangling" in caplog.text and "selfloop" in caplog.text

    def test_fifo_is_not_yielded(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        _touch(tmp_path / "ok.dcm")
        os.mkfifo(tmp_path / "pipe")
        with caplog.at_level(logging.WARNING, logger="batchfrac.ingest.walk"):
            found = _relative(tmp_path, list(walk(tmp_path)))
        assert found == ["ok.dcm"]
        assert "pipe" in caplog.text

    def test_unreadable_directory_is_logged_and_walk_continues(
        self, archive: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        real_scandir = os.scandir

        def scandir(path: str | os.PathLike[str]) -> object:
            if Path(path).name == "sub1":
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        # Permissions cannot be relied on here (tests may run as root).
        monkeypatch.setattr(os, "scandir", scandir)
        with caplog.at_level(logging.WARNING, logger="batchfrac.ingest.walk"):
            found = _relative(archive, list(walk(archive)))
        assert found == ["a.txt", "b.dcm", "noext", "sub2/x"]
        assert "sub1" in caplog.text and "Permission denied" in caplog.text

    def test_is_a_lazy_generator(self, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        listed: list[str] = []
        real_scandir = os.scandir

        def scandir(path: str | os.PathLike[str]) -> object:
            listed.append(Path(path).name)
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
        files = walk(archive)
        assert inspect.isgenerator(files)
        assert listed == []
        assert next(files).name == "a.txt"
        assert listed == ["archive"]  # only the root has been listed so far
        _touch(archive / "sub2" / "late.dcm")  # created after the walk started
        rest = _relative(archive, list(files))
        assert rest == ["b.dcm", "noext", "sub1/y", "sub1/deep/z", "sub2/late.dcm", "sub2/x"]

    def test_root_that_is_a_file_is_yielded_alone(self, tmp_path: Path) -> None:
        path = _touch(tmp_path / "one.dcm")
        assert list(walk(path)) == [path]

    def test_missing_root_raises(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            next(walk(tmp_path / "nope"))


class TestFileStat:
    def test_size_and_mtime_of_a_file(self, tmp_path: Path) -> None:
        path = _touch(tmp_path / "f.dcm", b"12345")
        os.utime(path, ns=(1_000_000_000, 1_234_567_890_123))
        assert file_stat(path) == FileStat(path=str(path), size=5, mtime_ns=1_234_567_890_123)

    def test_changes_when_the_file_is_rewritten(self, tmp_path: Path) -> None:
        path = _touch(tmp_path / "f.dcm", b"12345")
        os.utime(path, ns=(1, 10))
        before = file_stat(path)
        path.write_bytes(b"123456")
        os.utime(path, ns=(1, 20))
        assert file_stat(path) != before

    def test_missing_file_raises_oserror(self, tmp_path: Path) -> None:
        with pytest.raises(OSError):
            file_stat(tmp_path / "gone.dcm")
