"""A set of cells' own neighbourhood graph, and averages of per-cell values over it.

Cell types form groups of similar cells in expression space, novel types included. Averaging a
per-cell value (log p(x), p(y|x)) over a cell and its ``k`` nearest neighbours *among the same
query* lowers the noise of single-cell scores: a lone known cell with an unusually low log p(x)
is pulled back towards its neighbours, a group of novel cells keeps its low score, and a cell's
type becomes the consensus of its neighbourhood (as CellTypist's majority voting does over
clusters).

The graph is built on the first principal components of the cells' standardised model-gene
features (the network's input; for a Harmony model its corrected PCs), computed on these cells
alone, as scanpy's ``pp.pca`` + ``pp.neighbors`` would. It is not built on the network's
embedding: that is trained to separate the reference's types only, and can fold a novel type
onto a known one. Neighbours are exact (scikit-learn) up to :data:`EXACT_MAX_CELLS` cells and
approximate above (:mod:`.inverted_lists`: k-means lists, each cell compared exactly with the
cells of its nearest lists; plain torch, nothing to compile).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.loader import FeatureMatrix
from .inverted_lists import inverted_list_neighbours

#: above this many cells the neighbours are found approximately (:mod:`.inverted_lists`)
EXACT_MAX_CELLS = 50_000
#: principal components the distances are measured on
N_PCS = 30
#: the principal axes are found on at most this many cells (then all cells are projected)
PCA_MAX_CELLS = 20_000
#: the largest ``n_neighbors`` a model's stored reference neighbourhoods allow
MAX_NEIGHBORS = 30


def feature_pcs(features: FeatureMatrix, rows: np.ndarray | None = None, *,
                n_pcs: int = N_PCS, seed: int = 0, batch_size: int = 4096) -> np.ndarray:
    """First ``n_pcs`` principal components of the standardised features of ``rows`` (all
    cells by default), read in batches: never the whole dense matrix at once beyond
    :data:`PCA_MAX_CELLS` cells."""
    rows = np.arange(features.n_cells) if rows is None else np.asarray(rows)
    if rows.size == 0:
        return np.zeros((0, 0), dtype=np.float32)
    fit_rows = _fit_rows(rows, seed)
    if fit_rows is rows:  # every row is in memory already: project it without reading again
        _, centred, v = _centred_axes(torch.from_numpy(features.rows(rows)), n_pcs, seed)
        return (centred @ v).numpy()
    mean, _, v = _centred_axes(torch.from_numpy(features.rows(fit_rows)), n_pcs, seed)
    out = np.empty((rows.size, v.shape[1]), dtype=np.float32)
    for start in range(0, rows.size, batch_size):
        block = torch.from_numpy(features.rows(rows[start:start + batch_size]))
        out[start:start + batch_size] = ((block - mean) @ v).numpy()
    return out


def _fit_rows(rows: np.ndarray, seed: int) -> np.ndarray:
    """The rows the principal axes are found on: ``rows`` itself (the same object) up to
    :data:`PCA_MAX_CELLS`, else a seeded sample of that many, in order."""
    if rows.size <= PCA_MAX_CELLS:
        return rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, PCA_MAX_CELLS, replace=False))


def _centred_axes(x: torch.Tensor, n_pcs: int, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Column means of ``x``, ``x`` centred on them (in place: ``x`` itself), and its first
    ``n_pcs`` principal axes (genes x axes; seeded randomised PCA)."""
    mean = x.mean(0)
    centred = x.sub_(mean)
    q = int(min(n_pcs, x.shape[0], x.shape[1]))
    # seeded without touching the global generator the caller may rely on
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(centred, q=q, center=False, niter=4)
    return mean, centred, v


