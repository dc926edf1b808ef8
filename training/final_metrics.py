"""A finished model's figures and decision threshold, chosen on val (never on test): what ``metrics.json`` holds."""

from __future__ import annotations

import numpy as np

from edgedetect.metrics import binary_metrics, optimal_threshold
from training.keras_model import predict_keras


def final_metrics(model, dataset) -> dict:
    """Val (and test, when the data has it) figures of a whole-image model at the Youden threshold chosen on val."""
    val = dataset.split("val")
    p_val = predict_keras(model, val.x)
    threshold = optimal_threshold(val.y, p_val, "youden")
    out = {"threshold": threshold, "threshold_method": "youden J on val",
           "val": binary_metrics(val.y, p_val, threshold), "val_at_0.5": binary_metrics(val.y, p_val, 0.5)}
    if "test" in dataset.splits:
        test = dataset.split("test")
        out["test"] = binary_metrics(test.y, predict_keras(model, test.x), threshold)
    return out


def _margin_threshold(y: np.ndarray, p: np.ndarray) -> float:
    # Youden's J picks a val score; midway to the next lower one classifies val the same and keeps a margin, which a
    # well-separated val set needs (else the threshold sits on the edge of the FAKE scores, e.g. above 0.996, the
    # largest p_fake an int8 output with scale 1/256 can express).
    t = optimal_threshold(y, p, "youden")
    below = p[p < t]
    return float((t + below.max()) / 2) if len(below) else t


def native_final_metrics(model, val, img_size: int, max_crops: int) -> dict:
    """Val figures per image with the runtime's crops, for every combine rule; the best rule on val AUC wins.

    Args:
        val: the val images (a :class:`training.native_data.NativeSet`).
    """
    from edgedetect.crops import COMBINE_RULES, combine_all
    from training.native_data import fixed_crops

    x, owner, y = fixed_crops(val, img_size, max_crops)
    p_crops = predict_keras(model, x)
    rules, p_of = {}, {}
    for rule in COMBINE_RULES:
        p_of[rule] = combine_all(p_crops, owner, len(y), rule)
        t = _margin_threshold(y, p_of[rule])
        rules[rule] = {"threshold": t, "val": binary_metrics(y, p_of[rule], t)}
    rule = max(rules, key=lambda r: rules[r]["val"]["roc_auc"])
    p = p_of[rule]
    threshold = rules[rule]["threshold"]
    src = np.asarray(val.source)
    per_source = {}
    for name in sorted(set(val.source)):
        m = src == name
        per_source[name] = {"n": int(m.sum()), "accuracy": float(np.mean((p[m] >= threshold) == (y[m] == 1)))}
    return {"threshold": threshold, "threshold_method": "youden J on val, midway to the next lower val score",
            "combine": rule, "max_crops": max_crops, "combine_rules": rules, "val": rules[rule]["val"],
            "val_at_0.5": binary_metrics(y, p, 0.5), "val_per_source": per_source}
