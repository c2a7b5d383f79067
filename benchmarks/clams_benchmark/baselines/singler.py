"""SingleR (Bioconductor) through rpy2: correlation to reference profiles with fine-tuning.

``SingleR(test, ref, labels, de.method = "wilcox")`` on log-normalised matrices (raw counts are
log1p-normalised to 1e4 first); the Wilcoxon marker detection uses scran.

* ``label`` = ``labels`` (the fine-tuned label; SingleR always assigns one);
* ``rejected`` = ``pruned.labels`` is NA (SingleR's own outlier pruning on ``delta.next``);
* ``ood_score`` = the row maximum of ``scores``: the highest Spearman correlation of the cell
  with any reference label's marker profile (first round, before fine-tuning). A cell unlike
  every reference type correlates poorly with all of them;
* ``confidence`` = NaN: SingleR scores are correlations, not probabilities.
"""

from __future__ import annotations

import anndata as ad
import pandas as pd

from ..registry import register
from ._common import log_normalized, prediction_frame, ref_labels
from ._r import r_call, r_column, r_int, r_str, to_dgcmatrix
from ._rnames import r_safe_names

__all__ = ["fit_predict"]

@register("singler", "bio tool", requires=("rpy2",),
          requires_r=("SingleR", "scran", "SingleCellExperiment"),
          install_hints={"rpy2": 'pip install "rpy2>=3.5.2,<3.6"',
                         "SingleR": "apt-get install r-bioc-singler",
                         "scran": "apt-get install r-bioc-scran"})
def fit_predict(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                de_method: str = "wilcox") -> pd.DataFrame:
    """SingleR with Wilcoxon markers; rejection = pruned label is NA.

    Parameters
    ----------
    ref, query
        Reference and query over the same genes (raw counts or log-normalised).
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        ``set.seed`` in R.
    de_method
        SingleR's marker detection (``"wilcox"``, ``"classic"`` or ``"t"``).
    """
    y = ref_labels(ref, labels_key)
    genes = r_safe_names(ref.var_names)
    out = r_call("singler.R", "singler_annotate",
                 to_dgcmatrix(log_normalized(ref), genes, r_safe_names(ref.obs_names, prefix="r")),
                 to_dgcmatrix(log_normalized(query), genes,
                              r_safe_names(query.obs_names, prefix="q")),
                 r_str(y), r_str([de_method]), r_int(seed))
    label = r_column(out, "label").astype(str)
    rejected = r_column(out, "pruned_na").astype(int) == 1
    score = r_column(out, "score_max").astype(float)
    return prediction_frame(query.obs_names, label, ood_score=score, rejected=rejected)
