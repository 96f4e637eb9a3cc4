"""batchfrac.pacs.uids: derived UIDs and file names that cannot escape their folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchfrac.pacs.uids import derive_uid, is_valid_uid, uid_file_name


class TestDeriveUid:
    def test_same_parts_same_uid(self) -> None:
        assert derive_uid("run", "1.2.3", "sr") == derive_uid("run", "1.2.3", "sr")

    def test_different_parts_different_uids(self) -> None:
        uids = {derive_uid("run", "1.2.3", kind) for kind in ("sr", "kos", "x")}
        assert len(uids) == 3

    def test_part_boundaries_matter(self) -> None:
        assert derive_uid("ab", "") != derive_uid("a", "b")

    def test_is_a_valid_uid(self) -> None:
        assert is_valid_uid(derive_uid("run", "1.2.3"))


class TestUidFileName:
    def test_valid_uid_names_itself(self) -> None:
        assert uid_file_name("1.2.840.10008.1") == "1.2.840.10008.1.dcm"

    @pytest.mark.parametrize(
        "hostile",
        ["../../etc/passwd", "..", ".", "1.2/../3", "a\x00b", "1.2.3\n", "/abs", "9" * 65, ""],
    )
    def test_hostile_values_stay_in_their_folder(self, tmp_path: Path, hostile: str) -> None:
        name = uid_file_name(hostile)
        assert name.startswith("invalid-") and "/" not in name and "\x00" not in name
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()

    def test_two_hostile_values_never_share_a_name(self) -> None:
        assert uid_file_name("../a") != uid_file_name("../b")

    @pytest.mark.parametrize("value", ["1.02", "1..2", ".1", "1.", "1.2a", None, 12])
    def test_malformed_uids_are_not_valid(self, value: object) -> None:
        assert not is_valid_uid(value)
