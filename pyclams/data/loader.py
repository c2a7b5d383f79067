"""Minibatches of standardised features, read from a sparse matrix a few rows at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch


class FeatureMatrix:
    """Cells x features source (sparse or dense) plus the transform that standardises rows.

    Parameters
    ----------
    source
        Log-normalised values at the model genes (CSR), or a dense array (e.g. Harmony PCs).
    transform
        Maps a dense block of rows to standardised float32 features.
    """

    def __init__(self, source: sp.csr_matrix | np.ndarray,
                 transform: Callable[[np.ndarray], np.ndarray]):
        self.source = source.tocsr() if sp.issparse(source) else np.asarray(source)
        self.transform = transform

    @property
    def n_cells(self) -> int:
        return self.source.shape[0]

    @property
    def n_features(self) -> int:
        return self.source.shape[1]

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Standardised features of rows ``idx`` as a dense float32 array."""
        block = self.source[idx]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        return self.transform(block)

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: np.random.Generator | None = None,
                subset: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(row indices, features tensor)`` over ``subset`` (default: all rows)."""
        idx = np.arange(self.n_cells) if subset is None else np.asarray(subset)
        if shuffle:
            idx = (generator or np.random.default_rng()).permutation(idx)
        for start in range(0, idx.size, batch_size):
            rows = idx[start:start + batch_size]
            yield rows, torch.from_numpy(self.rows(rows))

    def class_means(self, y: np.ndarray, rows: np.ndarray, n_classes: int) -> np.ndarray:
        """Mean standardised features of ``rows`` per class ``0..n_classes-1`` (float32)."""
        means = np.zeros((n_classes, self.n_features), dtype=np.float32)
        for c in range(n_classes):
            rows_c = rows[y[rows] == c]
            means[c] = np.mean(np.concatenate(
                [x.numpy() for _, x in self.batches(4096, subset=rows_c)]), axis=0)
        return means
