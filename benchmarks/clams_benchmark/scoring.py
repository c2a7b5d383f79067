"""From a method's predictions to the benchmark's per-cell table and metrics.

The per-cell table (:func:`prediction_table`) is what the cache stores and the figures read:
the method's columns plus the true label and the OOD truth. :func:`score_table` computes every
metric of the tables from it, so metrics never depend on how a run was obtained.

Conventions, the same for every method:

* the *best class* is ``label_raw`` when the method reports it (the energy-based models write
  ``"unknown"`` into ``label`` for rejected cells) and ``label`` otherwise;
* accuracy, macro-F1 and ECE (20 equal-width bins) use the best class on ID query cells;
* ``acc_w_rej`` is the ID accuracy when a rejected cell counts as wrong;
* ``auroc_score`` is the AUROC of the method's ``ood_score`` and ``auroc_max_p`` that of
  ``max_prob`` (or of ``confidence`` when the method has no ``max_prob``), ID = positive;
* ``ood_rejected`` / ``id_rejected``: shares of OOD / ID cells the method rejects.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from pyclams.metrics import accuracy, auroc, ece, macro_f1, rejected_shares

from .baselines._common import UNKNOWN

__all__ = ["METRICS", "prediction_table", "score_table", "shown_labels"]

#: metric columns of a scored run, in table order
METRICS = ("accuracy", "macro_f1", "ece", "auroc_score", "auroc_max_p", "ood_rejected",
           "id_rejected", "acc_w_rej")


def prediction_table(pred: pd.DataFrame, query: ad.AnnData, labels_key: str,
                     known: list[str]) -> pd.DataFrame:
    """The method's frame plus ``truth`` (query label) and ``is_ood`` (type not in ``known``).

    Only the registry columns and ``label_raw`` / ``max_prob`` are kept.
    """
    keep = [c for c in ("label", "label_raw", "confidence", "max_prob", "ood_score",
                        "rejected") if c in pred.columns]
    table = pred[keep].copy()
    truth = query.obs[labels_key].astype(str).to_numpy()
    table["truth"] = truth
    table["is_ood"] = ~np.isin(truth, np.asarray(list(known), dtype=object))
    return table


def _best(table: pd.DataFrame) -> np.ndarray:
    col = "label_raw" if "label_raw" in table.columns else "label"
    return table[col].astype(str).to_numpy()


def shown_labels(table: pd.DataFrame) -> np.ndarray:
    """The label a user sees: the best class, or ``"unknown"`` where the method rejects."""
    rejected = table["rejected"].to_numpy(dtype=bool)
    return np.where(rejected, UNKNOWN, _best(table)).astype(object)


def score_table(table: pd.DataFrame, *, n_bins: int = 20) -> dict[str, float]:
    """All metrics of :data:`METRICS` plus ``n_id`` and ``n_ood`` for one run."""
    truth = table["truth"].astype(str).to_numpy()
    is_ood = table["is_ood"].to_numpy(dtype=bool)
    is_id = ~is_ood
    best = _best(table)
    rejected = table["rejected"].to_numpy(dtype=bool)
    conf = table["confidence"].to_numpy(dtype=float)
    max_p = table["max_prob"].to_numpy(dtype=float) if "max_prob" in table.columns else conf
    score = table["ood_score"].to_numpy(dtype=float)
    correct = best[is_id] == truth[is_id]

    def _auroc(s: np.ndarray) -> float:
        return float("nan") if np.isnan(s).any() else auroc(s, is_id)

    out: dict[str, float] = {
        "n_id": int(is_id.sum()), "n_ood": int(is_ood.sum()),
        "accuracy": accuracy(truth[is_id], best[is_id]),
        "macro_f1": macro_f1(truth[is_id], best[is_id]),
        "ece": ece(conf[is_id], correct, n_bins=n_bins) if is_id.any() else float("nan"),
        "auroc_score": _auroc(score),
        "auroc_max_p": _auroc(max_p),
        **rejected_shares(rejected, is_ood),
        "acc_w_rej": float(np.mean(correct & ~rejected[is_id])) if is_id.any()
        else float("nan"),
    }
    return out
