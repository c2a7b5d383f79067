"""Evaluation metrics: accuracy, macro-F1, calibration (ECE) and OOD AUROC.

All functions take plain arrays and are free of scikit-learn so that they can be checked against
hand-computed values. (:func:`pyclams.result.evaluate_annotated` reads an AnnData annotated by pyclams.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["accuracy", "macro_f1", "ece", "reliability", "auroc", "ood_recall_at_id_rate",
           "rejected_shares", "annotation_report"]


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Share of cells whose predicted label equals the true one."""
    t, p = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.shape[0]} cells but y_pred has {p.shape[0]}")
    return float(np.mean(t == p)) if t.size else float("nan")


def macro_f1(y_true: Sequence, y_pred: Sequence, *, labels: Sequence | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (default: the classes in ``y_true``).

    A class that is never predicted and has true cells gets F1 = 0.
    """
    t, p = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    classes = list(pd.unique(t)) if labels is None else list(labels)
    scores = []
    for c in classes:
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        denom = 2 * tp + fp + fn
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.mean(scores)) if scores else float("nan")


def reliability(confidence: Sequence[float], correct: Sequence[bool], *, n_bins: int = 20
                ) -> pd.DataFrame:
    """Per-bin count, mean confidence and accuracy over ``n_bins`` equal-width bins of [0, 1]."""
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    # bin i holds (i/n, (i+1)/n]; a confidence of exactly 0 goes to the first bin
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        rows.append({
            "lower": b / n_bins, "upper": (b + 1) / n_bins, "count": int(m.sum()),
            "confidence": float(conf[m].mean()) if m.any() else np.nan,
            "accuracy": float(corr[m].mean()) if m.any() else np.nan,
        })
    return pd.DataFrame(rows)


def ece(confidence: Sequence[float], correct: Sequence[bool], *, n_bins: int = 20) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins (paper eq. 6).

    ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``. NaN when any confidence is NaN (a method
    without probabilities has no ECE).
    """
    if np.isnan(np.asarray(confidence, dtype=float)).any():
        return float("nan")
    table = reliability(confidence, correct, n_bins=n_bins)
    n = table["count"].sum()
    if n == 0:
        return float("nan")
    used = table[table["count"] > 0]
    return float(np.sum(used["count"] / n * np.abs(used["accuracy"] - used["confidence"])))


def auroc(score: Sequence[float], is_positive: Sequence[bool]) -> float:
    """Area under the ROC curve of ``score`` for telling positives from negatives.

    For OOD detection pass ``is_positive = is_in_distribution`` and a score that is higher for
    in-distribution cells (log p(x), max p(y|x)). Ties count one half (Mann-Whitney U).
    """
    s = np.asarray(score, dtype=float)
    pos = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(s).rank(method="average").to_numpy()
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def ood_recall_at_id_rate(score: Sequence[float], is_id: Sequence[bool], *,
                          id_rate: float = 0.1) -> float:
    """Share of OOD cells scoring below the ``id_rate`` quantile of the ID cells' scores.

    The best share of OOD cells any threshold on ``score`` could flag while flagging
    ``id_rate`` of the ID cells: it measures the ranking at the low false-alarm end, apart
    from where a calibrated threshold happens to land.
    """
    s = np.asarray(score, dtype=float)
    pos = np.asarray(is_id, dtype=bool)
    if not pos.any() or pos.all():
        return float("nan")
    cut = np.quantile(s[pos], id_rate)
    return float(np.mean(s[~pos] < cut))


def rejected_shares(rejected: Sequence[bool], is_ood: Sequence[bool]) -> dict[str, float]:
    """Share of OOD cells rejected (wanted high), of ID cells rejected (wanted low), and the
    realised false discovery rate: the share of ID cells among the rejected ones (NaN when
    nothing is rejected)."""
    r = np.asarray(rejected, dtype=bool)
    o = np.asarray(is_ood, dtype=bool)
    return {
        "ood_rejected": float(r[o].mean()) if o.any() else float("nan"),
        "id_rejected": float(r[~o].mean()) if (~o).any() else float("nan"),
        "realised_fdr": float((~o[r]).mean()) if r.any() else float("nan"),
    }


def annotation_report(truth: Sequence, predicted: Sequence, confidence: Sequence[float],
                      *, known_labels: Sequence, ood_scores: dict[str, Sequence[float]] | None = None,
                      rejected: Sequence[bool] | None = None, n_bins: int = 20) -> dict[str, float]:
    """All metrics of a reference-query annotation in one dictionary.

    Cells whose true label is in ``known_labels`` are in-distribution (ID); the rest are OOD.
    Accuracy, macro-F1 and ECE use ID cells only; AUROCs use every cell with ID as positive;
    ``ood_recall_at_id10_<score>`` is :func:`ood_recall_at_id_rate` at 10% of ID cells.
    """
    t = np.asarray(truth, dtype=object)
    p = np.asarray(predicted, dtype=object)
    conf = np.asarray(confidence, dtype=float)
    is_id = np.isin(t, np.asarray(list(known_labels), dtype=object))
    out: dict[str, float] = {
        "n_id": int(is_id.sum()), "n_ood": int((~is_id).sum()),
        "accuracy": accuracy(t[is_id], p[is_id]),
        "macro_f1": macro_f1(t[is_id], p[is_id]),
        "ece": ece(conf[is_id], t[is_id] == p[is_id], n_bins=n_bins),
    }
    for name, score in (ood_scores or {}).items():
        out[f"auroc_{name}"] = auroc(score, is_id)
        out[f"ood_recall_at_id10_{name}"] = ood_recall_at_id_rate(score, is_id, id_rate=0.1)
    if rejected is not None:
        shares = rejected_shares(rejected, ~is_id)
        out.update(shares)
    return out
