"""Metric tables for the per-bone classifiers and the router (pure; scikit-learn only).

Every number comes from :mod:`sklearn.metrics` (``confusion_matrix``, ``precision_score``,
``recall_score``, ``f1_score``, ``cohen_kappa_score``, ``roc_auc_score``): nothing here
counts by hand, so the table means exactly what scikit-learn documents. Undefined values
(AUROC with one class present, kappa of two constant raters) are ``None``, never a fake 0.

Conventions: label 1 = abnormal (MURA), a case is predicted abnormal when its probability
is *above* the decision threshold (MURA's study rule: mean image probability > 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ..defaults import DEFAULT_THRESHOLD

_BINARY = [0, 1]


@dataclass(frozen=True, slots=True)
class BinaryMetrics:
    """One row of the paper's per-bone table, plus Cohen's kappa and AUROC."""

    n: int
    tp: int
    fn: int
    fp: int
    tn: int
    accuracy: float
    precision: float
    sensitivity: float
    specificity: float
    f1: float
    kappa: float | None
    auroc: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        """The row as a plain dict (JSON/CSV friendly), in column order."""
        return asdict(self)


METRIC_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(BinaryMetrics))
RATE_COLUMNS: tuple[str, ...] = (
    "accuracy",
    "precision",
    "sensitivity",
    "specificity",
    "f1",
    "kappa",
    "auroc",
)


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _kappa(truth: np.ndarray, pred: np.ndarray) -> float | None:
    # Undefined when both raters give one and the same class (chance agreement is 1).
    if np.unique(np.concatenate([truth, pred])).size < 2:
        return None
    return _defined(cohen_kappa_score(truth, pred, labels=_BINARY))


def predict_abnormal(
    prob: ArrayLike, threshold: float | ArrayLike = DEFAULT_THRESHOLD
) -> np.ndarray:
    """0/1 predictions: abnormal (1) where the probability is above ``threshold``
    (one value, or one per case)."""
    return (np.asarray(prob, dtype=np.float64) > np.asarray(threshold)).astype(np.int64)


def binary_metrics(
    y_true: ArrayLike, prob: ArrayLike, threshold: float | ArrayLike = DEFAULT_THRESHOLD
) -> BinaryMetrics:
    """TP/FN/FP/TN, accuracy, precision, sensitivity, specificity, F1, kappa and AUROC.

    ``y_true`` holds 0 (normal) / 1 (abnormal); ``prob`` the abnormal probability;
    ``threshold`` one value or one per case (pooled rows mix heads with their own
    thresholds). Ratios with an empty denominator are 0 (``zero_division=0``).
    """
    truth = np.asarray(y_true, dtype=np.int64).ravel()
    scores = np.asarray(prob, dtype=np.float64).ravel()
    if truth.shape != scores.shape:
        raise ValueError(f"{truth.size} labels but {scores.size} probabilities")
    if truth.size == 0:
        raise ValueError("no cases to score")
    pred = predict_abnormal(scores, threshold)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(truth, pred, labels=_BINARY).ravel())
    both_classes = np.unique(truth).size == 2
    return BinaryMetrics(
        n=int(truth.size),
        tp=tp,
        fn=fn,
        fp=fp,
        tn=tn,
        accuracy=float(accuracy_score(truth, pred)),
        precision=float(precision_score(truth, pred, labels=_BINARY, zero_division=0)),
        sensitivity=float(recall_score(truth, pred, labels=_BINARY, pos_label=1, zero_division=0)),
        specificity=float(recall_score(truth, pred, labels=_BINARY, pos_label=0, zero_division=0)),
        f1=float(f1_score(truth, pred, labels=_BINARY, zero_division=0)),
        kappa=_kappa(truth, pred),
        auroc=float(roc_auc_score(truth, scores)) if both_classes else None,
    )


def average_row(rows: Sequence[BinaryMetrics]) -> dict[str, float | int | None]:
    """The paper's "average" row: counts summed, each rate the mean over the rows.

    A rate that is undefined (``None``) in some rows is averaged over the others; it is
    ``None`` only when no row defines it.
    """
    if not rows:
        raise ValueError("no rows to average")
    out: dict[str, float | int | None] = {
        name: sum(int(getattr(r, name)) for r in rows) for name in ("n", "tp", "fn", "fp", "tn")
    }
    for name in RATE_COLUMNS:
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        out[name] = float(np.mean(values)) if values else None
    return out


@dataclass(frozen=True, slots=True)
class StudyScores:
    """Image rows reduced to one row per study (MURA rule: mean image probability)."""

    keys: tuple[str, ...]
    y_true: np.ndarray
    prob: np.ndarray
    n_images: np.ndarray


def study_scores(study_keys: Sequence[str], y_true: ArrayLike, prob: ArrayLike) -> StudyScores:
    """Mean of the image probabilities per study. MURA labels whole studies, so its images
    agree; with image-level labels a study is abnormal when any of its images is."""
    keys = np.asarray(study_keys, dtype=object)
    truth = np.asarray(y_true, dtype=np.int64).ravel()
    scores = np.asarray(prob, dtype=np.float64).ravel()
    if not keys.size == truth.size == scores.size:
        raise ValueError("study keys, labels and probabilities differ in length")
    uniq, inverse = np.unique(keys.astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=uniq.size)
    mean_prob = np.bincount(inverse, weights=scores, minlength=uniq.size) / counts
    positives = np.bincount(inverse, weights=truth, minlength=uniq.size)
    return StudyScores(
        keys=tuple(str(k) for k in uniq),
        y_true=(positives > 0).astype(np.int64),
        prob=mean_prob,
        n_images=counts,
    )


@dataclass(frozen=True, slots=True)
class MulticlassMetrics:
    """Router metrics: accuracy, macro precision/sensitivity/specificity/F1, macro AUROC."""

    n: int
    accuracy: float
    precision: float
    sensitivity: float
    specificity: float
    f1: float
    auroc: float | None
    confusion: tuple[tuple[int, ...], ...]

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly dict (the confusion matrix as nested lists, rows = truth)."""
        out = asdict(self)
        out["confusion"] = [list(row) for row in self.confusion]
        return out