class BlockPCs:
    """:func:`feature_pcs` of all cells of ``features``, fed the standardised blocks of one
    pass over them in order (the forward's, :func:`~pyclams.nn.inference.logits_and_embedding`),
    so that each block is densified and standardised once for both.

    The result is that of :func:`feature_pcs` with the same arguments: up to
    :data:`PCA_MAX_CELLS` cells the blocks are copied into one matrix and the PCA run on it at
    the end;
    above, the axes are found first on the same sample of cells, read here, and the blocks are
    projected as they come, regrouped into the same ``batch_size`` rows.

    Parameters
    ----------
    features
        The cells; their blocks must hold exactly :meth:`FeatureMatrix.rows`' values
        (:attr:`FeatureMatrix.batches_match_rows`), as host tensors.
    n_pcs, seed, batch_size
        As for :func:`feature_pcs`.
    """

    def __init__(self, features: FeatureMatrix, *, n_pcs: int = N_PCS, seed: int = 0,
                 batch_size: int = 4096):
        self.n_cells, self.n_pcs, self.seed = features.n_cells, n_pcs, seed
        self.batch_size = batch_size
        self._pending: list[torch.Tensor] = []
        self._n_pending = self._n_done = 0
        self._dense: torch.Tensor | None = None
        self._axes: tuple[torch.Tensor, torch.Tensor] | None = None
        self._out = np.zeros((0, 0), dtype=np.float32)
        rows = np.arange(self.n_cells)
        fit_rows = _fit_rows(rows, seed)
        if fit_rows is not rows:
            mean, _, v = _centred_axes(torch.from_numpy(features.rows(fit_rows)), n_pcs, seed)
            self._axes = (mean, v)
            self._out = np.empty((self.n_cells, v.shape[1]), dtype=np.float32)

    def add(self, x: torch.Tensor) -> None:
        """Take the next block of standardised features (cells in order)."""
        if self._axes is None:
            self._keep(x)
            return
        self._pending.append(x)
        self._n_pending += int(x.shape[0])
        self._project(final=False)

    def _keep(self, x: torch.Tensor) -> None:
        """Copy block ``x`` into the matrix of all cells."""
        if self._dense is None:
            self._dense = torch.empty((self.n_cells, x.shape[1]), dtype=x.dtype)
        end = self._n_done + int(x.shape[0])
        if end > self.n_cells:
            raise RuntimeError(f"BlockPCs got more than {self.n_cells} cells")
        self._dense[self._n_done:end] = x
        self._n_done = end

    def _project(self, *, final: bool) -> None:
        """Project the pending rows, ``batch_size`` at a time (the remainder too if ``final``)."""
        mean, v = self._axes
        while self._n_pending >= self.batch_size or (final and self._n_pending):
            stacked = torch.cat(self._pending) if len(self._pending) > 1 else self._pending[0]
            block, rest = stacked[:self.batch_size], stacked[self.batch_size:]
            end = self._n_done + int(block.shape[0])
            self._out[self._n_done:end] = ((block - mean) @ v).numpy()
            self._n_done = end
            self._pending = [rest] if rest.shape[0] else []
            self._n_pending = int(rest.shape[0])

    def result(self) -> np.ndarray:
        """The principal components (cells x components), once every block has been added."""
        received = self._n_done + self._n_pending
        if received != self.n_cells:
            raise RuntimeError(f"BlockPCs got {received} of {self.n_cells} cells")
        if self.n_cells == 0:
            return np.zeros((0, 0), dtype=np.float32)
        if self._axes is not None:
            self._project(final=True)
            return self._out
        x, self._dense = self._dense, None
        _, centred, v = _centred_axes(x, self.n_pcs, self.seed)
        return (centred @ v).numpy()


def nearest_neighbours(points: np.ndarray, n_neighbors: int, *, seed: int = 0) -> np.ndarray:
    """Indices (cells x ``n_neighbors + 1``) of each cell and its nearest neighbours.

    Column 0 is the cell itself. With fewer cells than ``n_neighbors + 1`` every cell's
    neighbourhood is all cells.
    """
    points = np.asarray(points, dtype=np.float32)
    n = int(points.shape[0])
    if n == 0:
        return np.zeros((0, 1), dtype=np.int64)
    k = min(int(n_neighbors) + 1, n)
    if k == 1:
        return np.arange(n, dtype=np.int64)[:, None]
    if n <= EXACT_MAX_CELLS:
        from sklearn.neighbors import NearestNeighbors

        idx = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(points,
                                                                     return_distance=False)
    else:
        idx = inverted_list_neighbours(points, k, seed=seed)
    return _self_first(np.asarray(idx, dtype=np.int64))


def _self_first(idx: np.ndarray) -> np.ndarray:
    """Put each cell itself in column 0 (ties in distance, e.g. duplicate cells, may not)."""
    own = np.arange(idx.shape[0])
    for i in np.flatnonzero(idx[:, 0] != own):
        others = idx[i][idx[i] != i][: idx.shape[1] - 1]
        idx[i] = np.r_[i, others]
    return idx


def neighbour_mean(values: np.ndarray, neighbours: np.ndarray,
                   n_neighbors: int | None = None) -> np.ndarray:
    """Mean of ``values`` (cells, or cells x columns) over each cell and its first
    ``n_neighbors`` neighbours (all columns of ``neighbours`` by default)."""
    cols = neighbours.shape[1] if n_neighbors is None else min(n_neighbors + 1,
                                                                neighbours.shape[1])
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(v.shape, dtype=np.float64)
    for j in range(cols):
        out += v[neighbours[:, j]]
    return out / cols


def consensus(probabilities: np.ndarray, neighbours: np.ndarray, *,
              mean_probabilities: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's neighbourhood consensus type and the share of its neighbourhood that agrees.

    The consensus is the argmax of p(y|x) averaged over the cell and its neighbours
    (``mean_probabilities``, when already computed by :func:`neighbour_mean`); the agreement is
    the share of the same neighbourhood whose own consensus is that type (1: the whole
    neighbourhood is called alike; near 1/2: the cell sits between two types).
    """
    if mean_probabilities is None:
        mean_probabilities = neighbour_mean(probabilities, neighbours)
    label = mean_probabilities.argmax(1)
    agreement = (label[neighbours] == label[:, None]).mean(1)
    return label, agreement
