"""The data of ``index.html``: one JSON-ready document built from ``run.json``, the study
rows and the image rows (pure; no I/O). :mod:`batchfrac.report.html` embeds it once and the
page's script renders it.

The page stays usable, and its size bounded, whatever the size of the night:

- studies are listed in priority order (abnormal first, then uncertain, then the rest;
  each by descending probability); the first :data:`LISTED_STUDIES` are embedded, the first
  :data:`DETAILED_STUDIES` of those with their images (thumbnails, heatmaps, per-image
  values, at most :data:`IMAGES_PER_STUDY` each); the page says what it left out;
- the files in error: the first :data:`ERROR_FILES` (by path);
- counts, the per-bone table and the histograms cover every study and every row;
- the table shows :data:`PAGE_SIZE` studies a page.

At most ~0.3 kB a listed study and ~1.5 kB a detailed one: under 12 MB in the worst case.
A study is *uncertain* when its probability lies within :data:`UNCERTAIN_MARGIN` of its
bone's threshold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..enums import Bone, ImageFlag, Label, Status
from .rows import StudyRow

UNCERTAIN_MARGIN = 0.1
LISTED_STUDIES = 20_000
DETAILED_STUDIES = 2_000
IMAGES_PER_STUDY = 24
ERROR_FILES = 1_000
BODY_PARTS = 40
HISTOGRAM_BINS = 20
PAGE_SIZE = 100

#: A picture the page may show: a relative path under the output directory, made of
#: plain characters, without ``.``/``..`` segments, ending in ``.png``.
_IMAGE_FILE = re.compile(r"^(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9_][A-Za-z0-9._/-]*\.png$")
_IMAGE_COLUMNS = [
    "study_instance_uid", "path", "frame", "status", "reason", "view_position", "laterality",
    "body_part_examined", "bone", "bone_confidence", "abnormal_probability", "flags",
    "thumbnail", "heatmap", "heatmap_peak_x", "heatmap_peak_y",
]  # fmt: skip


_THROUGHPUT = (
    "images_per_s", "files_per_s", "wall_s", "inferred_images", "trunk_passes_per_image",
    "decode_s", "inference_s",
)  # fmt: skip


def is_uncertain(probability: float, threshold: float) -> bool:
    """Whether a study's call is uncertain: ``|probability - threshold| < UNCERTAIN_MARGIN``."""
    return abs(probability - threshold) < UNCERTAIN_MARGIN


def priority(study: StudyRow) -> tuple[int, float, str]:
    """Sort key of the page's default order: abnormal, then uncertain, then the rest,
    each by descending probability."""
    if study.prediction == Label.ABNORMAL.value:
        group = 0
    elif is_uncertain(study.abnormal_probability, study.threshold):
        group = 1
    else:
        group = 2
    return (group, -study.abnormal_probability, study.study_instance_uid or "")


def image_file(value: str | None) -> str | None:
    """``value`` when it is a picture the page may load (see ``_IMAGE_FILE``), else ``None``."""
    return value if value and _IMAGE_FILE.match(value) else None