def multiclass_metrics(y_true: ArrayLike, probs: ArrayLike) -> MulticlassMetrics:
    """Metrics of a softmax classifier: ``y_true`` class indices, ``probs`` (N, C).

    Macro averages are over the classes present in ``y_true`` or predicted; AUROC is
    one-vs-rest macro and ``None`` unless every one of the C classes occurs in ``y_true``.
    """
    truth = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != truth.size:
        raise ValueError(f"probabilities of shape {p.shape} do not match {truth.size} labels")
    n_classes = p.shape[1]
    labels = list(range(n_classes))
    pred = p.argmax(axis=1)
    present = sorted(set(truth.tolist()) | set(pred.tolist()))
    per_class = multilabel_confusion_matrix(truth, pred, labels=present)
    # Specificity of class k = TN / (TN + FP) of the one-vs-rest table scikit-learn counts.
    spec = [tn / (tn + fp) if tn + fp else 0.0 for (tn, fp), _ in per_class]
    auroc: float | None = None
    if np.unique(truth).size == n_classes:
        if n_classes == 2:
            auroc = float(roc_auc_score(truth, p[:, 1]))
        else:
            norm = p / p.sum(axis=1, keepdims=True)
            auroc = float(roc_auc_score(truth, norm, multi_class="ovr", labels=labels))
    cm = confusion_matrix(truth, pred, labels=labels)
    return MulticlassMetrics(
        n=int(truth.size),
        accuracy=float(accuracy_score(truth, pred)),
        precision=float(
            precision_score(truth, pred, labels=present, average="macro", zero_division=0)
        ),
        sensitivity=float(
            recall_score(truth, pred, labels=present, average="macro", zero_division=0)
        ),
        specificity=float(np.mean(spec)),
        f1=float(f1_score(truth, pred, labels=present, average="macro", zero_division=0)),
        auroc=auroc,
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
    )
