"""The paper's set-up: joint PCA of reference and query, then Harmony over dataset and batch.

A model trained this way works on the corrected PCs of *that* query: it cannot annotate other
cells, because their PCs would need a new joint correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._logging import logger
from ..errors import PyClamsInputError
from .loader import FeatureMatrix


@dataclass
class HarmonyResult:
    """Corrected PCs of reference and query plus the PCA that produced them."""

    ref_pcs: np.ndarray
    query_pcs: np.ndarray
    loadings: np.ndarray
    center: np.ndarray


def streamed_pca(blocks: list[FeatureMatrix], n_pcs: int, *, batch_size: int = 4096
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Loadings (genes x n_pcs) and centre of the joint PCA, from a covariance built by blocks."""
    n_feat = blocks[0].n_features
    total, s, ss = 0, np.zeros(n_feat), np.zeros((n_feat, n_feat))
    for fm in blocks:
        for _, x in fm.batches(batch_size):
            z = x.numpy().astype(np.float64)
            total += z.shape[0]
            s += z.sum(0)
            ss += z.T @ z
    center = s / total
    vecs = top_components(ss / total - np.outer(center, center), n_pcs)
    return vecs.astype(np.float32), center.astype(np.float32)


def top_components(cov: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading eigenvectors of a covariance (columns), signs fixed so that results
    do not depend on the eigen-solver."""
    vals, vecs = np.linalg.eigh(cov)
    vecs = vecs[:, np.argsort(vals)[::-1][:k]]
    vecs *= np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(vecs.shape[1])])
    return vecs


def project(fm: FeatureMatrix, loadings: np.ndarray, center: np.ndarray, *,
            batch_size: int = 4096) -> np.ndarray:
    out = [(x.numpy() - center) @ loadings for _, x in fm.batches(batch_size)]
    return np.concatenate(out).astype(np.float32)


def harmonize(ref: FeatureMatrix, query: FeatureMatrix, *, n_pcs: int = 30,
              ref_batches: pd.Series | None = None, query_batches: pd.Series | None = None,
              seed: int = 0) -> HarmonyResult:
    """Joint PCA of standardised reference and query features, corrected with harmonypy."""
    try:
        import harmonypy
    except ImportError:  # pragma: no cover - harmonypy is a dependency
        raise PyClamsInputError("integrate='harmony' needs harmonypy: pip install harmonypy") \
            from None
    n_pcs = min(n_pcs, ref.n_features, ref.n_cells + query.n_cells - 1)
    loadings, center = streamed_pca([ref, query], n_pcs)
    pcs = np.vstack([project(ref, loadings, center), project(query, loadings, center)])
    meta = pd.DataFrame({"dataset": ["reference"] * ref.n_cells + ["query"] * query.n_cells})
    vars_use = ["dataset"]
    if ref_batches is not None and query_batches is not None:
        meta["batch"] = np.concatenate([np.asarray(ref_batches, dtype=str),
                                        np.asarray(query_batches, dtype=str)])
        vars_use.append("batch")
    logger.info("Harmony over %s on %d PCs of %d cells", vars_use, n_pcs, len(meta))
    ho = harmonypy.run_harmony(pcs, meta, vars_use, random_state=seed, verbose=False)
    z = np.asarray(ho.Z_corr)
    if z.shape[0] != len(meta):  # harmonypy < 2 returns PCs x cells
        z = z.T
    z = z.astype(np.float32)
    return HarmonyResult(z[: ref.n_cells], z[ref.n_cells:], loadings, center)
