"""Metric tables against independent computations (numpy counting, closed forms)."""

from __future__ import annotations

import numpy as np
import pytest

from batchfrac.evaluation.metrics import (
    METRIC_COLUMNS,
    average_row,
    binary_metrics,
    multiclass_metrics,
    predict_abnormal,
    study_scores,
)

# 10 cases: label, abnormal probability. Threshold 0.5 ("above" = abnormal).
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1])
P = np.array([0.9, 0.8, 0.4, 0.5, 0.1, 0.6, 0.2, 0.3, 0.05, 0.7])
# By hand: predicted abnormal where P > 0.5 -> [1,1,0,0,0,1,0,0,0,1]
# TP = 3 (0.9, 0.8, 0.7), FN = 2 (0.4, 0.5 is not above 0.5), FP = 1 (0.6), TN = 4.
HAND = {"tp": 3, "fn": 2, "fp": 1, "tn": 4}


def _independent(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    pred = p > threshold
    tp = int(np.sum(pred & (y == 1)))
    fn = int(np.sum(~pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    n = tp + fn + fp + tn
    accuracy = (tp + tn) / n
    precision = tp / (tp + fp)
    sensitivity = tp / (tp + fn)
    specificity = tn / (tn + fp)
    f1 = 2 * precision * sensitivity / (precision + sensitivity)
    # Cohen's kappa: observed vs chance agreement from the marginals.
    chance = ((tp + fn) * (tp + fp) + (tn + fp) * (tn + fn)) / n**2
    kappa = (accuracy - chance) / (1 - chance)
    # AUROC = P(score of a random positive > score of a random negative), ties count 1/2.
    pos, neg = p[y == 1], p[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    auroc = wins / (pos.size * neg.size)
    return {
        "n": n,
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "accuracy": accuracy,
        "precision": precision,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "f1": f1,
        "kappa": kappa,
        "auroc": auroc,
    }


class TestBinaryMetrics:
    def test_counts_match_hand_count(self):
        m = binary_metrics(Y, P)
        assert {k: getattr(m, k) for k in HAND} == HAND

    def test_table_matches_independent_computation(self):
        expected = _independent(Y, P)
        row = binary_metrics(Y, P).as_dict()
        assert list(row) == list(METRIC_COLUMNS)
        for key, value in expected.items():
            assert row[key] == pytest.approx(value), key

    @pytest.mark.parametrize("seed", range(5))
    def test_random_cases_match(self, seed):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 200)
        p = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
        threshold = float(rng.uniform(0.3, 0.7))
        expected = _independent(y, p, threshold)
        row = binary_metrics(y, p, threshold).as_dict()
        for key, value in expected.items():
            assert row[key] == pytest.approx(value), key

    def test_threshold_per_case(self):
        thresholds = np.where(np.arange(Y.size) < 5, 0.3, 0.65)
        pred = (P > thresholds).astype(int)
        m = binary_metrics(Y, P, thresholds)
        assert m.tp == int(np.sum((pred == 1) & (Y == 1)))
        assert m.fp == int(np.sum((pred == 1) & (Y == 0)))
        assert list(predict_abnormal(P, thresholds)) == list(pred)

    def test_one_class_only_has_no_auroc(self):
        m = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
        assert m.auroc is None
        assert (m.tn, m.fp, m.tp, m.fn) == (2, 1, 0, 0)
        assert m.sensitivity == 0.0 and m.precision == 0.0

    def test_constant_raters_have_no_kappa(self):
        m = binary_metrics([1, 1], [0.9, 0.8])
        assert m.kappa is None and m.accuracy == 1.0

    def test_length_mismatch(self):
        with pytest.raises(ValueError, match="labels but"):
            binary_metrics([0, 1], [0.5])


class TestAverageRow:
    def test_counts_summed_rates_averaged(self):
        a = binary_metrics(Y, P)
        b = binary_metrics(Y[:6], P[:6])
        row = average_row([a, b])
        assert row["tp"] == a.tp + b.tp and row["n"] == a.n + b.n
        assert row["accuracy"] == pytest.approx((a.accuracy + b.accuracy) / 2)
        assert row["f1"] == pytest.approx((a.f1 + b.f1) / 2)

    def test_undefined_values_are_left_out(self):
        a = binary_metrics(Y, P)
        b = binary_metrics([1, 1], [0.9, 0.8])
        assert average_row([a, b])["auroc"] == pytest.approx(a.auroc)


class TestStudyScores:
    def test_mean_of_image_probabilities(self):
        keys = ["s2", "s1", "s2", "s3", "s1"]
        y = [1, 0, 1, 0, 0]
        p = [0.8, 0.2, 0.4, 0.9, 0.6]
        studies = study_scores(keys, y, p)
        assert studies.keys == ("s1", "s2", "s3")
        assert list(studies.y_true) == [0, 1, 0]
        assert studies.prob == pytest.approx([0.4, 0.6, 0.9])
        assert list(studies.n_images) == [2, 2, 1]

    def test_a_study_with_an_abnormal_image_is_abnormal(self):
        studies = study_scores(["s1", "s1", "s2"], [0, 1, 0], [0.1, 0.2, 0.3])
        assert list(studies.y_true) == [1, 0]


class TestMulticlass:
    def test_confusion_and_rates(self):
        y = np.array([0, 0, 1, 1, 2, 2, 2])
        probs = np.eye(3)[[0, 1, 1, 1, 2, 0, 2]] * 0.8 + 0.2 / 3
        m = multiclass_metrics(y, probs)
        pred = probs.argmax(axis=1)
        counted = np.zeros((3, 3), int)
        for t, q in zip(y, pred, strict=True):
            counted[t, q] += 1
        assert np.array_equal(np.array(m.confusion), counted)
        assert m.accuracy == pytest.approx(np.mean(y == pred))
        recalls = [counted[k, k] / counted[k].sum() for k in range(3)]
        precisions = [counted[k, k] / counted[:, k].sum() for k in range(3)]
        specificities = [
            (counted.sum() - counted[k].sum() - counted[:, k].sum() + counted[k, k])
            / (counted.sum() - counted[k].sum())
            for k in range(3)
        ]
        assert m.sensitivity == pytest.approx(np.mean(recalls))
        assert m.precision == pytest.approx(np.mean(precisions))
        assert m.specificity == pytest.approx(np.mean(specificities))
        assert m.auroc is not None and 0.5 < m.auroc <= 1.0

    def test_auroc_needs_every_class(self):
        y = np.array([0, 1, 0])
        probs = np.eye(3)[[0, 1, 2]]
        assert multiclass_metrics(y, probs).auroc is None
