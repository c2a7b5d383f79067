"""CellTypist: ``celltypist.train`` on the reference, ``celltypist.annotate`` in prob-match mode.

CellTypist expects log1p expression normalised to 10,000 counts per cell over all genes. Raw
counts are normalised that way. Log data of another kind (log2, gene subsets) is passed with
``check_expression=False``; when its values exceed CellTypist's range guard (9.22), reference and
query are divided by one common constant, which leaves the model's predictions unchanged because
CellTypist standardises every gene with the reference mean and sd before its logistic regression.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

from ..registry import register
from ._common import (
    UNKNOWN,
    is_raw_counts,
    log_normalized,
    prediction_frame,
    quiet_logger,
    ref_labels,
    stripped,
)

logger = logging.getLogger("pyclams")

__all__ = ["fit_predict"]

_MAX_LOG1P = 9.0  # below CellTypist's guard of 9.22 on log1p data


@register("celltypist", "bio tool", requires=("celltypist", "sklearn"),
          install_hints={"celltypist": 'pip install "celltypist==1.7.1" "scikit-learn>=1.3,<1.8"',
                         "sklearn": 'pip install "scikit-learn>=1.3,<1.8"'})
def fit_predict(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                p_thres: float = 0.5, feature_selection: bool = False,
                max_iter: int | None = None) -> pd.DataFrame:
    """CellTypist logistic regression with its prob-match "Unassigned" call.

    Parameters
    ----------
    ref, query
        Reference and query over the same genes (raw counts or log-normalised).
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        ``random_state`` of the logistic regression (passed through ``celltypist.train``).
    p_thres
        Probability threshold of ``mode="prob match"``; a cell with no label above it is
        "Unassigned" (label ``"unknown"``, rejected).
    feature_selection
        CellTypist's two-round feature selection (off by default, as in CellTypist).
    max_iter
        Iterations of the logistic regression (CellTypist's default when ``None``).

    Returns
    -------
    pandas.DataFrame
        ``label`` = ``predicted_labels`` (several labels joined by "|" in prob-match mode are
        kept as CellTypist writes them), ``confidence`` = ``ood_score`` = max probability,
        ``rejected`` = "Unassigned".

    Notes
    -----
    ``celltypist.train`` densifies the reference (``with_mean=True`` scaling), as CellTypist does.
    """
    import celltypist

    y = ref_labels(ref, labels_key)
    counts = is_raw_counts(ref.X) and is_raw_counts(query.X)
    x_ref, x_query = log_normalized(ref), log_normalized(query)
    top = max(float(x_ref.max()), float(x_query.max()))
    if not counts and top > _MAX_LOG1P:
        factor = top / _MAX_LOG1P
        logger.info("celltypist: log data up to %.2f; dividing ref and query by %.3f", top, factor)
        x_ref, x_query = x_ref / factor, x_query / factor
    q = stripped(query, x_query.tocsr())
    with quiet_logger("celltypist.logger"):
        model = celltypist.train(x_ref, labels=y, genes=ref.var_names.astype(str).to_numpy(),
                                 check_expression=counts, feature_selection=feature_selection,
                                 max_iter=max_iter, random_state=seed)
        result = celltypist.annotate(q, model=model, mode="prob match", p_thres=p_thres)
    pred = result.predicted_labels["predicted_labels"].astype(str).to_numpy()
    prob = result.probability_matrix.loc[q.obs_names]
    pmax = prob.max(axis=1).to_numpy(dtype=float)
    rejected = pred == "Unassigned"
    label = np.where(rejected, UNKNOWN, pred)
    return prediction_frame(query.obs_names, label, confidence=pmax, ood_score=pmax,
                            rejected=rejected)
