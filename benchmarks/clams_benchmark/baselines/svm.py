"""SVM with rejection: a calibrated linear SVM that rejects cells below a probability threshold.

The "SVMrejection" baseline of Abdelaal et al. (2019) as used in the CLAMS paper: a
``LinearSVC`` calibrated to probabilities with ``CalibratedClassifierCV`` (sigmoid, 3-fold),
on log-normalised data; a cell whose highest probability is below ``threshold`` (0.7) is
rejected.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

from ..registry import register
from ._common import log_normalized, prediction_frame, ref_labels
from ._features import highly_variable_mask

logger = logging.getLogger("pyclams")

__all__ = ["fit_predict"]


@register("svm_reject", "classifier", requires=("sklearn",),
          install_hints={"sklearn": 'pip install "scikit-learn>=1.3,<1.8"'})
def fit_predict(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                threshold: float = 0.7, n_top_genes: int | None = None, scale: bool = False,
                cv: int = 3, max_iter: int = 5000) -> pd.DataFrame:
    """Calibrated linear SVM with rejection below a max-probability threshold.

    Parameters
    ----------
    ref, query
        Reference and query over the same genes (raw counts or log-normalised).
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        Seed of ``LinearSVC``.
    threshold
        Cells whose max calibrated probability is below it are rejected.
    n_top_genes
        Restrict to this many highly variable reference genes (``None``: all genes, as in
        Abdelaal et al.).
    scale
        Standardise genes with reference mean and sd (densifies the selected genes; use with
        ``n_top_genes``).
    cv
        Folds of the probability calibration (lowered to the smallest class size when needed).
    max_iter
        Iterations of ``LinearSVC``.

    Returns
    -------
    pandas.DataFrame
        ``label`` = most probable class (also for rejected cells), ``confidence`` =
        ``ood_score`` = max probability, ``rejected`` = max probability < ``threshold``
        (SVMrejection's "Unknown" call).
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    y = ref_labels(ref, labels_key)
    x_ref, x_query = log_normalized(ref), log_normalized(query)
    if n_top_genes is not None:
        keep = highly_variable_mask(x_ref, n_top_genes=n_top_genes)
        x_ref, x_query = x_ref[:, keep], x_query[:, keep]
    if scale:  # dense: the scaled HVG matrix (n_top_genes columns) is small
        scaler = StandardScaler().fit(x_ref.toarray())
        x_ref, x_query = scaler.transform(x_ref.toarray()), scaler.transform(x_query.toarray())
    smallest = int(pd.Series(y).value_counts().min())
    folds = min(cv, smallest)
    if folds < 2:
        raise ValueError(f"a reference class has {smallest} cell; calibration needs >= 2 per class")
    clf = CalibratedClassifierCV(LinearSVC(random_state=seed, max_iter=max_iter, dual="auto"),
                                 cv=folds, method="sigmoid")
    clf.fit(x_ref, y)
    prob = clf.predict_proba(x_query)
    best = np.argmax(prob, axis=1)
    pmax = prob[np.arange(prob.shape[0]), best]
    rejected = pmax < threshold
    label = clf.classes_[best].astype(str)
    logger.debug("svm_reject: %d genes, %d-fold calibration, %.1f%% rejected",
                 x_ref.shape[1], folds, 100 * rejected.mean())
    return prediction_frame(query.obs_names, label, confidence=pmax, ood_score=pmax,
                            rejected=rejected)
