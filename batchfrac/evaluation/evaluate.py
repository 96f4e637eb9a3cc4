"""``batchfrac evaluate``: a bundle's per-bone results on labelled data (the paper's table).

Each image goes once through the trunk, then through the heads it needs:

- **oracle**: the head of the image's *true* bone (how the paper scores each bone model);
- **routed**: the head the router picks, as ``batchfrac scan`` would run it.

Per bone, at image level and at study level (MURA rule: mean of the image probabilities,
abnormal above the head's threshold), the table holds TP/FN/FP/TN, accuracy, precision,
sensitivity, specificity, F1, Cohen's kappa and AUROC, plus an *average* row (mean over
bones, the paper's) and an *overall* row (all cases pooled, MURA's overall kappa). Routed
studies follow :mod:`batchfrac.report.aggregate`: the study's bone is the one with the largest
summed router confidence, each image keeps its own routed head's probability. Rows are
grouped by the true bone; a study is abnormal when any of its images is labelled so.
Bones without a head are skipped and listed in ``skipped``.
Metrics come from :mod:`batchfrac.evaluation.metrics` (scikit-learn). When the labels CSV
carries abnormality boxes, the Grad-CAM pointing game runs too (:mod:`.pointing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..bundle.format import ModelBundle
from ..datasets.loader import ImageLoader, ingest_fetcher, load_labelled
from ..datasets.samples import Dataset, SourceKind
from ..enums import Bone, Head, Label
from ..report.aggregate import study_bone
from .metrics import MulticlassMetrics, average_row, binary_metrics, multiclass_metrics
from .paper import REFERENCE_COLUMNS, reference
from .pointing import NEAR_MARGIN, PointingGame

ORACLE = "oracle"
ROUTED = "routed"
IMAGE = "image"
STUDY = "study"
AVERAGE = "average"
OVERALL = "overall"


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one ``batchfrac evaluate`` run."""

    data: Path
    bundle: Path
    split: str = "valid"
    labels: Path | None = None
    batch_size: int = 32
    near_margin: float = NEAR_MARGIN  # pointing game: "near" = box grown by this share


@dataclass(frozen=True)
class Predictions:
    """Per-image model outputs (``nan`` where the needed head is absent).

    ``router`` is ``(N, 7)`` in router class order, or ``None`` without a router head.
    """

    dataset: Dataset
    router: np.ndarray | None
    oracle: np.ndarray
    routed: np.ndarray
    thresholds: dict[Bone, float]

    @property
    def true_bone(self) -> np.ndarray:
        """Router class index of each image's true bone."""
        bones = list(Bone)
        return np.array([bones.index(s.bone) for s in self.dataset.samples], dtype=np.int64)

    @property
    def y_true(self) -> np.ndarray:
        """1 for abnormal images, else 0."""
        return np.array([s.label is Label.ABNORMAL for s in self.dataset.samples], np.int64)


