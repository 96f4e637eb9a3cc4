"""index.html in a real browser (headless Debian chromium): no console error, one row per
study, sorting, filters and pages, every thumbnail and heatmap decoded, hostile values
inert, and no request that leaves the file system. A screenshot lands in each test's
temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.browser.chromium import chromium, open_page, requested_urls
from tests.report_pages import HOSTILE_ACCESSION, HOSTILE_PATIENT, abnormal_first
from tests.report_pages import write_sample_report as write_report

REPO = Path(__file__).resolve().parents[2]
#: Wait for every picture of the page, then say how many there are and how many decoded.
PICTURES = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
Promise.all(images.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })))
  .then(() => done([images.length, images.filter(i => i.naturalWidth > 0).length,
                    images.map(i => i.getAttribute('src'))]));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def rows(driver: Any) -> list[dict[str, str]]:
    """The studies table as shown: one dict per study row (cell texts, full values)."""
    return driver.execute_script(
        """return Array.from(document.querySelectorAll('#studies-body tr.study')).map(tr => {
             const c = tr.cells, full = i => (c[i].querySelector('span') || c[i]).title
                                              || c[i].textContent;
             return {patient: full(1), accession: full(2), uid: full(3), bone: c[4].textContent,
                     p: c[5].textContent, prediction: c[7].textContent};
           });"""
    )


def click(driver: Any, selector: str) -> None:
    driver.execute_script(f"document.querySelector({selector!r}).click()")


def choose(driver: Any, select: str, value: str) -> None:
    driver.execute_script(
        "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('change'));",
        select,
        value,
    )


def console_problems(driver: Any) -> list[dict[str, Any]]:
    return [
        e for e in driver.get_log("browser")
        if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]
    ]  # fmt: skip


def check_offline(driver: Any, out: Path) -> list[str]:
    """Every request the page made stayed on the file system (or was a data: URI)."""
    urls = requested_urls(driver)
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    assert all(Path(u[len("file://") :]).resolve().is_relative_to(out.resolve())
               for u in urls if u.startswith("file://"))  # fmt: skip
    return urls


def show_every_picture(driver: Any) -> tuple[int, int, list[str]]:
    click(driver, "#expand")
    driver.set_script_timeout(60)
    return tuple(driver.execute_async_script(PICTURES))  # type: ignore[return-value]


def probabilities(driver: Any) -> list[float]:
    return [float(r["p"]) for r in rows(driver)]


def test_report_with_thumbnails_heatmaps_and_hostile_values(browser: Any, tmp_path: Path) -> None:
    report = write_report(tmp_path / "out", studies=12)
    open_page(browser, report.out / "index.html")
    shown = rows(browser)
    studies = pq.read_table(report.out / "studies.parquet").num_rows
    assert len(shown) == studies == 12
    assert [r["uid"] for r in shown] == abnormal_first(report)
    hostile = next(r for r in shown if r["patient"] == HOSTILE_PATIENT)
    assert hostile["accession"] == HOSTILE_ACCESSION
    assert browser.execute_script("return window.__pwned === undefined")

    click(browser, "#studies-head button[data-key='p']")
    descending = probabilities(browser)
    assert descending == sorted(descending, reverse=True)
    click(browser, "#studies-head button[data-key='p']")
    ascending = probabilities(browser)
    assert ascending == sorted(descending) and ascending != descending
    click(browser, "#studies-head button[data-key='patient']")
    patients = [r["patient"] for r in rows(browser) if r["patient"].startswith("PAT")]
    assert patients == sorted(patients)

    count, decoded, sources = show_every_picture(browser)
    assert count == decoded == report.pictures
    browser.save_screenshot(str(tmp_path / "report-page.png"))
    urls = check_offline(browser, report.out)
    assert {f"{(report.out / s).resolve().as_uri()}" for s in sources} <= set(urls)
    assert console_problems(browser) == []
    assert browser.execute_script("return window.__pwned === undefined")
    assert (tmp_path / "report-page.png").stat().st_size > 10_000


def test_pages_and_filters_of_a_larger_night(browser: Any, tmp_path: Path) -> None:
    report = write_report(tmp_path / "out", studies=230)
    open_page(browser, report.out / "index.html")
    assert len(rows(browser)) == 100
    click(browser, "#next")
    assert len(rows(browser)) == 100
    click(browser, "#next")
    assert len(rows(browser)) == 30
    assert browser.execute_script("return document.getElementById('next').disabled")
    studies = pq.read_table(report.out / "studies.parquet").to_pylist()
    choose(browser, "f-bone", "hand")
    shown = rows(browser)
    assert {r["bone"] for r in shown} == {"hand"}
    assert len(shown) == sum(s["bone"] == "hand" for s in studies)
    choose(browser, "f-prediction", "uncertain")
    assert rows(browser) and all("(uncertain)" in r["prediction"] for r in rows(browser))
    choose(browser, "f-bone", "")
    choose(browser, "f-prediction", "")
    choose(browser, "f-flag", "bodypart_mismatch")
    expected = sum("bodypart_mismatch" in s["flags"] for s in studies)
    assert browser.execute_script("return document.getElementById('page').textContent") == (
        f"studies 1\u2013{min(expected, 100)} of {expected} shown (page 1 of {-(-expected // 100)})"
    )
    count, decoded, _ = show_every_picture(browser)
    assert count == decoded > 0
    check_offline(browser, report.out)
    assert console_problems(browser) == []
    browser.save_screenshot(str(tmp_path / "report-page.png"))


@pytest.mark.slow
def test_the_page_of_a_real_scan_of_the_sample_archive(browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "scan"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "batchfrac", "scan", str(REPO / "sample_data" / "archive"),
         "--out", str(out), "--workers", "0", "--quiet", "--heatmaps-uncertain", "2"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    open_page(browser, out / "index.html")
    studies = pq.read_table(out / "studies.parquet")
    assert len(rows(browser)) == studies.num_rows == 7
    click(browser, "#studies-head button[data-key='p']")
    click(browser, "#studies-head button[data-key='p']")
    ascending = probabilities(browser)
    assert ascending == sorted(ascending)
    expected = sorted(studies.column("abnormal_probability").to_pylist())
    assert ascending == pytest.approx(expected, abs=0.0011)  # shown with 3 decimals
    images = pq.read_table(out / "images.parquet").to_pylist()
    ok = [r for r in images if r["status"] == "ok"]
    assert ok and all(r["thumbnail"] for r in ok)  # a thumbnail for every ok image
    heatmaps = [r["heatmap"] for r in images if r["heatmap"]]
    assert len(heatmaps) >= 2  # the abnormal ones and the two closest to their threshold
    count, decoded, sources = show_every_picture(browser)
    assert count == decoded == len(ok) + len(heatmaps)  # every picture loads
    assert set(heatmaps) <= set(sources)
    summary = browser.execute_script("return document.getElementById('summary').textContent")
    assert f"{len(heatmaps)} drawn, 0 left out" in summary  # their count and cost
    check_offline(browser, out)
    assert console_problems(browser) == []
    browser.save_screenshot(str(tmp_path / "report-page.png"))
