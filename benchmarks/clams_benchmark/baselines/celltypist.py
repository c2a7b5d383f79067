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
import scipy.sparse as sp

from ..registry import register
from ._common import (
    is_raw_counts,
    log_normalized,
    prediction_frame,
    quiet_logger,
    ref_labels,
    stripped,
)
from ._features import highly_variable_mask

logger = logging.getLogger("pyclams")

__all__ = ["fit_predict"]

_MAX_LOG1P = 9.0  # below CellTypist's guard of 9.22 on log1p data


@register("celltypist", "bio tool", requires=("celltypist", "sklearn"),
          install_hints={"celltypist": 'pip install "celltypist==1.7.1" "scikit-learn>=1.3,<1.8"',
                         "sklearn": 'pip install "scikit-learn>=1.3,<1.8"'})
def fit_predict(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                p_thres: float = 0.5, feature_selection: bool = False,
                n_top_genes: int | None = None, max_iter: int | None = None) -> pd.DataFrame:
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
        "Unassigned" (rejected).
    feature_selection
        CellTypist's two-round feature selection (off by default, as in CellTypist).
    n_top_genes
        Train on this many highly variable reference genes only (``None``: all genes, as
        CellTypist recommends). The earlier CLAMS benchmark runs used 2000.
    max_iter
        Iterations of the logistic regression (CellTypist's default when ``None``).

    Returns
    -------
    pandas.DataFrame
        ``label`` = CellTypist's "best match" label (argmax of the probability matrix),
        ``confidence`` = ``ood_score`` = max probability, ``rejected`` = "Unassigned" in
        ``mode="prob match"`` (no class with probability above ``p_thres``).

    Notes
    -----
    ``celltypist.train`` densifies the reference (``with_mean=True`` scaling), as CellTypist does.
    CellTypist's probabilities are one-vs-rest sigmoids: they need not sum to one.
    """
    import celltypist

    y = ref_labels(ref, labels_key)
    counts = is_raw_counts(ref.X) and is_raw_counts(query.X)
    x_ref, x_query = log_normalized(ref), log_normalized(query)
    genes = ref.var_names.astype(str)
    if n_top_genes is not None:
        keep = highly_variable_mask(x_ref, n_top_genes=n_top_genes)
        x_ref, x_query, genes = x_ref[:, keep], x_query[:, keep], genes[keep]
    top = max(float(x_ref.max()), float(x_query.max()))
    if not counts and top > _MAX_LOG1P:
        factor = top / _MAX_LOG1P
        logger.info("celltypist: log data up to %.2f; dividing ref and query by %.3f", top, factor)
        x_ref, x_query = x_ref / factor, x_query / factor
    q = stripped(query, sp.csr_matrix(x_query), var_names=genes)
    with quiet_logger("celltypist.logger", logging.ERROR):
        # all genes of raw-count input pass CellTypist's own check; a gene subset cannot
        model = celltypist.train(x_ref, labels=y, genes=genes.to_numpy(),
                                 check_expression=counts and n_top_genes is None,
                                 feature_selection=feature_selection, max_iter=max_iter,
                                 random_state=seed)
        result = celltypist.annotate(q, model=model, mode="prob match", p_thres=p_thres)
    prob = result.probability_matrix.loc[q.obs_names]
    best = np.argmax(prob.to_numpy(dtype=float), axis=1)
    pmax = prob.to_numpy(dtype=float)[np.arange(prob.shape[0]), best]
    label = prob.columns.to_numpy().astype(str)[best]
    rejected = result.predicted_labels["predicted_labels"].astype(str).to_numpy() == "Unassigned"
    return prediction_frame(query.obs_names, label, confidence=pmax, ood_score=pmax,
                            rejected=rejected)