def predict(
    bundle: ModelBundle,
    dataset: Dataset,
    loader: ImageLoader,
    batch_size: int = 32,
    on_batch: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Run the trunk once per image and the oracle/routed heads on what they need."""
    samples = dataset.samples
    n = len(samples)
    bones = list(Bone)
    present = set(bundle.heads())
    has_router = Head.ROUTER.value in present
    router = np.full((n, len(bones)), np.nan) if has_router else None
    oracle = np.full(n, np.nan)
    routed = np.full(n, np.nan)
    true_bone = np.array([bones.index(s.bone) for s in samples], dtype=np.int64)
    if has_router and list(bundle.router_classes) != [b.value for b in bones]:
        raise ValueError(f"unexpected router classes {bundle.router_classes}")
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        features = bundle.trunk_features(loader.load_many(samples[start:stop]))
        truth = true_bone[start:stop]
        picks = truth
        if router is not None:
            router[start:stop] = bundle.head_probs(Head.ROUTER, features)
            picks = router[start:stop].argmax(axis=1)
        for b, bone in enumerate(bones):
            if bone.value not in present:
                continue
            wanted = (truth == b) | ((picks == b) if router is not None else False)
            members = np.flatnonzero(wanted)
            if members.size == 0:
                continue
            probs = bundle.head_probs(bone.head, [f[members] for f in features])
            probs = probs[:, Label.ABNORMAL.column]
            rows = start + members
            oracle[rows[truth[members] == b]] = probs[truth[members] == b]
            if router is not None:
                routed[rows[picks[members] == b]] = probs[picks[members] == b]
        if on_batch is not None:
            on_batch(stop, n)
    thresholds = {b: bundle.threshold(b) for b in bones if b.value in present}
    return Predictions(dataset, router, oracle, routed, thresholds)


@dataclass(frozen=True)
class Evaluation:
    """The tables of one evaluation, ready for display and for CSV/JSON."""

    rows: tuple[dict[str, Any], ...]
    router: MulticlassMetrics | None
    skipped: tuple[str, ...]
    provenance: dict[str, Any]
    predictions: Predictions = field(repr=False)
    #: Grad-CAM pointing game, when the labels carry abnormality boxes (DICOM + labels CSV)
    pointing: PointingGame | None = None

    def table(self, mode: str, level: str) -> list[dict[str, Any]]:
        """The rows of one table (e.g. oracle/image): bones, then average and overall."""
        return [r for r in self.rows if r["mode"] == mode and r["level"] == level]


def _study_groups(keys: list[str]) -> tuple[np.ndarray, int]:
    _, inverse = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    return inverse, int(inverse.max()) + 1 if inverse.size else 0


def cases(
    p: Predictions, mode: str, level: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(true bone, label, probability, threshold, unscored mask) per image or study."""
    bones = list(Bone)
    truth, y = p.true_bone, p.y_true
    if mode == ORACLE:
        prob = p.oracle
        head_bone = truth
    else:
        assert p.router is not None
        prob = p.routed
        head_bone = p.router.argmax(axis=1)
    thr_by_index = np.array([p.thresholds.get(b, np.nan) for b in bones])
    if level == IMAGE:
        return truth, y, prob, thr_by_index[head_bone], np.isnan(prob)
    # A study is scored per bone (a DICOM study may hold several bones' images).
    keys = [f"{s.study}\t{s.bone.value}" for s in p.dataset.samples]
    group, n_groups = _study_groups(keys)
    scored = ~np.isnan(prob)
    counts = np.bincount(group[scored], minlength=n_groups)
    sums = np.bincount(group[scored], weights=prob[scored], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        study_prob = sums / counts
    study_truth = np.zeros(n_groups, np.int64)
    study_truth[group] = truth
    study_y = np.zeros(n_groups, np.int64)
    np.maximum.at(study_y, group, y)  # abnormal when any image is (MURA: all agree)
    if mode == ORACLE:
        study_head = study_truth
    else:
        assert p.router is not None
        study_head = _study_heads(group, n_groups, head_bone, p.router.max(axis=1))
    return study_truth, study_y, study_prob, thr_by_index[study_head], counts == 0


def _study_heads(
    group: np.ndarray, n_groups: int, head_bone: np.ndarray, confidence: np.ndarray
) -> np.ndarray:
    """Router class index of each study's bone, by the scan's own rule (``study_bone``)."""
    bones = list(Bone)
    routed: list[list[tuple[Bone, float]]] = [[] for _ in range(n_groups)]
    for g, b, c in zip(group.tolist(), head_bone.tolist(), confidence.tolist(), strict=True):
        routed[g].append((bones[b], c))
    return np.array([bones.index(study_bone(images)) for images in routed], dtype=np.int64)


def _reference(bone: Bone | None, mura: bool, mode: str, level: str) -> dict[str, Any]:
    """Published numbers for an oracle row on MURA: Patel et al.'s accuracy/F1, and MURA's
    kappa on study-level rows only (it was measured per study)."""
    if not mura or mode != ORACLE:
        return {}
    ref = reference(bone).as_dict()
    if level != STUDY:
        ref.pop("mura_kappa")
    return ref


def _rows_for(p: Predictions, mode: str, level: str, mura: bool) -> list[dict[str, Any]]:
    truth, y, prob, thr, unscored = cases(p, mode, level)
    rows: list[dict[str, Any]] = []
    per_bone = []
    pooled = np.zeros(truth.size, dtype=bool)
    for b, bone in enumerate(Bone):
        if bone not in p.thresholds:
            continue
        mine = truth == b
        keep = mine & ~unscored
        if not keep.any():
            continue
        metrics = binary_metrics(y[keep], prob[keep], thr[keep])
        per_bone.append(metrics)
        pooled |= keep
        ref = _reference(bone, mura, mode, level)
        rows.append(
            {
                "bone": bone.value,
                "threshold": p.thresholds[bone],
                "n_unscored": int((mine & unscored).sum()),
                **metrics.as_dict(),
                **ref,
            }
        )
    if per_bone:
        # Patel et al. report the mean over bones; MURA's overall kappa pools all studies.
        ref = _reference(None, mura, mode, level)
        paper = {k: v for k, v in ref.items() if k != "mura_kappa"}
        average = {"bone": AVERAGE, "threshold": None, "n_unscored": None, **average_row(per_bone)}
        rows.append({**average, **paper})
        overall = binary_metrics(y[pooled], prob[pooled], thr[pooled]).as_dict()
        mura_overall = {"mura_kappa": ref["mura_kappa"]} if "mura_kappa" in ref else {}
        rows.append(
            {"bone": OVERALL, "threshold": None, "n_unscored": None, **overall, **mura_overall}
        )
    return [{"mode": mode, "level": level, **row} for row in rows]


def evaluate_predictions(p: Predictions, provenance: dict[str, Any]) -> Evaluation:
    """Build every table from the per-image predictions."""
    mura = p.dataset.kind is SourceKind.MURA
    modes = [ORACLE] + ([ROUTED] if p.router is not None else [])
    rows = [
        row for mode in modes for level in (IMAGE, STUDY) for row in _rows_for(p, mode, level, mura)
    ]
    for row in rows:
        for column in REFERENCE_COLUMNS:
            row.setdefault(column, None)
    router = multiclass_metrics(p.true_bone, p.router) if p.router is not None else None
    skipped = tuple(
        f"{bone.value}: no {bone.value} head in the bundle"
        for bone in Bone
        if bone not in p.thresholds and any(s.bone is bone for s in p.dataset.samples)
    )
    if p.router is None:
        skipped += ("routed: no router head in the bundle",)
    else:
        unscored = np.isnan(p.routed)
        if unscored.any():
            bones = list(Bone)
            counts = np.bincount(p.router.argmax(axis=1)[unscored], minlength=len(bones))
            where = ", ".join(f"{bones[b].value} {n}" for b, n in enumerate(counts) if n)
            skipped += (
                f"routed: {int(unscored.sum())} image(s) went to bones without a head ({where})",
            )
    return Evaluation(tuple(rows), router, skipped, provenance, p)


def evaluate(config: EvalConfig, on_batch: Callable[[int, int], None] | None = None) -> Evaluation:
    """Load the bundle and the data, predict, and build the tables."""
    bundle = ModelBundle.load(config.bundle)
    fetch = ingest_fetcher(bundle.spec) if config.labels is not None else None
    loader = ImageLoader(bundle.spec, fetch, cache_bytes=0 if fetch is None else 1 << 30)
    dataset = load_labelled(config.data, config.labels, config.split, loader)
    predictions = predict(bundle, dataset, loader, config.batch_size, on_batch)
    provenance = {
        "software_version": __version__,
        "bundle": str(bundle.path),
        "bundle_id": bundle.bundle_id,
        "trunk_sha256": bundle.trunk_sha256,
        "heads": bundle.heads(),
        "preprocess_spec_id": bundle.spec.spec_id,
        "data": dataset.describe(),
        "labels": str(config.labels) if config.labels else None,
    }
    evaluation = evaluate_predictions(predictions, provenance)
    if config.labels is None:
        return evaluation
    from .pointing import pointing_cases

    cases = pointing_cases(bundle, dataset, loader, config.labels, batch_size=config.batch_size)
    if not cases:
        return evaluation
    return replace(evaluation, pointing=PointingGame(tuple(cases), config.near_margin))
