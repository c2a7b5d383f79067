"""Conformal p-values of log p(x) against held-out reference cells, and Benjamini-Hochberg.

For a query cell with score s (log p(x); low = unusual) and calibration scores c_1..c_n of
held-out reference cells, ``p = (1 + #{c_i <= s}) / (n + 1)``. Under exchangeability an ID cell's
p-value is uniform, so flagging p-values by Benjamini-Hochberg at level alpha controls the share
of ID cells among the flagged ones.

A rank p-value cannot go below ``1 / (n + 1)``: with a small calibration set no cell could ever
be flagged, however far it lies from the reference. Scores below *every* calibration score are
therefore given a tail-extrapolated p-value,
``p = 1 / (n + 1) * Phi((s - m) / sd) / Phi((c_min - m) / sd)``, with ``m`` and ``sd`` the mean
and sd of the calibration scores: a normal tail spread over the lowest rank bin. It is the rank
p-value everywhere else, never larger than it, and decreases with ``s``; an ID cell lands in
that bin with probability ``1 / (n + 1)``, so at most that share of ID cells is affected
(``tail=False`` gives the plain rank p-value).
"""

from __future__ import annotations

import numpy as np

from .._logging import logger


def _log_normal_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import log_ndtr

    return log_ndtr(z)


def conformal_pvalues(scores: np.ndarray, calibration: np.ndarray, *,
                      tail: bool = True) -> np.ndarray:
    """One-sided conformal p-values (small when ``scores`` is below the calibration scores).

    With ``tail=True`` scores below every calibration score get the tail-extrapolated p-value
    of the module docstring instead of the floor ``1 / (n + 1)``.
    """
    cal = np.sort(np.asarray(calibration, dtype=float))
    s = np.asarray(scores, dtype=float)
    below_or_equal = np.searchsorted(cal, s, side="right")
    p = (1.0 + below_or_equal) / (cal.size + 1.0)
    if tail and cal.size >= 2:
        sd = float(cal.std(ddof=1))
        low = s < cal[0]
        if sd > 0 and low.any():
            m = float(cal.mean())
            log_ratio = _log_normal_cdf((s[low] - m) / sd) - _log_normal_cdf((cal[0] - m) / sd)
            p[low] = np.exp(np.minimum(log_ratio, 0.0)) / (cal.size + 1.0)
    return p


def classwise_pvalues(scores: np.ndarray, predicted: np.ndarray, cal_scores: np.ndarray,
                      cal_predicted: np.ndarray, *, mode: str = "class",
                      min_class_size: int = 50, tail: bool = True) -> np.ndarray:
    """Conformal p-values per predicted class (``mode="class"``) or pooled (``"pooled"``).

    Calibration cells are grouped by their predicted class, as query cells are. A class with
    fewer than ``min_class_size`` calibration cells uses the pooled calibration set (its
    smallest attainable p-value would otherwise be too large for any discovery).
    """
    if mode not in ("class", "pooled"):
        raise ValueError(f"mode must be 'class' or 'pooled', not {mode!r}")
    scores, predicted = np.asarray(scores, dtype=float), np.asarray(predicted)
    p = conformal_pvalues(scores, cal_scores, tail=tail)
    if mode == "pooled":
        return p
    small = []
    for c in np.unique(predicted):
        cal_c = cal_scores[cal_predicted == c]
        if cal_c.size < min_class_size:
            small.append(int(c))
            continue
        m = predicted == c
        p[m] = conformal_pvalues(scores[m], cal_c, tail=tail)
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
