"""Every hostile case of issue 10 through ``ingest_file`` and ``doctor.survey``.

What a hardened batchfrac may report for each case is in the case itself
(``tests.hostile.Hostile.accept`` and ``ok_rows``); FINDINGS.md says what today's code does.
Each check runs in a forked child (``tests.hardening.isolated``): ``gdcm_abort`` kills the
process that decodes it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from batchfrac.doctor import survey
from batchfrac.enums import Status
from batchfrac.ingest.entry import IngestConfig, ingest_file
from batchfrac.ingest.preprocess import PreprocessSpec
from tests.hardening.isolated import run_isolated
from tests.hardening.never_raises import never_raises
from tests.hostile import OK, Hostile, nul_in_strings
from tests.hostile_archive import hostile_cases

CONFIG = IngestConfig(spec=PreprocessSpec(image_size=32, working_size=64))
CASES = hostile_cases()

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.timeout(300)]


def isolated(check: Callable[[], None], case: Hostile) -> None:
    run_isolated(check, deadline_s=120, max_rss=3 << 30, what=case.description)


@pytest.mark.parametrize("name", list(CASES))
def test_ingest_gives_the_expected_rows(tmp_path: Path, name: str) -> None:
    case = CASES[name](tmp_path)
    isolated(lambda: check_rows(case), case)


def check_rows(case: Hostile) -> None:
    rows = never_raises(ingest_file, case.path, CONFIG)
    statuses = {row.status.value for row in rows}
    shown = [(row.status.value, row.reason, row.detail[:80]) for row in rows[:3]]
    assert statuses <= case.accept, f"{case.description}: {len(rows)} rows {shown}"
    if OK in statuses:
        assert len(rows) == case.ok_rows, f"{case.description}: {len(rows)} ok rows"
        for row in rows:
            assert row.pixels is not None and np.isfinite(row.pixels).all()
            # Every case is built on a gradient: a valid one preprocesses to ~500 greys; a
            # NaN image (NaN slope, infinite window) to 2, a 1 x 1 image to 1.
            distinct = len(np.unique(row.pixels))
            assert distinct > 16, f"{case.description}: frame {row.frame} has {distinct} greys"
    else:
        assert len(rows) == 1
        assert all(row.reason is not None and row.detail for row in rows)


@pytest.mark.parametrize("name", list(CASES))
def test_doctor_predicts_one_status(tmp_path: Path, name: str) -> None:
    """doctor reads headers only: it cannot foresee a codec's failure, but it must count
    every file once and never stop."""
    case = CASES[name](tmp_path)
    isolated(lambda: check_survey(case), case)


def check_survey(case: Hostile) -> None:
    report = never_raises(survey, case.path)
    assert report.files == 1 and sum(report.by_status.values()) == 1


def test_nul_bytes_leave_the_row_as_csv_can_write_on_any_python(tmp_path: Path) -> None:
    """Python 3.10's csv.writer refuses NUL ('need to escape, but no escapechar set'); 3.11
    writes it. A report string must not carry one (the CSV export runs on 3.10 too)."""
    case = nul_in_strings(tmp_path)
    (row,) = ingest_file(case.path, CONFIG)
    assert row.status is Status.OK and row.header is not None
    values = [row.header.patient_id, row.header.accession_number]
    assert all(value and "\x00" not in value for value in values), values
    csv.writer(io.StringIO()).writerow(values)
