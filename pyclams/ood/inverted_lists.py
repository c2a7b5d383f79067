"""Approximate nearest neighbours of many cells by inverted lists: plain torch, nothing compiled.

k-means centroids (Lloyd's iterations on a sample of the cells) split the cells into lists of
about :data:`LIST_SIZE` cells each. Every cell is then compared, exactly, with all the cells of
the :data:`N_PROBE` lists whose centroids are nearest to *it* (each cell probes its own lists,
not those of its list's centroid), and keeps the ``k`` nearest of those. The work is
``n_probe * list_size`` distances per cell, done as dense blocks of matrix products; memory
is ``O(cells x (k + n_probe))``.

This replaces pynndescent above :data:`.neighbours.EXACT_MAX_CELLS` cells: on one CPU thread
pynndescent spent most of a 100k-cell annotation compiling itself with numba (about 40-60 s in
each new process; numba's on-disk cache does not cover its main loop), and found fewer of the
exact neighbours than these lists do at the sizes measured (``benchmarks/knn_quality.py``).
"""

from __future__ import annotations

import numpy as np
import torch

#: cells per inverted list, on average
LIST_SIZE = 1000
#: lists each cell is compared with (its nearest centroids)
N_PROBE = 6
#: Lloyd iterations of the k-means that makes the lists
KMEANS_ITERS = 10
#: the centroids are fitted on at most this many cells per list
KMEANS_SAMPLE_PER_LIST = 64


def _sq_dist_to(x: torch.Tensor, centres: torch.Tensor, centres_sq: torch.Tensor
                ) -> torch.Tensor:
    """Squared distances of ``x`` to ``centres`` up to a per-row constant (``|x|^2``)."""
    return torch.addmm(centres_sq[None], x, centres.T, alpha=-2)


def nearest_centres(x: torch.Tensor, centres: torch.Tensor, m: int, *,
                    block: int = 16384) -> torch.Tensor:
    """Indices (rows of ``x`` x ``m``) of each row's ``m`` nearest centres, nearest first."""
    sq = (centres * centres).sum(1)
    out = torch.empty((x.shape[0], m), dtype=torch.long)
    for start in range(0, x.shape[0], block):
        d = _sq_dist_to(x[start:start + block], centres, sq)
        out[start:start + block] = torch.topk(d, m, 1, largest=False).indices
    return out


def kmeans(x: torch.Tensor, n_centres: int, *, iters: int = KMEANS_ITERS,
           sample: int | None = None, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """``n_centres`` k-means centroids of the rows of ``x`` (Lloyd's iterations from random
    rows, fitted on ``sample`` random rows; a centroid that loses all its rows stays put)."""
    n = x.shape[0]
    fit = x[torch.randperm(n, generator=generator)[:min(n, sample or n)]]
    centres = fit[torch.randperm(fit.shape[0], generator=generator)[:n_centres]].clone()
    for _ in range(iters):
        owner = nearest_centres(fit, centres, 1)[:, 0]
        counts = torch.bincount(owner, minlength=n_centres)
        sums = torch.zeros_like(centres).index_add_(0, owner, fit)
        kept = counts > 0
        centres[kept] = sums[kept] / counts[kept, None].to(sums.dtype)
    return centres


def _segments(keys: torch.Tensor, n_keys: int) -> tuple[torch.Tensor, list[int], list[int]]:
    """Positions sorting ``keys``, and each key's start and length in that order."""
    order = torch.argsort(keys, stable=True)
    counts = torch.bincount(keys, minlength=n_keys)
    starts = torch.cumsum(counts, 0) - counts
    return order, starts.tolist(), counts.tolist()


def inverted_list_neighbours(points: np.ndarray, k: int, *, list_size: int = LIST_SIZE,
                             n_probe: int = N_PROBE, seed: int = 0,
                             block: int = 512) -> np.ndarray:
    """Indices (cells x ``k``) of each cell's approximate ``k`` nearest cells (itself included,
    as any other cell), nearest first.

    Parameters
    ----------
    points
        Cells x dimensions (float32).
    k
        Neighbours per cell (at most the number of cells).
    list_size
        Cells per inverted list on average (the number of lists is ``cells / list_size``).
    n_probe
        Lists each cell is compared with: more finds more of the exact neighbours, at a
        proportional cost.
    seed
        Seed of the k-means (the result is a deterministic function of the inputs).
    block
        Cells compared at once with one list.

    Returns
    -------
    int64 array of indices into ``points``.
    """
    x = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of cells ({n}), not {k}")
    n_lists = max(1, n // list_size)
    n_probe = min(n_probe, n_lists)
    gen = torch.Generator().manual_seed(seed)
    centres = kmeans(x, n_lists, sample=KMEANS_SAMPLE_PER_LIST * n_lists, generator=gen)
    probes = nearest_centres(x, centres, n_probe)  # cells x n_probe, own list first
    members, m_start, m_count = _segments(probes[:, 0].contiguous(), n_lists)
    # the cells that probe each list
    asking, q_start, q_count = _segments(probes.reshape(-1), n_lists)
    asking = torch.div(asking, n_probe, rounding_mode="floor")
    sq = (x * x).sum(1)
    best_d = torch.full((n, k), float("inf"))
    best_i = torch.full((n, k), -1, dtype=torch.long)
    for lst in range(n_lists):
        if not m_count[lst] or not q_count[lst]:
            continue
        cells = members[m_start[lst]:m_start[lst] + m_count[lst]]
        xc, sc = x[cells], sq[cells]
        kk = min(k, cells.numel())
        queries = asking[q_start[lst]:q_start[lst] + q_count[lst]]
        for start in range(0, queries.numel(), block):
            q = queries[start:start + block]
            d, j = torch.topk(_sq_dist_to(x[q], xc, sc), kk, 1, largest=False)
            d, pick = torch.topk(torch.cat([best_d[q], d], 1), k, 1, largest=False)
            best_i[q] = torch.gather(torch.cat([best_i[q], cells[j]], 1), 1, pick)
            best_d[q] = d
    short = torch.nonzero(best_i[:, -1] < 0).flatten()
    if short.numel():  # fewer than k cells in a cell's lists (tiny sets): search all cells
        best_i[short] = _exact(x, sq, short, k)
    return best_i.numpy()


def _exact(x: torch.Tensor, sq: torch.Tensor, rows: torch.Tensor, k: int,
           block: int = 256) -> torch.Tensor:
    """The exact ``k`` nearest cells of ``rows`` among all rows of ``x``, nearest first."""
    out = torch.empty((rows.numel(), k), dtype=torch.long)
    for start in range(0, rows.numel(), block):
        r = rows[start:start + block]
        out[start:start + block] = torch.topk(_sq_dist_to(x[r], x, sq), k, 1,
                                              largest=False).indices
    return out
