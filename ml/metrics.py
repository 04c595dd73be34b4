"""Evaluation metrics as exact integers (ppm), computed from predicted and true labels."""

from __future__ import annotations

import numpy as np

from ml.spec import METRICS, PPM


class MetricError(ValueError):
    """Unknown metric or mismatched prediction and label arrays."""


def compute_metric_ppm(metric: str, predicted: np.ndarray, labels: np.ndarray, classes: int) -> int:
    """Return ``metric`` in ppm (0 to 1_000_000), floored; integer arithmetic only.

    ``accuracy`` = correct / n. ``macro_f1`` = mean over all ``classes`` of
    2TP / (2TP + FP + FN), a class absent from both arrays scoring 1.
    """
    if metric not in METRICS:
        raise MetricError(f"unknown metric {metric!r}")
    p = np.asarray(predicted, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    if p.shape != y.shape or p.ndim != 1 or p.size == 0:
        raise MetricError("predictions and labels must be equal-length non-empty vectors")
    if int(min(p.min(), y.min())) < 0 or int(max(p.max(), y.max())) >= classes:
        raise MetricError(f"labels outside [0, {classes})")
    if metric == "accuracy":
        return int((p == y).sum()) * PPM // int(y.size)
    tp = np.bincount(y[p == y], minlength=classes)
    pred_count = np.bincount(p, minlength=classes)
    true_count = np.bincount(y, minlength=classes)
    total = 0
    for c in range(classes):
        denominator = int(pred_count[c]) + int(true_count[c])  # = 2TP + FP + FN
        total += PPM if denominator == 0 else 2 * int(tp[c]) * PPM // denominator
    return total // classes
