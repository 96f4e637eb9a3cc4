"""batchfrac.report.pseudonym: keyed, stable pseudonyms; short or unreadable keys refused."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest

from batchfrac.report.pseudonym import MIN_KEY_BYTES, Pseudonymizer, PseudonymKeyError, load_key

KEY = b"k" * 31 + b"Z"
OTHER_KEY = b"o" * 40


class TestPseudonymizer:
    def test_is_the_first_16_upper_hex_digits_of_the_field_keyed_hmac(self) -> None:
        expected = hmac.new(KEY, b"PatientID\x00PAT001", hashlib.sha256).hexdigest()[:16].upper()
        assert Pseudonymizer(KEY).patient_id("PAT001") == expected

    def test_is_stable_for_the_same_key(self) -> None:
        assert Pseudonymizer(KEY).patient_id("PAT001") == Pseudonymizer(KEY).patient_id("PAT001")
        first = Pseudonymizer(KEY).accession_number("ACC001")
        assert first == Pseudonymizer(KEY).accession_number("ACC001")

    def test_differs_with_another_key(self) -> None:
        assert Pseudonymizer(KEY).patient_id("PAT001") != Pseudonymizer(OTHER_KEY).patient_id(
            "PAT001"
        )

    def test_the_field_name_keeps_equal_values_of_two_fields_apart(self) -> None:
        pseudo = Pseudonymizer(KEY)
        assert pseudo.patient_id("12345") != pseudo.accession_number("12345")

    def test_fits_sh_and_lo(self) -> None:
        value = Pseudonymizer(KEY).accession_number("Ünïcode accession ✓")
        assert value is not None and len(value) == 16
        assert value == value.upper() and int(value, 16) >= 0

    @pytest.mark.parametrize("empty", [None, ""])
    def test_none_and_empty_stay_none(self, empty: str | None) -> None:
        assert Pseudonymizer(KEY).patient_id(empty) is None
        assert Pseudonymizer(KEY).accession_number(empty) is None

    def test_repr_hides_the_key(self) -> None:
        assert "k" * 8 not in repr(Pseudonymizer(KEY))


class TestLoadKey:
    def test_reads_raw_bytes_and_strips_one_trailing_newline(self, tmp_path: Path) -> None:
        path = tmp_path / "key"
        path.write_bytes(KEY + b"\n\n")
        assert load_key(path) == KEY + b"\n"

    def test_key_of_exactly_the_minimum_is_accepted(self, tmp_path: Path) -> None:
        path = tmp_path / "key"
        path.write_bytes(b"x" * MIN_KEY_BYTES + b"\n")
        assert load_key(path) == b"x" * MIN_KEY_BYTES

    def test_short_key_is_refused_without_showing_it(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        secret = b"s3cr3t-but-too-short"
        path = tmp_path / "key"
        path.write_bytes(secret + b"\n")
        with caplog.at_level(logging.DEBUG), pytest.raises(PseudonymKeyError) as caught:
            load_key(path)
        message = str(caught.value)
        assert str(len(secret)) in message and str(MIN_KEY_BYTES) in message
        assert secret.decode() not in message and secret.decode() not in caplog.text

    def test_unreadable_file_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(PseudonymKeyError, match="cannot read pseudonymisation key file"):
            load_key(tmp_path / "missing")
