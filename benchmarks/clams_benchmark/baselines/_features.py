"""Highly variable gene selection on a log-normalised reference matrix."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

__all__ = ["highly_variable_mask"]


def highly_variable_mask(x_log: sp.spmatrix | np.ndarray, *, n_top_genes: int) -> np.ndarray:
    """Boolean mask of the ``n_top_genes`` most variable genes (scanpy, ``flavor="seurat"``).

    ``x_log`` is a log-normalised cells x genes matrix; all genes are kept when there are at
    most ``n_top_genes``.
    """
    import scanpy as sc

    n_genes = x_log.shape[1]
    if n_top_genes >= n_genes:
        return np.ones(n_genes, dtype=bool)
    tmp = ad.AnnData(X=sp.csr_matrix(x_log, dtype=np.float32, copy=True))
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat")
    return tmp.var["highly_variable"].to_numpy(dtype=bool)
