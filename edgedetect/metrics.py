"""Binary classification metrics with FAKE (label 1) as the positive class, numpy only.

Definitions follow scikit-learn's: precision = TP/(TP+FP), recall = TP/(TP+FN), F1 their harmonic mean
(0 where undefined), ROC-AUC by the trapezoid rule over all thresholds (ties handled), confusion matrix
rows = true [REAL, FAKE], columns = predicted [REAL, FAKE].
"""

from __future__ import annotations

import numpy as np

from edgedetect.errors import EdgeDetectError


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """2x2 int matrix: ``[[TN, FP], [FN, TP]]``."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    return np.bincount(2 * y_true + y_pred, minlength=4).reshape(2, 2)


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``, one point per distinct score, starting at (0, 0) with threshold +inf."""
    y_true = np.asarray(y_true).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], y_true[order]
    last_of_ties = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_ties]
    fps = (last_of_ties + 1) - tps
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(len(tps) + 1, np.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(len(fps) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s[last_of_ties]]


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve; ``None`` when only one class is present."""
    y_true = np.asarray(y_true).astype(int)
    if len(y_true) == 0 or y_true.min() == y_true.max():
        return None
    fpr, tpr, _ = roc_curve(y_true, scores)
    return float(np.trapezoid(tpr, fpr))


def binary_metrics(y_true: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall, F1 (FAKE positive), balanced accuracy, ROC-AUC and the confusion matrix.

    A score counts as FAKE when ``p_fake >= threshold``.
    """
    y_true = np.asarray(y_true).astype(int)
    p_fake = np.asarray(p_fake, dtype=np.float64)
    if len(y_true) == 0:
        raise EdgeDetectError("no labelled images to compute metrics on")
    cm = confusion_matrix(y_true, p_fake >= threshold)
    (tn, fp), (fn, tp) = cm
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    return {
        "n": int(len(y_true)),
        "threshold": float(threshold),
        "accuracy": float((tp + tn) / len(y_true)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "balanced_accuracy": float((recall + specificity) / 2),
        "roc_auc": roc_auc(y_true, p_fake),
        "confusion_matrix": cm.tolist(),
    }


def optimal_threshold(y_true: np.ndarray, p_fake: np.ndarray, method: str = "youden") -> float:
    """Threshold maximising Youden's J (TPR - FPR) or F1 on the given (validation) data."""
    fpr, tpr, thresholds = roc_curve(y_true, p_fake)
    if method == "youden":
        best = int(np.nanargmax(tpr[1:] - fpr[1:])) + 1
        return float(thresholds[best])
    if method == "f1":
        y_true = np.asarray(y_true).astype(int)
        n_pos = y_true.sum()
        tp = tpr[1:] * n_pos
        fp = fpr[1:] * (len(y_true) - n_pos)
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + (n_pos - tp)), 0.0)
        return float(thresholds[1:][int(np.argmax(f1))])
    raise EdgeDetectError(f"unknown threshold method '{method}'; valid: youden, f1")
