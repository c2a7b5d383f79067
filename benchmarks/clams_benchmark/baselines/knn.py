"""kNN label transfer with scanpy's ``ingest`` and a kNN-distance OOD score.

Reference: log-normalised, restricted to its highly variable genes, PCA (``n_pcs``) and a kNN
graph. ``sc.tl.ingest`` projects the query onto the reference PCA and gives each query cell the
majority label of its ``n_neighbors`` reference neighbours.

Scores (computed here with exact nearest neighbours):

* ``confidence``: share of the ``n_neighbors`` nearest reference cells, in ingest's query
  representation, whose label is the ingested one;
* ``ood_score``: minus the mean Euclidean distance of the query cell to its ``n_neighbors``
  nearest reference cells in the reference PCA space (query centred with the *reference* mean,
  i.e. the reference's own PCA map; ingest itself centres the query with the query mean);
* ``rejected``: that mean distance exceeds the ``reject_quantile`` (0.99) quantile of the
  reference cells' own leave-one-out mean kNN distances in the same space.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

from ..registry import register
from ._common import log_normalized, prediction_frame, ref_labels, stripped
from ._features import highly_variable_mask

logger = logging.getLogger("pyclams")

__all__ = ["fit_predict"]


def _knn(ref_rep: np.ndarray, query_rep: np.ndarray, k: int, *, leave_one_out: bool = False
         ) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + int(leave_one_out)).fit(ref_rep)
    dist, idx = nn.kneighbors(query_rep)
    if leave_one_out:  # drop each reference cell itself (its first, zero-distance neighbour)
        dist, idx = dist[:, 1:], idx[:, 1:]
    return dist, idx


@register("knn_ingest", "bio tool", requires=("scanpy", "sklearn", "pynndescent"),
          install_hints={"pynndescent": 'pip install "pynndescent>=0.5.13,!=0.7.0"'})
def fit_predict(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                n_top_genes: int | None = 2000, n_pcs: int = 50, n_neighbors: int = 15,
                reject_quantile: float = 0.99) -> pd.DataFrame:
    """scanpy ``ingest`` label transfer with a kNN-distance OOD score.

    Parameters
    ----------
    ref, query
        Reference and query over the same genes (raw counts or log-normalised).
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        Seed of the PCA and of the approximate neighbour search of ingest.
    n_top_genes
        Highly variable reference genes used (``None``: all genes).
    n_pcs
        Principal components of the reference (scanpy's default 50).
    n_neighbors
        Neighbours for the label vote and for the distance score.
    reject_quantile
        Quantile of the reference leave-one-out kNN distances above which a cell is rejected.

    Returns
    -------
    pandas.DataFrame
        ``label`` = ingested label (never ``"unknown"``), ``confidence`` = vote share,
        ``ood_score`` = minus mean kNN distance, ``rejected`` by the distance quantile rule.

    Notes
    -----
    ingest densifies the (HVG-restricted) query to project it.
    """
    import scanpy as sc

    y = ref_labels(ref, labels_key)
    x_ref, x_query = log_normalized(ref), log_normalized(query)
    keep = np.ones(ref.n_vars, dtype=bool)
    if n_top_genes is not None:
        keep = highly_variable_mask(x_ref, n_top_genes=n_top_genes)
    genes = ref.var_names[keep]
    a_ref = stripped(ref, x_ref[:, keep], var_names=genes)
    a_ref.obs["_label"] = pd.Categorical(y)
    a_query = stripped(query, x_query[:, keep], var_names=genes)
    n_comps = min(n_pcs, a_ref.n_obs - 1, a_ref.n_vars - 1)
    sc.pp.pca(a_ref, n_comps=n_comps, random_state=seed)
    sc.pp.neighbors(a_ref, n_neighbors=n_neighbors, n_pcs=n_comps, random_state=seed)
    sc.tl.ingest(a_query, a_ref, obs="_label", embedding_method="pca")
    label = a_query.obs["_label"].astype(str).to_numpy()

    # vote share among exact neighbours in ingest's own query representation
    _, idx = _knn(a_ref.obsm["X_pca"], a_query.obsm["X_pca"], n_neighbors)
    confidence = (y[idx] == label[:, None]).mean(axis=1)

    # distance score in the reference PCA map (reference centring)
    pcs = a_ref.varm["PCs"][:, :n_comps]
    mean = np.asarray(a_ref.X.mean(axis=0)).ravel()
    q_rep = np.asarray(a_query.X @ pcs) - mean @ pcs
    r_rep = a_ref.obsm["X_pca"][:, :n_comps]
    d_query, _ = _knn(r_rep, q_rep, n_neighbors)
    d_ref, _ = _knn(r_rep, r_rep, n_neighbors, leave_one_out=True)
    mean_q, cutoff = d_query.mean(axis=1), np.quantile(d_ref.mean(axis=1), reject_quantile)
    rejected = mean_q > cutoff
    logger.debug("knn_ingest: %d genes, %d PCs, cutoff %.3f, %.1f%% rejected",
                 a_ref.n_vars, n_comps, cutoff, 100 * rejected.mean())
    return prediction_frame(query.obs_names, label, confidence=confidence, ood_score=-mean_q,
                            rejected=rejected)
