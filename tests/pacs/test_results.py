"""batchfrac.pacs.results: a malformed scan output is one clear ReportError, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchfrac.enums import Bone, Label
from batchfrac.pacs.results import ReportError, read_scan_results
from tests.pacs import scan_output as so


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return so.make_scan_output(tmp_path / "scan")


def test_reads_studies_with_their_ok_images(out: Path) -> None:
    results = read_scan_results(out)
    assert results.run.run_id == "run-1" and results.run.demo
    hand = results.studies[0]
    assert (hand.bone, hand.prediction, len(hand.images)) == (Bone.HAND, Label.ABNORMAL, 3)
    assert [i.abnormal_probability for i in hand.images] == [0.91, 0.72, 0.40]
    assert [(i.frame, i.bone) for i in results.studies[1].images] == [(0, Bone.WRIST)] * 1 + [
        (1, Bone.WRIST)
    ]
    assert results.thresholds == {Bone.HAND: 0.5, Bone.WRIST: 0.5}


def test_missing_report_names_the_file(out: Path) -> None:
    (out / "images.parquet").unlink()
    with pytest.raises(ReportError, match=r"images\.parquet not found"):
        read_scan_results(out)


def test_garbage_parquet_is_a_report_error(out: Path) -> None:
    (out / "studies.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ReportError, match=r"cannot read .*studies\.parquet"):
        read_scan_results(out)


def test_missing_columns_are_named(out: Path) -> None:
    pq.write_table(pa.table({"path": ["x"], "status": ["ok"]}), out / "images.parquet")
    with pytest.raises(ReportError, match="lacks the columns .*sop_instance_uid"):
        read_scan_results(out)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("bone", "skull", "not one of the seven bones"),
        ("abnormal_probability", 1.5, r"not a number in \[0, 1\]"),
        ("prediction", "maybe", "has prediction 'maybe'"),
    ],
)
def test_out_of_vocabulary_values_are_report_errors(
    out: Path, column: str, value: object, message: str
) -> None:
    rows = pq.read_table(out / "studies.parquet").to_pylist()
    rows[0][column] = value
    if column == "bone":
        pq.write_table(pa.Table.from_pylist(rows), out / "studies.parquet")  # off-schema enum
    else:
        so.write_table(out / "studies.parquet", "studies", rows)
    with pytest.raises(ReportError, match=message):
        read_scan_results(out)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"run_id": "r"}), "lacks a field"),
        (
            json.dumps({"run_id": "r", "finished_at": "yesterday", "software_version": "1",
                        "bundle": {"id": "b", "demo": False, "notice": None}}),
            "Invalid isoformat",
        ),
    ],
)  # fmt: skip
def test_malformed_run_json(out: Path, content: str, message: str) -> None:
    (out / "run.json").write_text(content)
    with pytest.raises(ReportError, match=message):
        read_scan_results(out)
