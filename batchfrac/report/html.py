"""``index.html``: the auditors' page of one scan, one self-contained file.

Nothing is fetched from the network: the style and the script are inline, the data is one
JSON document (:func:`batchfrac.report.page_data.page_document`) in a
``<script type="application/json">`` element, and the only pictures are the scan's own PNG
files, by paths relative to the output directory. The Content-Security-Policy allows
exactly that: the inline style and script by their sha256 hashes (no ``unsafe-inline``),
pictures from the page's own location and ``data:``, nothing else. Every value reaches the
page as text (``textContent``): the JSON is escaped so that no value can end its element
(``<``, ``>``, ``&``, U+2028 and U+2029 become ``\\uXXXX`` escapes).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import REPORT_FILE_MODE, write_text
from .deidentify import ReportPseudonyms
from .page_data import page_document
from .rows import StudyRow
from .schema import load_schema

DATA_ELEMENT_ID = "batchfrac-data"


@cache
def _asset(name: str) -> str:
    return (files("batchfrac.report") / "assets" / name).read_text(encoding="utf-8")


def _sha256_source(text: str) -> str:
    """A CSP hash source for an inline element whose content is ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy(script: str, style: str) -> str:
    """The page's policy: its own inline script and style (by hash), its pictures."""
    return (
        f"default-src 'none'; script-src {_sha256_source(script)}; "
        f"style-src {_sha256_source(style)}; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'"
    )


def embed_json(document: Any) -> str:
    """``document`` as JSON that is safe inside a ``<script>`` element: ASCII only (so
    U+2028/U+2029 are escaped), and ``<``, ``>``, ``&`` as ``\\u`` escapes, so no value can
    close the element or open a comment; NaN and infinities are refused."""
    text = json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def privacy_note(fingerprint: str | None, *, at_export: bool = False) -> dict[str, Any]:
    """What the page says about identifiers (``fingerprint``: the key's, ``None`` if clear)."""
    if fingerprint is None:
        note = (
            "Patient IDs and accession numbers are shown as recorded in the DICOM headers "
            "(the scan ran without --pseudonymize-key-file). Names, birth dates and "
            "addresses are never read."
        )
    else:
        note = (
            "Patient IDs, accession numbers and every file and folder name below the "
            "archive root are keyed pseudonyms (HMAC-SHA256, key fingerprint "
            f"{fingerprint}). Names, birth dates and addresses are never read."
        )
        if at_export:
            note += (
                " They were pseudonymised by batchfrac export: images.parquet, "
                "studies.parquet, parts/ and scan.log in this folder keep the clear values."
            )
    return {"pseudonymised": fingerprint is not None, "fingerprint": fingerprint, "note": note}


_BODY = """
<noscript><p class="note">The tables of this page need JavaScript. The same data is in
images.parquet and studies.parquet (and in the CSV files with --csv).</p></noscript>
<h2>Summary</h2><div id="summary"></div>
<h2>Per bone</h2><div id="bones"></div>
<h2>Abnormal probability per bone</h2>
<p class="note">Studies per bin of probability; red bars lie above the bone's threshold
(dashed line).</p><div id="histograms"></div>
<h2>Studies</h2><p id="caps" class="note"></p>
<div class="controls"><label>bone <select id="f-bone"></select></label>
<label>prediction <select id="f-prediction"></select></label>
<label>flag <select id="f-flag"></select></label>
<label>search <input id="f-text" type="search" placeholder="patient, accession, study"></label>
<button id="expand" type="button">show images of this page</button>
<button id="collapse" type="button">hide images</button></div>
<div class="scroll"><table id="studies"><thead><tr id="studies-head"></tr></thead>
<tbody id="studies-body"></tbody></table></div>
<div class="controls"><button id="prev" type="button">previous</button><span id="page"></span>
<button id="next" type="button">next</button></div>
<h2>Router bone vs BodyPartExamined</h2>
<p class="note">Ok images per DICOM (0018,0015) Body Part Examined and the bone the router
chose; rows in red were flagged bodypart_mismatch.</p><div id="bodyparts"></div>
<h2>Files in error</h2><div id="errors"></div>
"""


def render_index(
    run: Mapping[str, Any],
    studies: Sequence[StudyRow],
    images: pa.Table,
    privacy: Mapping[str, Any] | None = None,
) -> str:
    """The page of ``run`` (the ``run.json`` document), its study rows and its image rows;
    ``privacy`` (:func:`privacy_note`) defaults to what ``run`` records."""
    if privacy is None:
        record = run.get("pseudonyms")
        privacy = privacy_note(record["key_fingerprint"] if record else None)
    script, style = _asset("page.js"), _asset("page.css")
    document = page_document(run, studies, images, privacy)
    bundle = run["bundle"]
    demo = ""
    if bundle.get("demo"):
        demo = f'<p class="demo">{escape(bundle.get("notice") or "DEMO MODEL")}</p>'
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"",
        escape(content_security_policy(script, style)), "\">\n",
        "<meta name=\"referrer\" content=\"no-referrer\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        f"<title>batchfrac scan {escape(str(run['run_id']))}</title>\n",
        "<link rel=\"icon\" href=\"data:,\">\n",
        f"<style>{style}</style></head>\n<body>\n",
        f"<h1>batchfrac scan <span>{escape(str(run['run_id']))}</span></h1>\n{demo}",
        _BODY,
        f"<script type=\"application/json\" id=\"{DATA_ELEMENT_ID}\">",
        embed_json(document), "</script>\n",
        f"<script>{script}</script>\n</body></html>\n",
    ])  # fmt: skip


def read_images(outdir: Path) -> pa.Table:
    """``images.parquet`` of ``outdir`` with every column of the current schema (columns a
    report of an older schema lacks are null)."""
    table = pq.read_table(outdir / "images.parquet")
    for field in load_schema("images").arrow:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


def write_index(outdir: Path, pseudonyms: ReportPseudonyms | None = None) -> Path:
    """Rewrite ``outdir/index.html`` from its ``run.json``, ``studies.parquet`` and
    ``images.parquet``; with ``pseudonyms`` (a scan that ran without a key), the page
    shows pseudonymised identifiers and paths and says that the Parquet files do not."""
    run = json.loads((outdir / "run.json").read_text(encoding="utf-8"))
    images = read_images(outdir)
    table = pq.read_table(outdir / "studies.parquet")
    privacy = None
    if pseudonyms is not None:
        images, table = pseudonyms.table(images), pseudonyms.table(table)
        privacy = privacy_note(pseudonyms.fingerprint, at_export=True)
    studies = [StudyRow(**{**r, "flags": tuple(r["flags"])}) for r in table.to_pylist()]
    html = render_index(run, studies, images, privacy)
    return write_text(outdir / "index.html", html, mode=REPORT_FILE_MODE)
