"""Conformal p-values of log p(x) against held-out reference cells, and Benjamini-Hochberg.

For a query cell with score s (log p(x); low = unusual) and calibration scores c_1..c_n of
held-out reference cells, ``p = (1 + #{c_i <= s}) / (n + 1)``. Under exchangeability an ID cell's
p-value is uniform, so flagging p-values by Benjamini-Hochberg at level alpha controls the share
of ID cells among the flagged ones.
"""

from __future__ import annotations

import numpy as np

from .._logging import logger


def conformal_pvalues(scores: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """One-sided conformal p-values (small when ``scores`` is below the calibration scores)."""
    cal = np.sort(np.asarray(calibration, dtype=float))
    s = np.asarray(scores, dtype=float)
    below_or_equal = np.searchsorted(cal, s, side="right")
    return (1.0 + below_or_equal) / (cal.size + 1.0)


def classwise_pvalues(scores: np.ndarray, predicted: np.ndarray, cal_scores: np.ndarray,
                      cal_predicted: np.ndarray, *, mode: str = "class",
                      min_class_size: int = 50) -> np.ndarray:
    """Conformal p-values per predicted class (``mode="class"``) or pooled (``"pooled"``).

    Calibration cells are grouped by their predicted class, as query cells are. A class with
    fewer than ``min_class_size`` calibration cells uses the pooled calibration set (its
    smallest attainable p-value would otherwise be too large for any discovery).
    """
    if mode not in ("class", "pooled"):
        raise ValueError(f"mode must be 'class' or 'pooled', not {mode!r}")
    scores, predicted = np.asarray(scores, dtype=float), np.asarray(predicted)
    p = conformal_pvalues(scores, cal_scores)
    if mode == "pooled":
        return p
    small = []
    for c in np.unique(predicted):
        cal_c = cal_scores[cal_predicted == c]
        if cal_c.size < min_class_size:
            small.append(int(c))
            continue
        m = predicted == c
        p[m] = conformal_pvalues(scores[m], cal_c)
    if small:
        logger.info("classes %s have fewer than %d held-out reference cells: their OOD "
                    "p-values use the pooled calibration set", small, min_class_size)
    return p


def benjamini_hochberg(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Boolean mask of discoveries at false discovery rate ``alpha`` (step-up BH)."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    thresh = alpha * np.arange(1, m + 1) / m
    passed = p[order] <= thresh
    out = np.zeros(m, dtype=bool)
    if passed.any():
        k = int(np.max(np.flatnonzero(passed)))
        out[order[: k + 1]] = True
    return out
