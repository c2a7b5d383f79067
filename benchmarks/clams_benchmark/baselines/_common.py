"""Helpers shared by the baselines: input normalisation, stripped copies and the output frame.

Every baseline returns the frame built by :func:`prediction_frame`: indexed by the query's
``obs_names``, with columns ``label`` (str: the method's best class; ``"unknown"`` only for a cell
to which the method gives no class at all), ``confidence`` (a probability in [0, 1] or NaN),
``ood_score`` (higher = more in-distribution; NaN where the method has none) and ``rejected``
(bool: the method's own unknown/unassigned call, or the documented rejection rule).

Keeping the best class in ``label`` and the reject call in ``rejected`` lets the benchmark report
classification accuracy and rejection separately (and accuracy-with-rejection from both).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pyclams.data.checks import is_raw_counts
from pyclams.data.preprocess import log_normalise
from pyclams.result import UNKNOWN

__all__ = ["UNKNOWN", "COLUMNS", "is_raw_counts", "log_normalized", "counts_matrix",
           "stripped", "ref_labels", "prediction_frame", "validate_predictions", "quiet_logger"]

#: the columns of every method's output, in order: the comparison's contract, not pyclams's
#: annotation schema (:data:`pyclams.result.RESULT_FIELDS`). ``ood_score`` is any method's
#: in-distribution score (pyclams: ``log_px``), ``rejected`` its own reject call (pyclams:
#: ``is_ood``); the label of an unassigned cell is pyclams's :data:`~pyclams.result.UNKNOWN`
COLUMNS = ("label", "confidence", "ood_score", "rejected")


def _as_csr(x) -> sp.csr_matrix:
    out = sp.csr_matrix(x, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.sort_indices()
    return out


def log_normalized(adata: ad.AnnData, *, target_sum: float = 1e4) -> sp.csr_matrix:
    """``log1p`` of counts scaled to ``target_sum`` per cell, as a new sparse CSR matrix.

    Raw integer counts (:func:`is_raw_counts`) are normalised; anything else is taken to be
    log-normalised already and returned as a sparse copy. The matrix is never densified and
    ``adata`` is left untouched.
    """
    x = _as_csr(adata.X)
    if not is_raw_counts(x):
        return x
    return log_normalise(x, kind="counts", target_sum=target_sum)


def counts_matrix(adata: ad.AnnData) -> sp.csr_matrix | None:
    """A sparse copy of ``adata.X`` when it holds raw counts, else ``None``."""
    x = _as_csr(adata.X)
    return x if is_raw_counts(x) else None


def stripped(adata: ad.AnnData, x=None, *, obs_keys: Sequence[str] = (),
             var_names: Sequence[str] | None = None) -> ad.AnnData:
    """A new AnnData with ``x`` (default: a copy of ``adata.X``) and only ``obs_keys`` of obs.

    ``var_names`` names the columns of ``x`` (default: ``adata.var_names``).

    Query copies are built with no obs column at all so that no method can see the query labels.
    """
    obs = adata.obs[list(obs_keys)].copy() if obs_keys else pd.DataFrame(index=adata.obs_names)
    obs.index = obs.index.astype(str)
    genes = adata.var_names if var_names is None else pd.Index(var_names)
    var = pd.DataFrame(index=genes.astype(str))
    return ad.AnnData(X=_as_csr(adata.X) if x is None else x, obs=obs, var=var)


def ref_labels(ref: ad.AnnData, labels_key: str) -> np.ndarray:
    """The reference labels as an array of str; fails on missing labels."""
    if labels_key not in ref.obs:
        raise KeyError(f"labels_key {labels_key!r} is not a column of ref.obs")
    lab = ref.obs[labels_key]
    if lab.isna().any():
        raise ValueError(f"ref.obs[{labels_key!r}] has {int(lab.isna().sum())} missing labels")
    return lab.astype(str).to_numpy()


def prediction_frame(index: Sequence, label: Sequence, *, confidence: Sequence | None = None,
                     ood_score: Sequence | None = None, rejected: Sequence | None = None
                     ) -> pd.DataFrame:
    """The standard output frame; missing ``confidence``/``ood_score`` become NaN.

    ``rejected`` defaults to ``label == "unknown"``.
    """
    n = len(index)
    lab = pd.Series(np.asarray(label, dtype=object), dtype=object).astype(str).to_numpy()
    nan = np.full(n, np.nan)
    conf = nan if confidence is None else np.asarray(confidence, dtype=np.float64)
    score = nan if ood_score is None else np.asarray(ood_score, dtype=np.float64)
    rej = lab == UNKNOWN if rejected is None else np.asarray(rejected, dtype=bool)
    return pd.DataFrame({"label": lab, "confidence": conf, "ood_score": score, "rejected": rej},
                        index=pd.Index(np.asarray(index).astype(str), name=None))


def validate_predictions(pred: pd.DataFrame, query: ad.AnnData) -> None:
    """Raise ``ValueError`` unless ``pred`` follows the baseline output contract for ``query``."""
    if not isinstance(pred, pd.DataFrame):
        raise ValueError(f"a method must return a pandas DataFrame, got {type(pred).__name__}")
    missing = [c for c in COLUMNS if c not in pred.columns]
    if missing:
        raise ValueError(f"predictions lack the columns {missing}")
    if not pred.index.astype(str).equals(query.obs_names.astype(str)):
        raise ValueError("predictions must be indexed by query.obs_names, in order")
    if pred["rejected"].dtype != bool:
        raise ValueError(f"column 'rejected' must be bool, got {pred['rejected'].dtype}")
    for col in ("confidence", "ood_score"):
        if not pd.api.types.is_float_dtype(pred[col]):
            raise ValueError(f"column {col!r} must be float, got {pred[col].dtype}")
    conf = pred["confidence"].to_numpy()
    ok = np.isnan(conf) | ((conf >= -1e-9) & (conf <= 1 + 1e-9))
    if not ok.all():
        raise ValueError("column 'confidence' must lie in [0, 1] (or be NaN)")
    if not all(isinstance(v, str) for v in pred["label"]):
        raise ValueError("column 'label' must hold str values")


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise logger ``name`` to ``level`` for the duration (third-party progress chatter)."""
    log = logging.getLogger(name)
    old = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(old)
