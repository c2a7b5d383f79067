"""Minibatches of standardised features, read from a sparse matrix a few rows at a time.

With a :class:`Standardiser` as the transform, a minibatch crosses to the device as its sparse
CSR rows (three small arrays; pinned and copied asynchronously to a GPU) and is densified and
standardised there (:meth:`FeatureMatrix.to_device`); element for element the same float32
arithmetic as the host path, so both give identical features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch


class Standardiser:
    """``(x - mean) / sd`` in float32, ``missing`` genes set to 0, clipped to ``[-clip, clip]``.

    Callable on a dense numpy block (:meth:`__call__`) and on a dense torch tensor on any
    device (:meth:`apply`); both give the same values.
    """

    def __init__(self, mean: np.ndarray, sd: np.ndarray, clip: float,
                 missing: np.ndarray | None = None):
        self.mean, self.sd, self.clip = mean, sd, float(clip)
        self.missing = missing if missing is not None and np.any(missing) else None
        self._on: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def __call__(self, x: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
        """Standardised ``x``; with ``overwrite`` a float32 ``x`` may be standardised in place
        (the same float32 values, without two temporary copies of the block)."""
        if (overwrite and isinstance(x, np.ndarray) and x.dtype == np.float32
                and np.result_type(x, self.mean, self.sd) == np.float32):
            z = np.subtract(x, self.mean, out=x)
            np.divide(z, self.sd, out=z)
        else:
            z = (np.asarray(x, dtype=np.float32) - self.mean) / self.sd
        if self.missing is not None:
            z[:, self.missing] = 0.0
        return np.clip(z, -self.clip, self.clip, out=z)

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        if device not in self._on:
            # numpy's float32 - mean promotes to mean's dtype: keep it, then cast (as numpy)
            mean = torch.as_tensor(np.asarray(self.mean), device=device)
            sd = torch.as_tensor(np.asarray(self.sd), device=device)
            missing = (torch.zeros(len(mean), dtype=torch.bool, device=device)
                       if self.missing is None
                       else torch.as_tensor(np.asarray(self.missing), device=device))
            self._on[device] = (mean, sd, missing)
        return self._on[device]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise a dense float32 tensor ``x`` (cells x genes) where it lives."""
        mean, sd, missing = self._tensors(x.device)
        z = ((x.to(torch.promote_types(x.dtype, mean.dtype)) - mean) / sd).to(torch.float32)
        if self.missing is not None:
            z = z.masked_fill_(missing, 0.0)
        return z.clamp_(-self.clip, self.clip)


class FeatureMatrix:
    """Cells x features source (sparse or dense) plus the transform that standardises rows.

    Parameters
    ----------
    source
        Log-normalised values at the model genes (CSR), or a dense array (e.g. Harmony PCs).
    transform
        Maps a dense block of rows to standardised float32 features. A :class:`Standardiser`
        also runs on the device (see :meth:`to_device`).
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

    @property
    def densifies_on_device(self) -> bool:
        """Whether :meth:`to_device` sends sparse rows and densifies them on the device."""
        return sp.issparse(self.source) and isinstance(self.transform, Standardiser)

    @property
    def batches_match_rows(self) -> bool:
        """Whether the host blocks of :meth:`batches` hold exactly :meth:`rows`' values (same
        dtype): always when the rows are densified on the host, and with a float32
        :class:`Standardiser` (the device path's float32 arithmetic is the host's)."""
        if not self.densifies_on_device:
            return True
        t = self.transform
        return np.result_type(np.float32, t.mean, t.sd) == np.float32

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Standardised features of rows ``idx`` as a dense float32 array."""
        block = self.source[idx]
        if sp.issparse(block) and isinstance(self.transform, Standardiser):
            # a fresh dense block: standardised in place
            return self.transform(block.toarray(), overwrite=True)
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        return self.transform(block)

    def to_device(self, idx: np.ndarray, device: torch.device | str) -> torch.Tensor:
        """Standardised features of rows ``idx`` as a float32 tensor on ``device``.

        Sparse rows with a :class:`Standardiser` cross as CSR arrays (pinned and copied
        without blocking to a GPU) and are densified and standardised on ``device``; otherwise
        the rows are densified on the host and copied.
        """
        device = torch.device(device)
        if not self.densifies_on_device:
            return send(torch.from_numpy(self.rows(idx)), device)
        block = self.source[idx]
        n, nnz = block.shape[0], block.nnz
        counts = send(torch.from_numpy(np.diff(block.indptr).astype(np.int64)), device)
        cols = send(torch.from_numpy(block.indices.astype(np.int64)), device)
        vals = send(torch.from_numpy(np.asarray(block.data, dtype=np.float32)), device)
        dense = torch.zeros((n, block.shape[1]), dtype=torch.float32, device=device)
        if nnz:
            rows = torch.repeat_interleave(torch.arange(n, device=device), counts,
                                           output_size=nnz)
            dense.index_put_((rows, cols), vals, accumulate=True)
        return self.transform.apply(dense)

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: np.random.Generator | None = None,
                subset: np.ndarray | None = None, device: torch.device | str | None = None
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(row indices, features tensor)`` over ``subset`` (default: all rows); the
        tensors on ``device`` (see :meth:`to_device`) or, by default, on the host."""
        idx = np.arange(self.n_cells) if subset is None else np.asarray(subset)
        if shuffle:
            idx = (generator or np.random.default_rng()).permutation(idx)
        for start in range(0, idx.size, batch_size):
            rows = idx[start:start + batch_size]
            if device is None:
                yield rows, torch.from_numpy(self.rows(rows))
            else:
                yield rows, self.to_device(rows, device)

    def class_means(self, y: np.ndarray, rows: np.ndarray, n_classes: int) -> np.ndarray:
        """Mean standardised features of ``rows`` per class ``0..n_classes-1`` (float32)."""
        means = np.zeros((n_classes, self.n_features), dtype=np.float32)
        for c in range(n_classes):
            rows_c = rows[y[rows] == c]
            means[c] = np.mean(np.concatenate(
                [x.numpy() for _, x in self.batches(4096, subset=rows_c)]), axis=0)
        return means


def send(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Host tensor ``t`` on ``device``: through pinned memory and without blocking when it is a GPU."""
    device = torch.device(device)
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)
