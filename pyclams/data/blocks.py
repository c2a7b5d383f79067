"""Reading a cells x genes matrix a block of rows at a time, in memory or on disk.

A backed AnnData (``anndata.read_h5ad(path, backed="r")``) keeps ``X`` on disk: a sparse
dataset (:class:`anndata.abc.CSRDataset`) or, for a dense ``X``, an :class:`h5py.Dataset`.
Such a matrix is read here in blocks of rows, sized so that one block holds about
:data:`BLOCK_VALUES` stored values, and each block comes back in memory as a CSR matrix (sparse
input) or an ndarray (dense input), float16 read as float32. Nothing here reads the whole
matrix at once. A Dask array (dense, or with sparse chunks as anndata's lazy reader gives them)
is read the same way, a slice of rows computed at a time (``.compute()``); dask is optional
(tested in ``tests/python/test_dask.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

#: stored values per block (about 80 MB of float32 values and int64 indices for sparse input)
BLOCK_VALUES = 8_000_000


def in_memory(x) -> bool:
    """Whether ``x`` is an in-memory scipy sparse matrix or NumPy array."""
    return sp.issparse(x) or isinstance(x, np.ndarray)


def is_sparse_store(x) -> bool:
    """Whether ``x`` is an on-disk sparse matrix (anndata's backed CSR/CSC dataset)."""
    return hasattr(x, "to_memory") and getattr(x, "format", None) in ("csr", "csc")


def _as_block(block) -> sp.csr_matrix | np.ndarray:
    """An in-memory block: CSR for sparse values, ndarray otherwise; float16 as float32."""
    if hasattr(block, "compute"):  # a Dask block
        block = block.compute()
    block = block.tocsr() if sp.issparse(block) else np.asarray(block)
    if block.dtype == np.float16:
        block = block.astype(np.float32)
    return block


def read_rows(x, rows) -> sp.csr_matrix | np.ndarray:
    """Rows ``rows`` (a slice or sorted indices) of ``x`` in memory (see :func:`_as_block`)."""
    return _as_block(x[rows])


def _block_bounds(x) -> list[int]:
    """Row boundaries of blocks of about :data:`BLOCK_VALUES` stored values."""
    n, m = int(x.shape[0]), int(x.shape[1])
    if is_sparse_store(x) and getattr(x, "format", None) == "csr":
        indptr = np.asarray(x.group["indptr"][...], dtype=np.int64)
        bounds, start = [0], 0
        while start < n:
            # the first row end past start whose stored values reach the budget (at least 1 row)
            stop = int(np.searchsorted(indptr, indptr[start] + BLOCK_VALUES, side="right")) - 1
            start = min(n, max(start + 1, stop))
            bounds.append(start)
        return bounds
    step = max(1, BLOCK_VALUES // max(1, m))
    return [*range(0, n, step), n] if n else [0]


def row_blocks(x) -> Iterator[tuple[int, int, sp.csr_matrix | np.ndarray]]:
    """Yield ``(start, stop, rows start:stop of x in memory)`` over all rows of ``x``."""
    bounds = _block_bounds(x)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        yield start, stop, read_rows(x, slice(start, stop))


def max_value(x) -> float:
    """Largest value of ``x`` (0 for an empty matrix), read block by block when not in
    memory."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        return 0.0
    if in_memory(x):
        return float(x.max())
    return max(float(b.max()) if b.size else 0.0 for _, _, b in row_blocks(x))
