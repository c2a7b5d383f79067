"""Seurat v4 label transfer (``FindTransferAnchors`` + ``TransferData``) through rpy2.

Reference and query become Seurat objects: raw counts go to the ``counts`` slot and are
``NormalizeData``-ed (LogNormalize, 1e4); log-normalised input is written to both ``counts``
and ``data`` (no re-normalisation). The reference gets ``FindVariableFeatures`` (vst),
``ScaleData`` and ``RunPCA``; anchors use ``reduction = "pcaproject"`` and ``dims = 1:30``.

``label`` = ``predicted.id``; ``confidence`` = ``ood_score`` = ``prediction.score.max``;
``rejected`` = ``prediction.score.max < reject_below`` (0.5), a rule of this benchmark: Seurat
itself always assigns a label.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ..registry import register
from ._common import is_raw_counts, log_normalized, prediction_frame, ref_labels
from ._r import r_call, r_column, r_int, r_str, to_dgcmatrix
from ._rnames import r_safe_names

__all__ = ["fit_predict"]

@register("seurat", "bio tool", requires=("rpy2",), requires_r=("Seurat", "SeuratObject"),
          install_hints={"rpy2": 'pip install "rpy2>=3.5.2,<3.6"',
                         "Seurat": 'apt-get install r-cran-seurat (Seurat 4) or '
                                   'install.packages("Seurat")'})
def fit_predict(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                dims: int = 30, nfeatures: int = 2000, k_weight: int = 50,
                reject_below: float = 0.5) -> pd.DataFrame:
    """Seurat v4 anchor-based label transfer.

    Parameters
    ----------
    ref, query
        Reference and query over the same genes (raw counts or log-normalised).
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        ``set.seed`` and ``RunPCA(seed.use=)``.
    dims
        Principal components used for anchors and transfer (``dims = 1:dims``).
    nfeatures
        Variable features of the reference.
    k_weight
        Neighbours for anchor weighting in ``TransferData`` (lowered for tiny queries).
    reject_below
        ``prediction.score.max`` below which a cell is flagged as rejected.
    """
    y = ref_labels(ref, labels_key)
    counts = is_raw_counts(ref.X) and is_raw_counts(query.X)
    x_ref = ref.X if counts else log_normalized(ref)
    x_query = query.X if counts else log_normalized(query)
    genes = r_safe_names(ref.var_names)
    dims = min(dims, ref.n_obs - 1, query.n_obs - 1, ref.n_vars - 1)
    k_weight = min(k_weight, query.n_obs - 1)
    out = r_call(("common.R", "seurat.R"), "seurat_transfer",
                 to_dgcmatrix(x_ref, genes, r_safe_names(ref.obs_names, prefix="r")),
                 to_dgcmatrix(x_query, genes, r_safe_names(query.obs_names, prefix="q")),
                 r_str(y), bool(counts), r_int(dims), r_int(nfeatures), r_int(k_weight),
                 r_int(seed))
    label = r_column(out, "predicted_id").astype(str)
    score = r_column(out, "score_max").astype(float)
    return prediction_frame(query.obs_names, label, confidence=np.clip(score, 0, 1),
                            ood_score=score, rejected=score < reject_below)
