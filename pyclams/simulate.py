"""Count data at any scale: per-class negative-binomial profiles fitted to a labelled reference.

:meth:`NBProfiles.fit` estimates, on raw counts of a labelled reference (e.g. the bundled demo
reference, :func:`pyclams.data.demo.demo_reference`):

* per class, the share of a cell's library that each gene takes (the class's mean profile);
* per gene, one negative-binomial dispersion ``phi`` (``var = mu + phi * mu**2``), pooled over
  the classes by the method of moments with each cell's own library size;
* per class, a log-normal library-size distribution (mean and sd of log total counts).

:meth:`NBProfiles.simulate` draws any number of cells from them, chunk by chunk, as a sparse CSR
count :class:`~anndata.AnnData` (never a dense matrix of all cells): each cell gets a class
(the reference's proportions, or given ones), a library size ``s``, and counts
``Poisson(s * p_class * Gamma(1 / phi, phi))`` (the gamma-Poisson form of the negative
binomial). Simulated atlases make accuracy at scale mean something in the speed benchmark
(``benchmarks/bench_speed.py``).

Examples
--------
>>> from pyclams.data.demo import demo_reference
>>> profiles = NBProfiles.fit(demo_reference(), labels_key="cell_type", n_genes=2000)
>>> atlas = profiles.simulate(1_000_000, seed=0)   # ~1M x 2,000 sparse counts
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._config import check_whole
from ._logging import logger
from .data.checks import check_labels, get_matrix
from .errors import PyClamsInputError

__all__ = ["NBProfiles"]

#: dispersions are kept in this range (moments estimates of rare genes are noisy)
DISPERSION_RANGE = (1e-3, 20.0)
#: pseudo-count share added to every gene's class profile (no gene is exactly silent)
PROFILE_FLOOR = 1e-7


@dataclass
class NBProfiles:
    """Per-class negative-binomial count profiles.

    Attributes
    ----------
    genes
        Gene names (columns of the simulated matrix).
    classes
        Class names.
    proportions
        Share of each class among the reference cells, shape ``(n_classes,)``.
    profiles
        Expected share of a cell's library per gene, shape ``(n_classes, n_genes)``; rows sum
        to 1.
    dispersion
        Negative-binomial dispersion ``phi`` per gene, shape ``(n_genes,)``.
    log_lib_mean, log_lib_sd
        Mean and sd of the natural log of the library size per class, shape ``(n_classes,)``.
    labels_key
        Column of ``obs`` that holds the class of a simulated cell.
    """

    genes: list[str]
    classes: list[str]
    proportions: np.ndarray
    profiles: np.ndarray
    dispersion: np.ndarray
    log_lib_mean: np.ndarray
    log_lib_sd: np.ndarray
    labels_key: str = "cell_type"

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, adata: ad.AnnData, *, labels_key: str, layer: str | None = None,
            n_genes: int | None = None, min_cells: int = 2) -> NBProfiles:
        """Fit the profiles to raw counts of a labelled reference.

        Parameters
        ----------
        adata
            Reference cells with raw counts in ``X`` (or ``layer``); sparse or dense.
        labels_key
            Column of ``obs`` with the cell types; unlabelled cells are left out.
        n_genes
            Keep the ``n_genes`` genes with the most counts (all genes when None or larger).
        min_cells
            Classes with fewer labelled cells are left out.

        Returns
        -------
        NBProfiles
            The fitted profiles.
        """
        labels = check_labels(adata, labels_key)
        keep = labels.notna().to_numpy()
        x = get_matrix(adata, layer)
        x = sp.csr_matrix(x[keep]) if not sp.issparse(x) else x[keep].tocsr()
        if x.nnz and (x.data.min() < 0 or not np.allclose(x.data, np.round(x.data))):
            raise PyClamsInputError("NBProfiles.fit needs raw counts (non-negative integers)")
        names = labels[keep].astype(str).to_numpy()
        counts = pd.Series(names).value_counts()
        classes = sorted(counts.index[counts >= min_cells].tolist())
        if not classes:
            raise PyClamsInputError(f"no class of obs[{labels_key!r}] has {min_cells} cells")
        x = x.astype(np.float64)
        genes = np.asarray(adata.var_names.astype(str))
        if n_genes is not None:
            check_whole(n_genes, "n_genes", 1)
            if n_genes < x.shape[1]:
                total = np.asarray(x.sum(0)).ravel()
                top = np.sort(np.argsort(-total, kind="stable")[:n_genes])
                x, genes = x[:, top], genes[top]
        lib = np.asarray(x.sum(1)).ravel()
        ok = lib > 0
        n_cls, n_g = len(classes), x.shape[1]
        profiles = np.zeros((n_cls, n_g))
        lib_mean, lib_sd, props = np.zeros(n_cls), np.zeros(n_cls), np.zeros(n_cls)
        # method-of-moments pieces: sum (c - mu)^2 - mu and sum mu^2 over all cells
        num, den = np.zeros(n_g), np.zeros(n_g)
        for k, name in enumerate(classes):
            rows = np.flatnonzero((names == name) & ok)
            if rows.size == 0:
                raise PyClamsInputError(f"class {name!r} has no cell with counts")
            xk, sk = x[rows], lib[rows]
            gene_sum = np.asarray(xk.sum(0)).ravel()
            p = gene_sum / sk.sum() + PROFILE_FLOOR
            profiles[k] = p / p.sum()
            log_s = np.log(sk)
            lib_mean[k], lib_sd[k] = log_s.mean(), log_s.std()
            props[k] = rows.size
            # mu_ij = s_i p_kj: sum (c - mu)^2 = sum c^2 - 2 p sum s c + p^2 sum s^2
            sq = np.asarray(xk.multiply(xk).sum(0)).ravel()
            cross = np.asarray(xk.T @ sk).ravel()
            s2 = float((sk ** 2).sum())
            num += sq - 2 * profiles[k] * cross + profiles[k] ** 2 * s2 - profiles[k] * sk.sum()
            den += profiles[k] ** 2 * s2
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(den > 0, num / den, DISPERSION_RANGE[0])
        phi = np.clip(np.nan_to_num(phi, nan=DISPERSION_RANGE[0]), *DISPERSION_RANGE)
        logger.info("NB profiles fitted on %d cells: %d classes, %d genes, median dispersion "
                    "%.3g", int(props.sum()), n_cls, n_g, float(np.median(phi)))
        return cls(genes=genes.tolist(), classes=classes, proportions=props / props.sum(),
                   profiles=profiles, dispersion=phi, log_lib_mean=lib_mean,
                   log_lib_sd=lib_sd, labels_key=labels_key)

    # ------------------------------------------------------------------ drawing
    def simulate(self, n_cells: int, *, seed: int = 0, classes: Sequence[str] | None = None,
                 proportions: Sequence[float] | np.ndarray | None = None,
                 chunk_size: int = 4096, prefix: str = "sim") -> ad.AnnData:
        """Draw ``n_cells`` cells as a sparse CSR count AnnData.

        Parameters
        ----------
        n_cells
            Number of cells.
        seed
            Seeds every draw: the same ``seed`` and ``chunk_size`` give the same matrix
            (chunks draw in order from one generator).
        classes
            Draw only these classes (default: all), e.g. to leave one out of a reference.
        proportions
            Class shares (in the order of ``classes``); default: the reference's, renormalised
            over ``classes``.
        chunk_size
            Cells drawn densely at a time (memory: about ``chunk_size * n_genes * 20`` bytes).
        prefix
            Cell names are ``f"{prefix}{i}"``.

        Returns
        -------
        anndata.AnnData
            ``X``: CSR float32 counts; ``obs[labels_key]``: categorical class;
            ``obs["library_size"]``: the drawn library size; ``uns["simulation"]``: settings.
        """
        check_whole(n_cells, "n_cells", 1)
        check_whole(chunk_size, "chunk_size", 1)
        which = self._class_indices(classes)
        share = self._shares(which, proportions)
        rng = np.random.default_rng(seed)
        ys = rng.choice(which, size=n_cells, p=share)
        log_lib = rng.normal(self.log_lib_mean[ys], self.log_lib_sd[ys])
        shape = (1.0 / self.dispersion).astype(np.float32)
        scale = self.dispersion.astype(np.float32)
        pieces: list[sp.csr_matrix] = []
        for start in range(0, n_cells, chunk_size):
            stop = min(start + chunk_size, n_cells)
            mu = np.exp(log_lib[start:stop])[:, None].astype(np.float32) * \
                self.profiles[ys[start:stop]].astype(np.float32)
            lam = rng.standard_gamma(np.broadcast_to(shape, mu.shape), dtype=np.float32)
            lam *= scale * mu
            pieces.append(sp.csr_matrix(rng.poisson(lam).astype(np.float32)))
        x = _stack_rows(pieces, self.n_genes)
        names = np.asarray(self.classes, dtype=object)
        obs = pd.DataFrame(
            {self.labels_key: pd.Categorical(names[ys], categories=[self.classes[i]
                                                                   for i in which]),
             "library_size": np.asarray(x.sum(1)).ravel().astype(np.float32)},
            index=pd.Index([f"{prefix}{i}" for i in range(n_cells)], dtype=object))
        out = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(self.genes,
                                                                       dtype=object)))
        out.uns["simulation"] = {"seed": int(seed), "chunk_size": int(chunk_size),
                                 "classes": [self.classes[i] for i in which],
                                 "proportions": share.tolist(), "model": "negative binomial"}
        return out

    def _class_indices(self, classes: Sequence[str] | None) -> np.ndarray:
        if classes is None:
            return np.arange(len(self.classes))
        unknown = sorted(set(classes) - set(self.classes))
        if unknown or not len(classes):
            raise PyClamsInputError(f"classes must be a non-empty subset of {self.classes}, "
                                    f"unknown: {unknown}")
        return np.array([self.classes.index(c) for c in dict.fromkeys(classes)])

    def _shares(self, which: np.ndarray, proportions) -> np.ndarray:
        if proportions is None:
            share = self.proportions[which]
        else:
            share = np.asarray(proportions, dtype=float)
            if share.shape != which.shape or (share < 0).any() or share.sum() <= 0:
                raise PyClamsInputError(f"proportions must be {len(which)} non-negative "
                                        "numbers with a positive sum")
        return share / share.sum()


def _stack_rows(pieces: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    """Concatenate CSR row blocks into one CSR matrix, freeing each block once copied (peak
    memory: the result plus one block, not twice the result)."""
    nnz = sum(p.nnz for p in pieces)
    n_rows = sum(p.shape[0] for p in pieces)
    index_dtype = np.int32 if nnz < np.iinfo(np.int32).max else np.int64
    data = np.empty(nnz, dtype=np.float32)
    indices = np.empty(nnz, dtype=index_dtype)
    indptr = np.zeros(n_rows + 1, dtype=index_dtype)
    at, row = 0, 0
    pieces.reverse()  # pop from the end: first block first
    while pieces:
        p = pieces.pop()
        data[at:at + p.nnz] = p.data
        indices[at:at + p.nnz] = p.indices
        indptr[row + 1:row + p.shape[0] + 1] = p.indptr[1:] + at
        at, row = at + p.nnz, row + p.shape[0]
        del p
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
