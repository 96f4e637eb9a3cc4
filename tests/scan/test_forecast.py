"""doctor's forecast: the arithmetic (not its timing) and the wiring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchfrac.cli import app
from batchfrac.doctor import SIZE_CLASSES, size_class, survey
from batchfrac.scan.forecast import GroupCost, estimate, format_seconds
from tests.factories import make_header
from tests.scan_fakes import make_dicom_archive


def group(files: int, seconds: float, images: int | None = None) -> GroupCost:
    return GroupCost("1.2.840.10008.1.2.1", "< 1 MP", files, images or files, seconds, 3)


class TestEstimate:
    def test_in_process_decoding_and_inference_add_up(self) -> None:
        f = estimate([group(100, 0.2)], seconds_per_image=0.05, fixed_s=10.0, workers=0,
                     cores=2, batch_size=32)  # fmt: skip
        assert (f.decode_s, f.inference_s) == pytest.approx((20.0, 5.0))
        assert f.seconds == pytest.approx(10.0 + 20.0 + 5.0)

    def test_decode_bound_with_workers_on_their_own_cores(self) -> None:
        f = estimate([group(100, 0.4), group(50, 0.2)], seconds_per_image=0.01, fixed_s=5.0,
                     workers=4, cores=8, batch_size=32)  # fmt: skip
        assert f.decode_cpu_s == pytest.approx(50.0)
        assert f.decode_s == pytest.approx(50.0 / 4)
        assert f.seconds == pytest.approx(5.0 + 12.5)

    def test_inference_bound(self) -> None:
        f = estimate([group(100, 0.01)], seconds_per_image=0.5, fixed_s=1.0, workers=4,
                     cores=8, batch_size=32)  # fmt: skip
        assert f.seconds == pytest.approx(1.0 + 50.0)

    def test_workers_and_driver_share_the_cores(self) -> None:
        # 2 cores, 2 workers: decode 40 CPU-s (20 s on two cores) and inference 20 s cannot
        # both run at full speed; together they need (40 + 20) / 2 = 30 s of the machine
        f = estimate([group(100, 0.4)], seconds_per_image=0.2, fixed_s=0.0, workers=2,
                     cores=2, batch_size=32)  # fmt: skip
        assert f.seconds == pytest.approx(30.0)

    def test_more_workers_than_cores_decode_no_faster(self) -> None:
        many = estimate([group(10, 1.0)], seconds_per_image=0.0, fixed_s=0.0, workers=16,
                        cores=2, batch_size=8)  # fmt: skip
        assert many.decode_s == pytest.approx(5.0)

    def test_multi_frame_files_count_their_images(self) -> None:
        f = estimate([group(10, 1.0, images=120)], seconds_per_image=0.1, fixed_s=0.0,
                     workers=0, cores=1, batch_size=8)  # fmt: skip
        assert (f.images, f.inference_s) == (120, pytest.approx(12.0))

    def test_format_seconds(self) -> None:
        assert format_seconds(42.4) == "42 s"
        assert format_seconds(185) == "3 min 05 s"
        assert format_seconds(3720) == "1 h 02 min"


class TestWorkGroups:
    @pytest.mark.parametrize(
        ("rows", "columns", "expected"),
        [(512, 512, "< 1 MP"), (1000, 1000, "1-4 MP"), (2000, 2500, "4-9 MP"),
         (3000, 3000, ">= 9 MP")],
    )  # fmt: skip
    def test_size_class(self, rows: int, columns: int, expected: str) -> None:
        assert size_class(make_header(rows=rows, columns=columns)) == expected
        assert expected in {label for _, label in SIZE_CLASSES}

    def test_survey_groups_candidates_and_keeps_samples(self, tmp_path: Path) -> None:
        expected = make_dicom_archive(tmp_path / "archive")
        report = survey(tmp_path / "archive", samples=1)
        candidates = sum(status == "ok" for status in expected.values())
        assert sum(g.files for g in report.work.values()) == candidates
        assert all(len(g.samples) == 1 for g in report.work.values())
        assert {uid for uid, _ in report.work} <= {s.uid for s in report.syntaxes}


def test_doctor_prints_a_forecast_with_its_parts(tmp_path: Path, tiny_bundle: Path) -> None:
    make_dicom_archive(tmp_path / "archive")
    args = ["doctor", str(tmp_path / "archive"), "--json", "--bundle", str(tiny_bundle),
            "--workers", "0", "--batch-size", "4"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output  # the truncated file
    estimate_doc = json.loads(result.stdout)["estimate"]
    assert estimate_doc["workers"] == 0 and estimate_doc["batch_size"] == 4
    parts = estimate_doc["decode_s"] + estimate_doc["inference_s"] + estimate_doc["fixed_s"]
    assert estimate_doc["seconds"] == pytest.approx(parts, abs=0.01)  # in-process: they add
    assert estimate_doc["fixed_s"] > 0 and estimate_doc["decode_s"] > 0
    assert sum(g["files"] for g in estimate_doc["groups"]) == estimate_doc["files"] > 0


def test_doctor_tables_end_with_the_forecast(tmp_path: Path, tiny_bundle: Path) -> None:
    make_dicom_archive(tmp_path / "archive")
    args = ["doctor", str(tmp_path / "archive"), "--bundle", str(tiny_bundle), "--workers", "0"]
    result = CliRunner().invoke(app, args)
    assert "Forecast on this machine" in result.stdout and "--workers 0" in result.stdout


def test_doctor_with_an_unreadable_bundle_exits_1(tmp_path: Path) -> None:
    make_dicom_archive(tmp_path / "archive")
    (tmp_path / "bundle").mkdir()
    args = ["doctor", str(tmp_path / "archive"), "--bundle", str(tmp_path / "bundle")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "cannot forecast the scan" in result.stderr


def test_doctor_without_forecast_reads_headers_only(tmp_path: Path) -> None:
    make_dicom_archive(tmp_path / "archive")
    result = CliRunner().invoke(app, ["doctor", str(tmp_path / "archive"), "--json",
                                      "--no-forecast"])  # fmt: skip
    assert "estimate" not in json.loads(result.stdout)
