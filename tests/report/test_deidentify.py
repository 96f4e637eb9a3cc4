"""batchfrac.report.deidentify: pseudonymised rows, paths and log lines; one --out, one
pseudonymisation setting; what export does with a key."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchfrac.report.deidentify import (
    KnownPseudonyms,
    MixedPrivacyError,
    ReportPseudonyms,
    ScanLogFormatter,
    check_outdir,
    dicom_pseudonymizer,
    export_privacy,
    key_marker,
    redact_quoted_values,
)
from batchfrac.report.pseudonym import Pseudonymizer, PseudonymKeyError
from tests.report_pages import sample_rows, write_sample_report

KEY = b"0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210"


def pseudonyms(key: bytes = KEY, archive: str = "/archive") -> ReportPseudonyms:
    return ReportPseudonyms(Pseudonymizer(key), archive)


class TestPaths:
    def test_the_root_stays_and_every_name_below_it_is_a_pseudonym(self) -> None:
        path = pseudonyms().path("/archive/SYNTH0002/20160201_ACC0000003/IM000001")
        root, *names = path.split("/")[1:]
        assert root == "archive" and len(names) == 3
        assert all(len(n) == 16 and n == n.upper() for n in names)
        assert "SYNTH0002" not in path and "ACC0000003" not in path

    def test_stable_per_name_and_per_key(self) -> None:
        a = pseudonyms().path("/archive/P1/S1/IM1")
        b = pseudonyms().path("/archive/P1/S2/IM1")
        assert a.split("/")[:3] == b.split("/")[:3]  # same folder, same pseudonym
        assert a.split("/")[-1] == b.split("/")[-1]
        assert a == pseudonyms().path("/archive/P1/S1/IM1")
        assert a != pseudonyms(OTHER).path("/archive/P1/S1/IM1")

    def test_a_relative_root_and_its_resolved_form(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "arch").mkdir()
        p = pseudonyms(archive="arch")
        assert p.path("arch/P1/IM1").startswith("arch/")
        resolved = p.path(f"{tmp_path}/arch/P1/IM1")
        assert resolved.startswith(f"{tmp_path}/arch/") and "P1" not in resolved
        assert p.path("arch") == "arch"

    def test_paths_outside_the_root_lose_every_name(self) -> None:
        path = pseudonyms().path("/elsewhere/P1")
        assert path.startswith("/") and "elsewhere" not in path and "P1" not in path

    def test_paths_in_text_up_to_the_next_quote(self) -> None:
        p = pseudonyms()
        text = "the same file as /archive/DOE JOHN/IM1 (a hard link); see '/archive/X/Y'"
        out = p.text(text)
        assert out is not None
        assert "DOE" not in out and "JOHN" not in out and "/X/" not in out
        assert out.startswith("the same file as /archive/") and out.endswith("'")
        assert p.text("no paths here: archive/x") == "no paths here: archive/x"
        assert p.text(None) is None

    def test_image_rows(self, tmp_path: Path) -> None:
        rows, _ = sample_rows(tmp_path, 3)
        p = pseudonyms()
        for clear, pseudo in zip(rows, p.image_rows(rows), strict=True):
            assert pseudo.patient_id == p.pseudonymizer.patient_id(clear.patient_id)
            assert pseudo.accession_number == p.pseudonymizer.accession_number(
                clear.accession_number
            )
            assert pseudo.path == p.path(clear.path)
            assert (pseudo.study_instance_uid, pseudo.thumbnail, pseudo.heatmap) == (
                clear.study_instance_uid, clear.thumbnail, clear.heatmap,
            )  # fmt: skip


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


class TestScanLog:
    def test_library_messages_lose_quoted_values_in_every_mode(self) -> None:
        formatter = ScanLogFormatter("%(name)s: %(message)s")
        line = formatter.format(record("pydicom", "Invalid value for VR LO: %r", "SYNTH0001"))
        assert line == "pydicom: Invalid value for VR LO: '<value>'"
        ours = formatter.format(record("batchfrac.scan", "kept: %r", "x"))
        assert ours == "batchfrac.scan: kept: 'x'"
        assert redact_quoted_values("a \"b\" 'c' d") == "a '<value>' '<value>' d"

    def test_archive_paths_are_pseudonymised_exactly_in_arguments(self) -> None:
        p = pseudonyms()
        formatter = ScanLogFormatter("%(message)s", p)
        path = "/archive/SYNTH0002/IM 1"
        line = formatter.format(record("batchfrac.scan", "%s still decoding after %s s", path, 3))
        assert line == f"{p.path(path)} still decoding after 3 s"
        lib = formatter.format(record("distributed.worker", f"args: (['{path}'])"))
        assert "SYNTH0002" not in lib and lib.startswith("args: (['/archive/")

    def test_the_original_record_is_left_alone(self) -> None:
        rec = record("batchfrac.x", "%s", "/archive/P1/IM1")
        ScanLogFormatter("%(message)s", pseudonyms()).format(rec)
        assert rec.getMessage() == "/archive/P1/IM1"


class TestOneSettingPerOutdir:
    def part(self, out: Path, fingerprint: str | None) -> None:
        (out / "parts").mkdir(parents=True, exist_ok=True)
        meta = {b"batchfrac.pseudonyms": fingerprint.encode()} if fingerprint else {}
        import pyarrow as pa

        table = pa.table({"x": [1]}).replace_schema_metadata(meta)
        pq.write_table(table, out / "parts" / f"part-{fingerprint}.parquet")

    def test_a_new_outdir_takes_either(self, tmp_path: Path) -> None:
        check_outdir(tmp_path / "new", None, tmp_path / "new" / "parts")
        check_outdir(tmp_path / "new", "ab" * 8, tmp_path / "new" / "parts")

    def test_clear_parts_refuse_a_key_and_pseudonymised_parts_refuse_none(
        self, tmp_path: Path
    ) -> None:
        fingerprint = Pseudonymizer(KEY).fingerprint
        self.part(tmp_path / "clear", None)
        self.part(tmp_path / "keyed", fingerprint)
        check_outdir(tmp_path / "clear", None, tmp_path / "clear" / "parts")
        check_outdir(tmp_path / "keyed", fingerprint, tmp_path / "keyed" / "parts")
        with pytest.raises(MixedPrivacyError, match="without pseudonyms"):
            check_outdir(tmp_path / "clear", fingerprint, tmp_path / "clear" / "parts")
        with pytest.raises(MixedPrivacyError, match="with another pseudonymisation key"):
            check_outdir(tmp_path / "keyed", None, tmp_path / "keyed" / "parts")
        with pytest.raises(MixedPrivacyError, match="another"):
            check_outdir(tmp_path / "keyed", "0" * 16, tmp_path / "keyed" / "parts")

    def test_a_log_of_a_clear_scan_refuses_a_key(self, tmp_path: Path) -> None:
        fingerprint = Pseudonymizer(KEY).fingerprint
        (tmp_path / "scan.log").write_text("2026 INFO scan of /archive/SYNTH0001\n")
        with pytest.raises(MixedPrivacyError):
            check_outdir(tmp_path, fingerprint, tmp_path / "parts")
        (tmp_path / "scan.log").write_text(f"2026 INFO x: {key_marker(fingerprint)}\n")
        check_outdir(tmp_path, fingerprint, tmp_path / "parts")
        (tmp_path / "scan.log").write_text("")  # created by the terminal redirection only
        check_outdir(tmp_path, fingerprint, tmp_path / "parts")

    def test_run_json_says_which(self, tmp_path: Path) -> None:
        write_sample_report(tmp_path)
        with pytest.raises(MixedPrivacyError):
            check_outdir(tmp_path, "ab" * 8, tmp_path / "parts")


class TestExport:
    def test_a_clear_scan_with_a_key_is_rewritten_for_csv_and_html(self, tmp_path: Path) -> None:
        write_sample_report(tmp_path)
        (tmp_path / "key").write_bytes(KEY)
        privacy = export_privacy(tmp_path, tmp_path / "key")
        assert privacy.recorded is None and privacy.rewrite is not None
        assert privacy.rewrite.roots == ["/archive"]  # from run.json's arguments
        assert isinstance(privacy.dicom, Pseudonymizer)

    def test_a_pseudonymised_scan_needs_its_own_key(self, tmp_path: Path) -> None:
        write_sample_report(tmp_path, pseudonyms=pseudonyms())
        (tmp_path / "key").write_bytes(KEY)
        (tmp_path / "other").write_bytes(OTHER)
        (tmp_path / "short").write_bytes(b"x" * 31)
        assert export_privacy(tmp_path, None).rewrite is None
        privacy = export_privacy(tmp_path, tmp_path / "key")
        assert privacy.rewrite is None and isinstance(privacy.dicom, KnownPseudonyms)
        with pytest.raises(PseudonymKeyError, match="another key"):
            export_privacy(tmp_path, tmp_path / "other")
        with pytest.raises(PseudonymKeyError, match="31 bytes"):
            export_privacy(tmp_path, tmp_path / "short")
        with pytest.raises(PseudonymKeyError, match="give the same"):
            dicom_pseudonymizer(tmp_path, None)
        run = json.loads((tmp_path / "run.json").read_text())
        assert run["pseudonyms"]["key_fingerprint"] == Pseudonymizer(KEY).fingerprint

    def test_known_pseudonyms_pass_and_clear_values_are_pseudonymised(self) -> None:
        plain = Pseudonymizer(KEY)
        pseudonym = plain.patient_id("SYNTH0001")
        assert pseudonym is not None
        known = KnownPseudonyms(KEY, {"PatientID": {pseudonym}})
        assert known.patient_id(pseudonym) == pseudonym  # read back from the reports
        assert known.patient_id("SYNTH0001") == pseudonym  # read again from a header
        assert known.accession_number("ACC1") == plain.accession_number("ACC1")


def test_the_fingerprint_tells_keys_apart_and_reveals_nothing() -> None:
    fingerprint = Pseudonymizer(KEY).fingerprint
    assert fingerprint == Pseudonymizer(KEY).fingerprint != Pseudonymizer(OTHER).fingerprint
    assert len(fingerprint) == 16 and KEY.decode() not in fingerprint


def test_paths_inside_other_arguments_and_tracebacks() -> None:
    p = pseudonyms()
    formatter = ScanLogFormatter("%(message)s", p)
    error = PermissionError(13, "Permission denied", "/archive/SMITH JOHN")
    line = formatter.format(
        record("batchfrac.ingest.walk", "cannot list %s: %s", "/archive/X", error)
    )
    assert "SMITH" not in line and "X:" not in line and line.startswith("cannot list /archive/")
    try:
        raise ValueError("cannot read /archive/SMITH/IM1")
    except ValueError:
        rec = logging.LogRecord(
            "batchfrac.scan.run", 40, __file__, 1, "stopped", (), sys.exc_info()
        )
    assert "SMITH" not in formatter.format(rec)
