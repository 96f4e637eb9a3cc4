"""Report schemas (JSON -> Arrow), Parquet provenance, atomic writes, CSV safety (the page:
test_html.py)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchfrac import schemas
from batchfrac.atomic import write_text
from batchfrac.enums import Bone, ImageFlag, Label, Reason, Status, StudyFlag
from batchfrac.errors import SpecError
from batchfrac.records import Prediction
from batchfrac.report.csv_export import export_csv, restore_text_cell, text_cell, write_csv
from batchfrac.report.parquet import Provenance, file_metadata, write_parquet
from batchfrac.report.rows import ImageRow, StudyRow, image_row
from batchfrac.report.runinfo import write_run_json
from batchfrac.report.schema import (
    RUN_SCHEMA,
    check_run_json,
    check_table,
    load_schema,
    rows_to_table,
    run_json_schema,
)
from tests.scan_fakes import ok_result, rejected_result

PROVENANCE = Provenance(
    run_id="run-1",
    bundle_id="bundle-1",
    software_version="9.9.9",
    spec_id="spec-1",
    spec={"version": 1},
    weights_sha256={"trunk.npz": "a" * 64},
    config_id="c" * 16,
    demo_notice="DEMO ONLY",
)
HOSTILE = [
    "/arch/a,b.dcm",
    '/arch/quote"d.dcm',
    "/arch/new\nline.dcm",
    '=HYPERLINK("http://evil")',
    "+cmd",
    "-2+3",
    "@SUM(A1)",
    "\tleading tab",
    "plain",
]


def sample_rows() -> list[ImageRow]:
    rows = [
        image_row(
            ok_result(path, 0.5, study_instance_uid="=1+1", patient_id=path),
            Prediction(Bone.HAND, 0.8, 0.25),
        )
        for path in HOSTILE
    ]
    rows.append(image_row(rejected_result("/arch/x.txt", Reason.NOT_DICOM)))
    return rows


SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


class TestJsonSchemas:
    """The JSON Schemas, validated at run time without a meta-schema check."""

    @pytest.mark.parametrize("path", sorted(SCHEMAS_DIR.glob("*.schema.json")), ids=str)
    def test_each_json_schema_is_valid_under_its_meta_schema(self, path: Path) -> None:
        schema = json.loads(path.read_text(encoding="utf-8"))
        if "$schema" not in schema:  # images, studies: our own column lists, not JSON Schema
            assert set(schema) >= {"name", "version", "fields"}
            return
        jsonschema.validators.validator_for(schema).check_schema(schema)

    def test_one_validator_per_schema_and_process(self) -> None:
        first = schemas.validator(RUN_SCHEMA)
        assert schemas.validator(RUN_SCHEMA) is first
        assert first.schema is run_json_schema() is schemas.load(RUN_SCHEMA)

    def test_run_json_check_raises_what_jsonschema_validate_raises(self) -> None:
        broken = {"run_id": 5, "schema": "run"}
        with pytest.raises(jsonschema.ValidationError) as ours:
            check_run_json(broken)
        with pytest.raises(jsonschema.ValidationError) as theirs:
            jsonschema.validate(broken, run_json_schema())
        assert ours.value.message == theirs.value.message


class TestSchemas:
    @pytest.mark.parametrize(("name", "record"), [("images", ImageRow), ("studies", StudyRow)])
    def test_schema_columns_are_the_row_fields(self, name: str, record: type) -> None:
        schema = load_schema(name)
        assert schema.names == [f.name for f in dataclasses.fields(record)]
        assert schema.arrow.names == schema.names

    def test_enums_in_schema_files_are_the_python_vocabularies(self) -> None:
        images = {f.name: f for f in load_schema("images").fields}
        studies = {f.name: f for f in load_schema("studies").fields}
        assert images["status"].enum == tuple(s.value for s in Status)
        assert images["reason"].enum == tuple(r.value for r in Reason)
        assert images["bone"].enum == studies["bone"].enum == tuple(b.value for b in Bone)
        assert studies["prediction"].enum == tuple(label.value for label in Label)
        assert images["flags"].enum == tuple(f.value for f in ImageFlag)
        assert studies["flags"].enum == tuple(f.value for f in StudyFlag)

    def test_written_parquet_matches_the_json_schema(self, tmp_path: Path) -> None:
        schema = load_schema("images")
        path = write_parquet(
            rows_to_table(sample_rows(), schema), tmp_path / "i.parquet", schema, PROVENANCE
        )
        written = pq.read_schema(path)
        assert written.equals(schema.arrow, check_metadata=False)
        assert [written.field(n).nullable for n in schema.names] == [
            f.nullable for f in schema.fields
        ]
        assert written.field("flags").type == pa.list_(pa.string())

    def test_provenance_travels_in_the_file_metadata(self, tmp_path: Path) -> None:
        schema = load_schema("studies")
        path = write_parquet(rows_to_table([], schema), tmp_path / "s.parquet", schema, PROVENANCE)
        meta = file_metadata(path)
        assert meta["schema"] == "studies"
        assert meta["schema_version"] == schema.version
        assert (meta["run_id"], meta["bundle_id"], meta["spec_id"]) == (
            "run-1",
            "bundle-1",
            "spec-1",
        )
        assert meta["software_version"] == "9.9.9"
        assert meta["demo_notice"] == "DEMO ONLY"
        assert json.loads(meta["weights_sha256"]) == {"trunk.npz": "a" * 64}

    def test_check_table_rejects_nulls_and_unknown_values(self) -> None:
        schema = load_schema("images")
        row = sample_rows()[0]
        with pytest.raises(SpecError, match="not in"):
            rows_to_table([dataclasses.replace(row, status="maybe")], schema)
        with pytest.raises(SpecError, match=r"flags: values \['made_up'\] not in"):
            rows_to_table([dataclasses.replace(row, flags=("no_preamble", "made_up"))], schema)
        table = rows_to_table([row], schema)
        nulls = table.set_column(0, schema.arrow.field("path"), pa.array([None], pa.string()))
        with pytest.raises(SpecError, match="nulls in a required column"):
            check_table(nulls, schema)
        with pytest.raises(SpecError, match="does not match"):
            check_table(table.drop_columns(["flags"]), schema)

    def test_non_utf8_file_names_are_escaped_and_flagged(self) -> None:
        name = b"/arch/caf\xe9.dcm".decode("utf-8", "surrogateescape")
        row = image_row(rejected_result(name, Reason.NOT_DICOM))
        assert row.path == "/arch/caf\\xe9.dcm"
        assert ImageFlag.NON_UTF8_PATH in row.flags
        rows_to_table([row], load_schema("images"))  # storable


class TestAtomicWrites:
    def test_failed_write_leaves_the_old_file_and_no_temp(self, tmp_path: Path) -> None:
        target = write_text(tmp_path / "run.json", "old")
        with pytest.raises(SpecError):
            write_run_json(target, {"schema": "run"})
        assert target.read_text() == "old"
        assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


class TestCsv:
    def test_cells_round_trip_through_a_csv_reader(self, tmp_path: Path) -> None:
        table = rows_to_table(sample_rows(), load_schema("images"))
        path = write_csv(table, tmp_path / "images.csv")
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")
        with open(path, encoding="utf-8-sig", newline="") as handle:
            records = list(csv.reader(handle))
        assert records[0] == table.column_names
        assert len(records) == 1 + table.num_rows
        paths = [restore_text_cell(r[0]) for r in records[1:]]
        assert paths == table.column("path").to_pylist()

    def test_formula_cells_are_neutralised(self, tmp_path: Path) -> None:
        table = rows_to_table(sample_rows(), load_schema("images"))
        path = write_csv(table, tmp_path / "images.csv")
        with open(path, encoding="utf-8-sig", newline="") as handle:
            records = list(csv.DictReader(handle))
        for record in records:
            for column in ("path", "patient_id", "study_instance_uid"):
                assert not record[column].startswith(("=", "+", "-", "@", "\t", "\r"))
        assert records[3]["path"] == '\'=HYPERLINK("http://evil")'
        assert records[0]["study_instance_uid"] == "'=1+1"
        assert records[0]["bone_confidence"] == "0.8"  # numbers stay numbers

    @pytest.mark.parametrize(
        "value",
        ["=1+1", "  =HYPERLINK(x)", "\u3000@SUM(A1)", "\uff1dcmd|' /C calc'!A0", "\uff0b1",
         "\uff0d2", "\uff20x", "\t=1", "\r=1", " \t -1"],
    )  # fmt: skip
    def test_cells_that_could_start_a_formula_are_neutralised(self, value: str) -> None:
        cell = text_cell(value)
        assert cell == "'" + value
        assert restore_text_cell(cell) == value

    def test_control_characters_are_replaced_so_any_python_can_write_them(
        self, tmp_path: Path
    ) -> None:
        assert text_cell("TEST\x000001") == "TEST\ufffd0001"
        assert text_cell("a\tb\nc") == "a\tb\nc"
        table = pa.table({"patient_id": ["TEST\x000001", "\x1b[31mred"]})
        path = write_csv(table, tmp_path / "nul.csv")
        raw = path.read_bytes()
        assert b"\x00" not in raw and b"\x1b" not in raw
        # Python 3.10's csv writer refuses a NUL ("need to escape"): what it is given has none.
        written = [row[0] for row in csv.reader(io.StringIO(raw.decode("utf-8-sig")))]
        assert written[1:] == ["TEST\ufffd0001", "\ufffd[31mred"]

    def test_text_cell_leaves_numbers_and_plain_text(self) -> None:
        assert text_cell("1.2.840") == "1.2.840"
        assert text_cell("-1") == "'-1"
        assert restore_text_cell("'-1") == "-1"
        assert restore_text_cell("'quoted") == "'quoted"

    def test_export_writes_both_reports(self, tmp_path: Path) -> None:
        for name in ("images", "studies"):
            schema = load_schema(name)
            rows = sample_rows() if name == "images" else []
            write_parquet(
                rows_to_table(rows, schema), tmp_path / f"{name}.parquet", schema, PROVENANCE
            )
        written = export_csv(tmp_path)
        assert [p.name for p in written] == ["images.csv", "studies.csv"]
