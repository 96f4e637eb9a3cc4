"""Tests for batchfrac.ingest.walk: streaming, deterministic, symlink-safe file discovery."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from batchfrac.enums import Reason, Status
from batchfrac.ingest.walk import file_stat, walk, walk_entries
from batchfrac.records import FileStat


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _relative(root: Path, paths: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def _verdicts(root: Path) -> dict[str, Reason | None]:
    """Every entry's path relative to ``root`` -> its reason (``None``: a file to ingest),
    in walk order (dict order)."""
    return {e.path.relative_to(root).as_posix(): e.reason for e in walk_entries(root)}


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

    def test_symlink_to_file_inside_root_is_a_duplicate_of_its_target(self, tmp_path: Path) -> None:
        _touch(tmp_path / "real.dcm")
        (tmp_path / "link.dcm").symlink_to(tmp_path / "real.dcm")
        assert _relative(tmp_path, list(walk(tmp_path))) == ["real.dcm"]
        assert _verdicts(tmp_path) == {
            "link.dcm": Reason.DUPLICATE,
            "real.dcm": None,
        }
        (link,) = [e for e in walk_entries(tmp_path) if e.reason is Reason.DUPLICATE]
        assert "real.dcm" in link.detail and link.file.size == os.lstat(link.path).st_size

    def test_hard_links_are_reported_once(self, tmp_path: Path) -> None:
        _touch(tmp_path / "a" / "first.dcm")
        os.link(tmp_path / "a" / "first.dcm", tmp_path / "b_second.dcm")
        assert _verdicts(tmp_path) == {"b_second.dcm": None, "a/first.dcm": Reason.DUPLICATE}

    def test_symlinks_out_of_the_root_are_rows_and_never_followed(self, tmp_path: Path) -> None:
        root = tmp_path / "root"
        _touch(root / "inside.dcm")
        _touch(tmp_path / "outside" / "secret.dcm")
        (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
        (root / "escape_file").symlink_to(tmp_path / "outside" / "secret.dcm")
        assert _relative(root, list(walk(root))) == ["inside.dcm"]
        assert _verdicts(root) == {
            "escape": Reason.OUTSIDE_ARCHIVE,
            "escape_file": Reason.OUTSIDE_ARCHIVE,
            "inside.dcm": None,
        }

    def test_symlink_loops_end_as_duplicate_rows(self, tmp_path: Path) -> None:
        _touch(tmp_path / "a" / "one.dcm")
        _touch(tmp_path / "a" / "b" / "two.dcm")
        (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a", target_is_directory=True)
        (tmp_path / "a" / "self").symlink_to(".", target_is_directory=True)
        (tmp_path / "a" / "root").symlink_to(tmp_path, target_is_directory=True)
        assert _relative(tmp_path, list(walk(tmp_path))) == ["a/one.dcm", "a/b/two.dcm"]
        assert _verdicts(tmp_path) == {
            "a/one.dcm": None,
            "a/root": Reason.DUPLICATE,
            "a/self": Reason.DUPLICATE,
            "a/b/two.dcm": None,
            "a/b/up": Reason.DUPLICATE,
        }

    def test_directory_reached_twice_is_walked_once(self, tmp_path: Path) -> None:
        _touch(tmp_path / "z_real" / "img.dcm")
        (tmp_path / "a_alias").symlink_to(tmp_path / "z_real", target_is_directory=True)
        # The alias comes first in walk order, so the files are reported under it.
        assert _verdicts(tmp_path) == {"a_alias/img.dcm": None, "z_real": Reason.DUPLICATE}

    def test_dangling_and_self_referencing_links_are_rows(self, tmp_path: Path) -> None:
        _touch(tmp_path / "ok.dcm")
        (tmp_path / "dangling").symlink_to(tmp_path / "missing.dcm")
        (tmp_path / "selfloop").symlink_to(tmp_path / "selfloop")
        assert _verdicts(tmp_path) == {
            "dangling": Reason.DANGLING_LINK,
            "ok.dcm": None,
            "selfloop": Reason.DANGLING_LINK,
        }
        assert Reason.DANGLING_LINK.status is Status.ERROR

    def test_fifo_is_a_row_and_never_opened(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _touch(tmp_path / "ok.dcm")
        os.mkfifo(tmp_path / "pipe")
        opened: list[str] = []
        real_open = os.open

        def spy(path: str | os.PathLike[str], *args: object, **kwargs: object) -> int:
            opened.append(str(path))
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", spy)
        assert _verdicts(tmp_path) == {"ok.dcm": None, "pipe": Reason.NOT_REGULAR_FILE}
        assert not [p for p in opened if p.endswith("pipe")]

    def test_unreadable_directory_is_a_row_and_the_walk_continues(
        self, archive: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_scandir = os.scandir

        def scandir(path: str | os.PathLike[str]) -> object:
            if Path(path).name == "sub1":
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        # Permissions cannot be relied on here (tests may run as root): simulate it.
        monkeypatch.setattr(os, "scandir", scandir)
        assert _relative(archive, list(walk(archive))) == ["a.txt", "b.dcm", "noext", "sub2/x"]
        (unreadable,) = [e for e in walk_entries(archive) if e.reason is not None]
        assert unreadable.path == archive / "sub1"
        assert unreadable.reason is Reason.UNREADABLE_DIRECTORY
        assert "Permission denied" in unreadable.detail
        assert Reason.UNREADABLE_DIRECTORY.status is Status.ERROR

    def test_unlistable_root_raises(self, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def scandir(path: str | os.PathLike[str]) -> object:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(os, "scandir", scandir)
        with pytest.raises(PermissionError):
            next(walk_entries(archive))

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
