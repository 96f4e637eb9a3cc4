"""--pseudonymize-key-file on scan and export: the sample archive (whose
folder names hold patient IDs and accession numbers) scanned with a fake bundle and the real
ingest; the identifiers are searched in every byte of the output folder and in every
decoded Parquet value."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest
from typer.testing import CliRunner

import batchfrac.scan.run
from batchfrac.cli import app
from batchfrac.report.pseudonym import Pseudonymizer
from tests.scan_fakes import FakeBundle

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "archive"
KEY = b"k3y-for-tests-0123456789abcdefgh"
OTHER_KEY = b"another-key-0123456789abcdefghij"
runner = CliRunner()


@pytest.fixture(autouse=True)
def fake_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batchfrac.scan.run, "load_bundle", lambda path: FakeBundle())


@pytest.fixture(scope="module")
def identities() -> dict[str, set[str]]:
    """What the sample archive's headers say about its patients."""
    found: dict[str, set[str]] = {"ids": set(), "names": set(), "births": set()}
    for path in SAMPLE.rglob("*"):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - the junk files
            continue
        if "PatientID" not in ds:  # the DICOMDIR
            continue
        found["ids"] |= {str(ds.PatientID), str(ds.AccessionNumber)}
        found["names"] |= {str(ds.PatientName)}
        found["births"] |= {str(ds.PatientBirthDate)}
    assert len(found["ids"]) == 12 and all(found.values())
    return found


def key_file(tmp_path: Path, key: bytes = KEY, name: str = "key") -> Path:
    path = tmp_path / name
    path.write_bytes(key + b"\n")
    return path


def scan(out: Path, *args: str | Path) -> object:
    result = runner.invoke(
        app, ["scan", str(SAMPLE), "--out", str(out), "--workers", "0", "--bundle", str(out),
              "--csv", *map(str, args)],
    )  # fmt: skip
    assert result.exit_code in (1, 3), result.output
    return result


def every_value(out: Path) -> str:
    """The text of every file under ``out``, Parquet files decoded (values and metadata)."""
    texts = []
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        texts.append(data.decode("utf-8", "replace"))
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            texts.append(json.dumps(table.to_pylist(), default=str))
            texts.append(str(table.schema.metadata))
    return "\n".join(texts)


def patient_ids(out: Path) -> set[str]:
    return set(pq.read_table(out / "studies.parquet").column("patient_id").to_pylist())


