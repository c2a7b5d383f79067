"""scPred (Alquicira-Hernandez et al. 2019) through rpy2, coded against its documented API.

scPred is installed from GitHub only (``remotes::install_github("powellgenomicslab/scPred")``,
which brings R harmony); where it is missing the registry reports "not installed" with that
command. The workflow of the scPred vignette (Seurat v4):

reference: ``NormalizeData`` (counts only) -> ``FindVariableFeatures`` -> ``ScaleData`` ->
``RunPCA`` -> ``getFeatureSpace(ref, "label")`` -> ``trainModel(ref)`` (SVM with radial kernel
through caret); query: ``NormalizeData`` (counts only) -> ``scPredict(query, ref,
threshold = 0.55)``.

``label`` = ``scpred_no_rejection`` (the best class; ``scpred_prediction`` where that column is
absent); ``rejected`` = ``scpred_prediction`` is "unassigned"; ``confidence`` = ``ood_score`` =
``scpred_max``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ..registry import register
from ._common import UNKNOWN, is_raw_counts, log_normalized, prediction_frame, ref_labels
from ._r import r_call, r_column, r_int, r_num, r_str, to_dgcmatrix
from ._rnames import r_safe_names

__all__ = ["fit_predict", "SCPRED_INSTALL"]

_HINT = 'install it in R with remotes::install_github("powellgenomicslab/scPred") (brings R harmony)'
#: the reason :func:`clams_benchmark.registry.available` gives when scPred is missing
SCPRED_INSTALL = f"scPred is not installed; {_HINT}"

@register("scpred", "bio tool", requires=("rpy2",), requires_r=("Seurat", "scPred"),
          install_hints={"rpy2": 'pip install "rpy2>=3.5.2,<3.6"', "scPred": _HINT})
def fit_predict(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                npcs: int = 30, threshold: float = 0.55) -> pd.DataFrame:
    """scPred SVM on reference principal components, "unassigned" below ``threshold``.

    Parameters
    ----------
    ref, query
        Reference and query over the same genes (raw counts or log-normalised).
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        ``set.seed``, ``RunPCA(seed.use=)`` and ``trainModel(seed=)``.
    npcs
        Principal components of the reference (scPred's feature space is chosen among them).
    threshold
        scPred's probability threshold for "unassigned".
    """
    y = ref_labels(ref, labels_key)
    counts = is_raw_counts(ref.X) and is_raw_counts(query.X)
    x_ref = ref.X if counts else log_normalized(ref)
    x_query = query.X if counts else log_normalized(query)
    genes = r_safe_names(ref.var_names)
    npcs = min(npcs, ref.n_obs - 1, ref.n_vars - 1)
    out = r_call(("common.R", "scpred.R"), "scpred_annotate",
                 to_dgcmatrix(x_ref, genes, r_safe_names(ref.obs_names, prefix="r")),
                 to_dgcmatrix(x_query, genes, r_safe_names(query.obs_names, prefix="q")),
                 r_str(y), bool(counts), r_int(npcs), r_num(threshold), r_int(seed))
    pred = r_column(out, "prediction").astype(str)
    best = r_column(out, "best").astype(str)
    score = r_column(out, "score_max").astype(float)
    rejected = np.char.lower(pred) == "unassigned"
    label = np.where(np.char.lower(best) == "unassigned", UNKNOWN, best)
    return prediction_frame(query.obs_names, label, confidence=np.clip(score, 0, 1),
                            ood_score=score, rejected=rejected)