def _num(value: Any, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def page_document(
    run: Mapping[str, Any],
    studies: Sequence[StudyRow],
    images: pa.Table,
    privacy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the page shows (module docstring): ``run`` is the ``run.json`` document,
    ``images`` the ``images`` table, ``privacy`` what the page says about pseudonyms."""
    ranked = sorted(studies, key=priority)
    listed = ranked[:LISTED_STUDIES]
    detailed_uids = {
        s.study_instance_uid for s in listed[:DETAILED_STUDIES] if s.study_instance_uid
    }
    by_study, unsafe = _study_images(images, detailed_uids)
    rows = []
    for index, study in enumerate(listed):
        entry = _study_entry(study)
        if index < DETAILED_STUDIES:
            found = by_study.get(study.study_instance_uid, []) if study.study_instance_uid else []
            entry["images"] = found[:IMAGES_PER_STUDY]
            entry["images_omitted"] = max(0, len(found) - IMAGES_PER_STUDY)
        rows.append(entry)
    errors, error_total = _error_files(images)
    return {
        "run": _run_summary(run),
        "privacy": dict(privacy or {"pseudonymised": False}),
        "bones": _bones(studies, images),
        "body_parts": _body_parts(images),
        "studies": rows,
        "errors": errors,
        "limits": {
            "uncertain_margin": UNCERTAIN_MARGIN,
            "page_size": PAGE_SIZE,
            "listed_studies": LISTED_STUDIES,
            "detailed_studies": DETAILED_STUDIES,
            "images_per_study": IMAGES_PER_STUDY,
            "error_files": ERROR_FILES,
            "histogram_bins": HISTOGRAM_BINS,
        },
        "totals": {
            "studies": len(studies),
            "listed": len(listed),
            "detailed": min(len(listed), DETAILED_STUDIES),
            "errors": error_total,
            "unsafe_pictures": unsafe,
        },
    }


def _run_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    bundle = run.get("bundle", {})
    throughput = run.get("throughput", {})
    heatmaps = run.get("heatmaps")
    return {
        "run_id": run.get("run_id"),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "host": run.get("host"),
        "software_version": run.get("software_version"),
        "exit_code": run.get("exit_code"),
        "config_id": run.get("config_id"),
        "spec_id": run.get("preprocessing", {}).get("spec_id"),
        "bundle": {
            "id": bundle.get("id"),
            "demo": bool(bundle.get("demo")),
            "notice": bundle.get("notice"),
            "trunk_sha256": bundle.get("trunk_sha256"),
        },
        "counts": run.get("counts", {}),
        "throughput": {k: throughput.get(k) for k in _THROUGHPUT},
        "heatmaps": {k: heatmaps.get(k) for k in _HEATMAPS} if heatmaps else None,
    }


#: What the page shows of ``run.json``'s ``heatmaps`` (their cost among them).
_HEATMAPS = ("written", "left_out", "seconds", "method")


def _study_entry(study: StudyRow) -> dict[str, Any]:
    return {
        "uid": study.study_instance_uid,
        "patient": study.patient_id,
        "accession": study.accession_number,
        "bone": study.bone,
        "p": _num(study.abnormal_probability),
        "threshold": _num(study.threshold),
        "prediction": study.prediction,
        "uncertain": is_uncertain(study.abnormal_probability, study.threshold),
        "flags": list(study.flags),
        "n_images": study.n_images,
        "n_errors": study.n_errors,
    }


def _study_images(images: pa.Table, uids: set[str]) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """The ok and error image rows of the studies ``uids``, per study, in path order; and
    how many picture references were dropped as unsafe."""
    if not uids or images.num_rows == 0:
        return {}, 0
    wanted = pc.and_(
        pc.is_in(images.column("study_instance_uid"), value_set=pa.array(sorted(uids))),
        pc.not_equal(images.column("status"), Status.SKIPPED.value),
    )
    table = images.filter(wanted).select(_IMAGE_COLUMNS)
    out: dict[str, list[dict[str, Any]]] = {}
    unsafe = 0
    for row in table.to_pylist():
        thumbnail, heatmap = image_file(row["thumbnail"]), image_file(row["heatmap"])
        unsafe += (thumbnail is None and row["thumbnail"] is not None) + (
            heatmap is None and row["heatmap"] is not None
        )
        peak = None
        if row["heatmap_peak_x"] is not None and row["heatmap_peak_y"] is not None:
            peak = [row["heatmap_peak_x"], row["heatmap_peak_y"]]
        out.setdefault(row["study_instance_uid"], []).append({
            "path": row["path"],
            "frame": row["frame"],
            "status": row["status"],
            "reason": row["reason"],
            "view": row["view_position"],
            "laterality": row["laterality"],
            "body_part": row["body_part_examined"],
            "bone": row["bone"],
            "bone_confidence": _num(row["bone_confidence"], 3),
            "p": _num(row["abnormal_probability"]),
            "flags": list(row["flags"] or []),
            "thumbnail": thumbnail,
            "heatmap": heatmap,
            "peak": peak,
        })  # fmt: skip
    return out, unsafe


def _error_files(images: pa.Table) -> tuple[list[dict[str, Any]], int]:
    errors = images.filter(pc.equal(images.column("status"), Status.ERROR.value))
    listed = errors.slice(0, ERROR_FILES).select(["path", "frame", "reason", "detail"])
    return listed.to_pylist(), errors.num_rows


def _bones(studies: Sequence[StudyRow], images: pa.Table) -> list[dict[str, Any]]:
    """Per bone: studies, abnormal, uncertain, ok images, threshold and the histogram of
    the studies' probabilities (every study, whatever the page lists)."""
    ok = images.filter(pc.equal(images.column("status"), Status.OK.value))
    counts = ok.group_by("bone").aggregate([("path", "count")]).to_pylist() if ok.num_rows else []
    images_per_bone = {row["bone"]: row["path_count"] for row in counts}
    out = []
    for bone in Bone:
        mine = [s for s in studies if s.bone == bone.value]
        histogram = [0] * HISTOGRAM_BINS
        for study in mine:
            p = study.abnormal_probability
            if math.isfinite(p):
                histogram[min(HISTOGRAM_BINS - 1, max(0, int(p * HISTOGRAM_BINS)))] += 1
        out.append({
            "bone": bone.value,
            "studies": len(mine),
            "abnormal": sum(s.prediction == Label.ABNORMAL.value for s in mine),
            "uncertain": sum(is_uncertain(s.abnormal_probability, s.threshold) for s in mine),
            "images": images_per_bone.get(bone.value, 0),
            "threshold": _num(mine[0].threshold) if mine else None,
            "histogram": histogram,
        })  # fmt: skip
    return out


def _body_parts(images: pa.Table) -> list[dict[str, Any]]:
    """Ok images per (Body Part Examined, router bone), with how many were flagged
    ``bodypart_mismatch``; the :data:`BODY_PARTS` most frequent body parts, the rest
    together as ``other``."""
    ok = images.filter(pc.equal(images.column("status"), Status.OK.value))
    if ok.num_rows == 0:
        return []
    flags = ok.column("flags").combine_chunks()
    flat = pc.list_flatten(flags)
    parents = pc.list_parent_indices(flags).to_numpy(zero_copy_only=False)
    mismatch = np.zeros(ok.num_rows, dtype=np.int64)
    hit = pc.equal(flat, ImageFlag.BODYPART_MISMATCH.value).to_numpy(zero_copy_only=False)
    mismatch[parents[hit.astype(bool)]] = 1
    table = pa.table({
        "body_part": ok.column("body_part_examined"),
        "bone": ok.column("bone"),
        "mismatch": pa.array(mismatch),
    })  # fmt: skip
    groups = table.group_by(["body_part", "bone"]).aggregate(
        [("mismatch", "count"), ("mismatch", "sum")]
    )
    rows = groups.to_pylist()
    totals: dict[str | None, int] = {}
    for row in rows:
        totals[row["body_part"]] = totals.get(row["body_part"], 0) + row["mismatch_count"]
    kept = set(sorted(totals, key=lambda part: (-totals[part], part or ""))[:BODY_PARTS])
    merged: dict[tuple[str | None, bool, str | None], list[int]] = {}
    for row in rows:
        other = row["body_part"] not in kept
        key = (None if other else row["body_part"], other, row["bone"])
        counts = merged.setdefault(key, [0, 0])
        counts[0] += row["mismatch_count"]
        counts[1] += row["mismatch_sum"]
    order = sorted(
        merged.items(),
        key=lambda item: (item[0][1], -totals.get(item[0][0], 0), item[0][0] or "",
                          -item[1][0], item[0][2] or ""),
    )  # fmt: skip
    return [
        {"body_part": part, "other": other, "bone": bone, "images": n, "mismatched": bad}
        for (part, other, bone), (n, bad) in order
    ]