class TestScanWithAKey:
    def test_no_identifier_name_or_birth_date_in_any_byte(
        self, tmp_path: Path, identities: dict[str, set[str]]
    ) -> None:
        out = tmp_path / "out"
        result = scan(out, "--pseudonymize-key-file", key_file(tmp_path))
        assert result.exit_code == 3  # type: ignore[attr-defined]
        text = every_value(out)
        for value in identities["ids"] | identities["names"] | identities["births"]:
            assert value not in text, value
        assert KEY.decode() not in text and "k3y-for-tests" not in text
        run = json.loads((out / "run.json").read_text())
        assert run["pseudonyms"]["key_fingerprint"] == Pseudonymizer(KEY).fingerprint
        assert run["arguments"]["pseudonymize_key_file"] == str(tmp_path / "key")
        pseudonym = Pseudonymizer(KEY).patient_id("SYNTH0002")
        assert pseudonym in patient_ids(out)
        page = (out / "index.html").read_text()
        assert pseudonym in page and "key fingerprint" in page

    def test_stable_for_one_key_different_for_another_and_resumable(self, tmp_path: Path) -> None:
        first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
        scan(first, "--pseudonymize-key-file", key_file(tmp_path))
        scan(second, "--pseudonymize-key-file", key_file(tmp_path))
        scan(other, "--pseudonymize-key-file", key_file(tmp_path, OTHER_KEY, "other"))
        assert patient_ids(first) == patient_ids(second)
        assert not patient_ids(first) & patient_ids(other)
        paths = pq.read_table(first / "images.parquet").column("path").to_pylist()
        assert paths == pq.read_table(second / "images.parquet").column("path").to_pylist()
        again = scan(first, "--pseudonymize-key-file", key_file(tmp_path))
        assert again.exit_code == 3  # type: ignore[attr-defined]
        run = json.loads((first / "run.json").read_text())
        assert run["counts"]["files_reused"] == run["counts"]["files"] == 22
        clear = scan(tmp_path / "clear")
        assert (
            run["config_id"]
            != json.loads((tmp_path / "clear" / "run.json").read_text())["config_id"]
        )
        assert clear.exit_code == 3  # type: ignore[attr-defined]

    def test_a_short_key_is_refused_before_anything_is_written(self, tmp_path: Path) -> None:
        short = tmp_path / "short"
        short.write_bytes(b"s" * 31)
        result = scan(tmp_path / "out", "--pseudonymize-key-file", short)
        assert result.exit_code == 1  # type: ignore[attr-defined]
        assert "31 bytes" in result.stderr and "s" * 31 not in result.output  # type: ignore[attr-defined]
        assert not (tmp_path / "out").exists()

    def test_an_outdir_of_a_clear_scan_is_refused(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        scan(out)
        result = scan(out, "--pseudonymize-key-file", key_file(tmp_path))
        assert result.exit_code == 1  # type: ignore[attr-defined]
        assert "needs an --out of its own" in result.stderr  # type: ignore[attr-defined]


class TestClearScan:
    def test_names_and_birth_dates_never_appear(
        self, tmp_path: Path, identities: dict[str, set[str]]
    ) -> None:
        out = tmp_path / "out"
        scan(out)
        text = every_value(out)
        assert all(v not in text for v in identities["names"] | identities["births"])
        assert "SYNTH0002" in patient_ids(out)  # the clear mode keeps the identifiers


class TestExport:
    def test_a_key_pseudonymises_the_csv_and_html_of_a_clear_scan(
        self, tmp_path: Path, identities: dict[str, set[str]]
    ) -> None:
        out = tmp_path / "out"
        scan(out)
        parquet = (out / "images.parquet").read_bytes()
        key = str(key_file(tmp_path))
        result = runner.invoke(
            app, ["export", str(out), "--csv", "--html", "--pseudonymize-key-file", key]
        )
        assert result.exit_code == 0, result.output
        assert "keep the clear values" in result.stderr
        written = "".join((out / n).read_text("utf-8-sig") for n in
                          ("images.csv", "studies.csv", "index.html"))  # fmt: skip
        assert all(value not in written for value in identities["ids"])
        assert Pseudonymizer(KEY).patient_id("SYNTH0002") in written
        assert (out / "images.parquet").read_bytes() == parquet  # the scan's record stays

    def test_a_pseudonymised_scan_exports_as_it_is_and_refuses_another_key(
        self, tmp_path: Path, identities: dict[str, set[str]]
    ) -> None:
        out = tmp_path / "out"
        scan(out, "--pseudonymize-key-file", key_file(tmp_path))
        plain = runner.invoke(app, ["export", str(out), "--csv", "--html"])
        assert plain.exit_code == 0, plain.output
        assert all(value not in every_value(out) for value in identities["ids"])
        other = key_file(tmp_path, OTHER_KEY, "other")
        refused = runner.invoke(app, ["export", str(out), "--csv",
                                      "--pseudonymize-key-file", str(other)])  # fmt: skip
        assert refused.exit_code == 1 and "another key" in refused.stderr

    def test_dicom_objects_of_a_pseudonymised_scan_need_its_key(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        scan(out, "--pseudonymize-key-file", key_file(tmp_path))
        refused = runner.invoke(app, ["export", str(out), "--dicom", str(tmp_path / "dcm")])
        assert refused.exit_code == 1 and "give the same" in refused.stderr
        dcm, key = str(tmp_path / "dcm"), str(key_file(tmp_path))
        result = runner.invoke(
            app, ["export", str(out), "--dicom", dcm, "--pseudonymize-key-file", key]
        )
        assert result.exit_code == 0, result.output
        studies = {r["study_instance_uid"]: r for r in
                   pq.read_table(out / "studies.parquet").to_pylist()}  # fmt: skip
        objects = [pydicom.dcmread(p) for p in (tmp_path / "dcm").iterdir()]
        assert objects
        for ds in objects:
            assert ds.PatientID == studies[ds.StudyInstanceUID]["patient_id"]
            assert ds.AccessionNumber == studies[ds.StudyInstanceUID]["accession_number"]
            assert ds.PatientIdentityRemoved == "YES"
