"""Metrics against cases counted by hand (scikit-learn's definitions, FAKE = 1 positive)."""

import numpy as np
import pytest

from edgedetect.errors import EdgeDetectError
from edgedetect.metrics import binary_metrics, confusion_matrix, optimal_threshold, roc_auc, roc_curve

# Hand-counted at threshold 0.5 (p >= 0.5 is FAKE): TP = idx 2, 4, 6; FP = 1, 7; FN = 3; TN = 0, 5.
Y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
P = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.3, 0.5, 0.5])


def test_binary_metrics_match_hand_counts():
    m = binary_metrics(Y, P, 0.5)
    assert m["confusion_matrix"] == [[2, 2], [1, 3]]  # [[TN, FP], [FN, TP]]
    assert m["n"] == 8 and m["threshold"] == 0.5
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))  # = 2/3
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    # 16 (positive, negative) pairs: 12 ordered right, one tie (0.5 vs 0.5) counting 1/2 -> 12.5 / 16.
    assert m["roc_auc"] == pytest.approx(12.5 / 16)


def test_threshold_is_inclusive_and_moves_the_counts():
    # At 0.6 the two 0.5 scores become REAL: TP 2 (0.7, 0.9), FP 1 (0.6), FN 2 (0.4, 0.5), TN 3.
    m = binary_metrics(Y, P, 0.6)
    assert m["confusion_matrix"] == [[3, 1], [2, 2]]
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 4)
    assert m["roc_auc"] == pytest.approx(12.5 / 16)  # threshold-free


def test_roc_curve_collapses_tied_scores_into_one_point():
    fpr, tpr, thresholds = roc_curve(Y, P)
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.7, 0.6, 0.5, 0.4, 0.3, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.25, 0.5, 0.5, 0.75, 1])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.5, 0.5, 0.75, 1, 1, 1])


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_pairwise_probability_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[:2] = [0, 1]
    p = rng.integers(0, 6, 60) / 5  # few distinct values: many ties, within and across classes
    pos, neg = p[y == 1], p[y == 0]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert roc_auc(y, p) == pytest.approx(pairwise)


def test_auc_is_none_for_one_class_and_extremes_otherwise():
    assert roc_auc(np.zeros(4), [0.1, 0.2, 0.3, 0.4]) is None
    assert roc_auc(np.ones(4), [0.1, 0.2, 0.3, 0.4]) is None
    assert binary_metrics(np.ones(3), [0.2, 0.7, 0.9])["roc_auc"] is None
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_zero_division_gives_zero_not_nan():
    m = binary_metrics([0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], threshold=0.9)  # nothing called FAKE
    assert m["confusion_matrix"] == [[2, 0], [2, 0]]
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert m["accuracy"] == 0.5 and m["balanced_accuracy"] == 0.5
    m = binary_metrics([0, 0], [0.1, 0.9])  # no FAKE at all: recall undefined -> 0
    assert m["confusion_matrix"] == [[1, 1], [0, 0]] and m["recall"] == 0.0 and m["f1"] == 0.0


def test_confusion_matrix_layout():
    cm = confusion_matrix([0, 0, 0, 1, 1], [0, 1, 1, 0, 1])
    assert cm.tolist() == [[1, 2], [1, 1]]


def test_empty_input_is_a_user_error():
    with pytest.raises(EdgeDetectError, match="no labelled images"):
        binary_metrics([], [])


# 4 REAL, 6 FAKE. Counted by hand over every candidate threshold:
#   t      0.95 0.9  0.8  0.7  0.6  0.5  0.45 0.3  0.2  0.1
#   TP      1    2    3    4    4    5    5    6    6    6
#   FP      0    0    0    0    1    1    2    2    3    4
#   J     .167 .333 .5   .667 .417 .583 .333 .5   .25  0      -> Youden's best: 0.7
#   F1    .286 .5   .667 .8   .727 .833 .769 .857 .8   .75    -> F1's best: 0.3
Y_OPT = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
P_OPT = np.array([0.1, 0.2, 0.45, 0.6, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95])


def test_optimal_threshold_known_best():
    assert optimal_threshold(Y_OPT, P_OPT, "youden") == 0.7
    assert optimal_threshold(Y_OPT, P_OPT, "f1") == 0.3
    assert binary_metrics(Y_OPT, P_OPT, 0.3)["f1"] == pytest.approx(6 / 7)


@pytest.mark.parametrize("seed", range(3))
def test_optimal_threshold_beats_every_other_score_as_threshold(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    p = np.clip(y * 0.3 + rng.normal(0.35, 0.2, 80), 0, 1).round(2)
    candidates = np.unique(p)

    def youden(t):
        m = binary_metrics(y, p, t)
        return m["recall"] - (1 - (2 * m["balanced_accuracy"] - m["recall"]))

    best_j = max(youden(t) for t in candidates)
    best_f1 = max(binary_metrics(y, p, t)["f1"] for t in candidates)
    assert youden(optimal_threshold(y, p, "youden")) == pytest.approx(best_j)
    assert binary_metrics(y, p, optimal_threshold(y, p, "f1"))["f1"] == pytest.approx(best_f1)


def test_unknown_threshold_method_lists_valid_ones():
    with pytest.raises(EdgeDetectError, match="unknown threshold method 'auc'; valid: youden, f1"):
        optimal_threshold(Y, P, "auc")
