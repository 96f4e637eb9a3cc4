"""index.html: self-contained, a strict Content-Security-Policy, every value inert; and the
page's data (order, caps, histograms, body parts, errors). The real browser: tests/browser."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchfrac.enums import Bone, Status
from batchfrac.report import page_data
from batchfrac.report.html import DATA_ELEMENT_ID, embed_json, render_index, write_index
from batchfrac.report.page_data import image_file, page_document
from batchfrac.report.rows import StudyRow
from batchfrac.report.schema import load_schema, rows_to_table
from tests.report_pages import (
    HOSTILE_ACCESSION,
    HOSTILE_DETAIL,
    HOSTILE_PATIENT,
    abnormal_first,
    sample_rows,
    write_sample_report,
)

RUN = {
    "run_id": "<r>",
    "bundle": {"id": "b", "demo": True, "notice": "DEMO <b>", "trunk_sha256": "0" * 64},
    "counts": {"files": 0, "rows": 0, "studies": 0, "status": {}, "reason": {}},
    "throughput": {},
}


def data_of(html: str) -> dict:
    start = html.index(f'<script type="application/json" id="{DATA_ELEMENT_ID}">')
    start = html.index(">", start) + 1
    return json.loads(html[start : html.index("</script>", start)])


def study(uid: str, p: float, bone: str = "hand", threshold: float = 0.5) -> StudyRow:
    prediction = "abnormal" if p > threshold else "normal"
    return StudyRow(uid, "P", "A", bone, 1, 0, p, prediction, threshold, ())


def images_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=load_schema("images").arrow)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    return write_sample_report(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def html(report) -> str:
    return (report.out / "index.html").read_text(encoding="utf-8")


class TestSelfContained:
    def test_the_policy_allows_exactly_the_inline_script_and_style(self, html: str) -> None:
        policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
        assert policy is not None
        csp = policy.group(1).replace("&#x27;", "'")
        style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)  # type: ignore[union-attr]
        scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
        assert len(scripts) == 1
        for name, text in [("script-src", scripts[0]), ("style-src", style)]:
            digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
            assert f"{name} 'sha256-{digest}'" in csp
        assert csp.startswith("default-src 'none';")
        assert "img-src 'self' data:;" in csp
        assert "unsafe" not in csp and "http" not in csp and "*" not in csp

    def test_nothing_points_outside_the_output_folder(self, html: str) -> None:
        assert re.findall(r"\b(?:src|href)=\"([^\"]*)\"", html) == ["data:,"]
        # The one URL is the SVG namespace name, which is never fetched.
        assert re.findall(r"[a-z]+://[^\s\"']*", html) == ["http://www.w3.org/2000/svg"]
        assert "@import" not in html and "url(" not in html

    def test_hostile_values_stay_data(self, html: str, report) -> None:
        assert html.count("</script>") == 2  # the data element and the script: no other
        start = html.index(f'id="{DATA_ELEMENT_ID}">')
        block = html[html.index(">", start) + 1 : html.index("</script>", start)]
        assert not set("<>&\u2028\u2029") & set(block)
        data = data_of(html)
        patients = {s["patient"] for s in data["studies"]}
        assert HOSTILE_PATIENT in patients
        assert HOSTILE_ACCESSION in {s["accession"] for s in data["studies"]}
        assert HOSTILE_DETAIL in {e["detail"] for e in data["errors"]}

    def test_static_values_are_escaped_and_the_demo_notice_is_visible(self) -> None:
        html = render_index(RUN, [], images_table([]))
        assert '<p class="demo">DEMO &lt;b&gt;</p>' in html
        assert "<title>batchfrac scan &lt;r&gt;</title>" in html

    def test_embed_json_escapes_what_could_end_the_element(self) -> None:
        text = embed_json({"v": "</script><!--\u2028\u2029&é"})
        assert text == '{"v":"\\u003c/script\\u003e\\u003c!--\\u2028\\u2029\\u0026\\u00e9"}'
        with pytest.raises(ValueError):
            embed_json({"v": float("nan")})


class TestPageData:
    def test_abnormal_then_uncertain_then_the_rest(self, report, html: str) -> None:
        assert [s["uid"] for s in data_of(html)["studies"]] == abnormal_first(report)

    def test_every_listed_study_has_its_images_and_pictures(self, report, html: str) -> None:
        data = data_of(html)
        images = [im for s in data["studies"] for im in s["images"]]
        assert len(images) == sum(r.status != Status.SKIPPED.value for r in report.rows)
        pictures = [im[k] for im in images for k in ("thumbnail", "heatmap") if im[k]]
        assert len(pictures) == report.pictures
        assert all((report.out / p).is_file() for p in pictures)
        assert data["totals"] == {"studies": 12, "listed": 12, "detailed": 12, "errors": 2,
                                  "unsafe_pictures": 0}  # fmt: skip

    def test_caps_bound_the_listed_and_detailed_studies(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(page_data, "LISTED_STUDIES", 5)
        monkeypatch.setattr(page_data, "DETAILED_STUDIES", 2)
        monkeypatch.setattr(page_data, "IMAGES_PER_STUDY", 1)
        monkeypatch.setattr(page_data, "ERROR_FILES", 1)
        rows, _ = sample_rows(tmp_path, 12)
        studies = [study(f"1.2.826.0.1.3680043.8.498.{1000 + i}", i / 12) for i in range(12)]
        data = page_document(RUN, studies, rows_to_table(rows, load_schema("images")))
        assert len(data["studies"]) == 5
        assert ["images" in s for s in data["studies"]] == [True, True, False, False, False]
        assert [len(s["images"]) for s in data["studies"][:2]] == [1, 1]
        assert data["studies"][1]["images_omitted"] == 1  # study 10 has 2 ok images
        assert len(data["errors"]) == 1
        assert data["totals"] == {"studies": 12, "listed": 5, "detailed": 2, "errors": 2,
                                  "unsafe_pictures": 0}  # fmt: skip
        assert sum(sum(b["histogram"]) for b in data["bones"]) == 12  # every study counted

    def test_a_huge_night_makes_a_bounded_page(self) -> None:
        studies = [study(f"1.2.3.{i}", (i % 1000) / 1000) for i in range(30_000)]
        html = render_index(RUN, studies, images_table([]))
        data = data_of(html)
        assert len(data["studies"]) == page_data.LISTED_STUDIES
        assert len(html) < 8_000_000
        assert data["studies"][0]["p"] == 0.999

    @pytest.mark.parametrize(
        "value",
        ["../x.png", "/etc/x.png", "a/../../x.png", "./x.png", "a/./x.png", "javascript:x.png",
         "data:image/png;base64,xx.png", "x.svg", "http://h/x.png", "a b.png", ".x.png", ""],
    )  # fmt: skip
    def test_only_plain_relative_pngs_are_shown(self, value: str) -> None:
        assert image_file(value) is None

    def test_plain_relative_pngs_are(self) -> None:
        assert image_file("thumbnails/ab12_x-y.png") == "thumbnails/ab12_x-y.png"

    def test_unsafe_pictures_are_dropped_and_counted(self, tmp_path: Path) -> None:
        rows, _ = sample_rows(tmp_path, 1)
        table = rows_to_table(rows, load_schema("images"))
        ok = [r.as_dict() for r in rows if r.status == Status.OK.value]
        ok[0]["thumbnail"], ok[0]["heatmap"] = "../../etc/passwd.png", "javascript:alert(1)"
        uid = ok[0]["study_instance_uid"]
        data = page_document(RUN, [study(uid, 0.9)], images_table(ok))
        image = data["studies"][0]["images"][0]
        assert image["thumbnail"] is None and image["heatmap"] is None
        assert data["totals"]["unsafe_pictures"] == 2
        assert table.num_rows == len(rows)

    def test_router_bone_against_body_part(self, tmp_path: Path) -> None:
        rows, _ = sample_rows(tmp_path, 8)
        table = rows_to_table(rows, load_schema("images"))
        data = page_document(RUN, [], table)
        chest = [r for r in data["body_parts"] if r["body_part"] == "CHEST"]
        ok = [r for r in rows if r.status == Status.OK.value]
        assert sum(r["images"] for r in data["body_parts"]) == len(ok)
        assert sum(r["images"] for r in chest) == sum(r.body_part_examined == "CHEST" for r in ok)
        assert all(r["mismatched"] == r["images"] for r in chest)
        assert all(r["mismatched"] == 0 for r in data["body_parts"] if r["body_part"] != "CHEST")

    def test_many_body_parts_end_in_one_other_row(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(page_data, "BODY_PARTS", 2)
        rows, _ = sample_rows(tmp_path, 8)
        data = page_document(RUN, [], rows_to_table(rows, load_schema("images")))
        assert len({r["body_part"] for r in data["body_parts"] if not r["other"]}) == 2
        assert any(r["other"] for r in data["body_parts"])

    def test_histogram_bins(self) -> None:
        studies = [study("a", 0.0), study("b", 0.049), study("c", 0.05), study("d", 1.0)]
        hand = next(b for b in page_document(RUN, studies, images_table([]))["bones"]
                    if b["bone"] == Bone.HAND.value)  # fmt: skip
        assert hand["histogram"][:2] == [2, 1] and hand["histogram"][-1] == 1
        assert hand["studies"] == 4 and hand["abnormal"] == 1 and hand["uncertain"] == 0


class TestWriteIndex:
    def test_rewrites_the_page_from_the_files(self, tmp_path: Path) -> None:
        report = write_sample_report(tmp_path)
        before = (tmp_path / "index.html").read_text()
        (tmp_path / "index.html").unlink()
        write_index(tmp_path)
        assert data_of((tmp_path / "index.html").read_text()) == data_of(before)
        assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o640
        assert report.summary.exit_code == 3

    def test_reports_of_an_older_schema_without_picture_columns(self, tmp_path: Path) -> None:
        write_sample_report(tmp_path)
        table = pq.read_table(tmp_path / "images.parquet")
        pq.write_table(table.drop_columns(["thumbnail", "heatmap"]), tmp_path / "images.parquet")
        write_index(tmp_path)
        data = data_of((tmp_path / "index.html").read_text())
        assert all(im["thumbnail"] is None for s in data["studies"] for im in s["images"])
