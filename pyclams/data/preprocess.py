"""Reference-fitted preprocessing: normalise total + log1p, highly variable genes, scaling.

The :class:`Preprocessor` is fitted once on the reference and stored in the model. It turns any
AnnData into a sparse log-normalised matrix over the model's genes; minibatches are then
standardised with the reference's per-gene mean and sd and clipped (see :mod:`.loader`). No whole
count matrix is ever densified.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

from .._logging import logger
from .checks import (
    InputKind,
    check_matrix_values,
    check_names,
    check_no_empty_cells,
    detect_input_kind,
    get_matrix,
)
from .genes import align_genes

TARGET_SUM = 1e4
CLIP = 10.0


def _as_csr(x) -> sp.csr_matrix:
    return x.tocsr() if sp.issparse(x) else sp.csr_matrix(np.asarray(x))


def selection_matrix(positions: np.ndarray, n_source: int) -> sp.csr_matrix:
    """Sparse 0/1 matrix whose product with a cells x source-genes matrix picks and orders
    ``positions`` (-1 gives an all-zero column)."""
    present = np.flatnonzero(positions >= 0)
    return sp.csr_matrix(
        (np.ones(present.size, dtype=np.float32), (positions[present], present)),
        shape=(n_source, positions.size))


def log_normalise(x, *, kind: InputKind, size_mask: np.ndarray | None = None,
                  target_sum: float = TARGET_SUM) -> sp.csr_matrix:
    """log1p(target_sum * counts / library size), sparse; log input is returned as CSR float32.

    ``size_mask`` (bool over genes) restricts the library size to some genes, so that a query
    measured on more genes than the reference is scaled like the reference.
    """
    x = _as_csr(x).astype(np.float32)
    if kind == "log":
        return x
    totals = np.asarray(x @ size_mask.astype(np.float32) if size_mask is not None
                        else x.sum(axis=1)).ravel()
    totals[totals <= 0] = 1.0
    out = sp.diags((target_sum / totals).astype(np.float32)) @ x
    out = out.tocsr()
    np.log1p(out.data, out=out.data)
    return out


def sparse_mean_sd(x: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and population sd of a sparse matrix (sd 0 replaced by 1, as scanpy)."""
    n = x.shape[0]
    mean = np.asarray(x.sum(axis=0)).ravel() / n
    sq = np.asarray(x.multiply(x).sum(axis=0)).ravel() / n
    sd = np.sqrt(np.maximum(sq - mean**2, 0.0))
    sd[sd == 0] = 1.0
    return mean.astype(np.float32), sd.astype(np.float32)


@dataclass
class Preprocessor:
    """Everything needed to bring new cells into the model's feature space.

    Attributes
    ----------
    input_kind
        ``"counts"`` or ``"log"``: what the reference held.
    genes
        Model genes (highly variable genes of the reference), in feature order.
    size_genes
        Genes whose counts make a cell's library size (the reference's genes).
    mean, sd
        Per-gene mean and sd of the reference's log-normalised values.
    clip
        Standardised values are clipped to ``[-clip, clip]``.
    """

    input_kind: InputKind
    genes: list[str]
    size_genes: list[str] | None
    mean: np.ndarray
    sd: np.ndarray
    clip: float = CLIP
    target_sum: float = TARGET_SUM
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, adata: ad.AnnData, *, layer: str | None = None, is_log: bool | None = None,
            n_top_genes: int = 2000, cells: np.ndarray | None = None,
            batch_key: str | None = None) -> Preprocessor:
        """Fit on the reference: detect counts vs log, choose HVGs, store mean and sd.

        ``cells`` (bool mask) restricts fitting to some cells (e.g. the labelled ones).
        """
        return cls.fit_transform(adata, layer=layer, is_log=is_log, n_top_genes=n_top_genes,
                                 cells=cells, batch_key=batch_key)[0]

    @classmethod
    def fit_transform(cls, adata: ad.AnnData, *, layer: str | None = None,
                      is_log: bool | None = None, n_top_genes: int = 2000,
                      cells: np.ndarray | None = None, batch_key: str | None = None
                      ) -> tuple[Preprocessor, sp.csr_matrix]:
        """:meth:`fit`, also returning the fitted cells' log-normalised values at the model
        genes (what :meth:`log_normalised` would give for them, computed once)."""
        check_names(adata)
        x = get_matrix(adata, layer)
        what = f"adata.layers[{layer!r}]" if layer else "adata.X"
        check_matrix_values(x, what=what)
        check_no_empty_cells(x, what=what)
        kind = detect_input_kind(x, is_log=is_log, what=what)
        if cells is not None:
            x = x[np.asarray(cells)]
        logx = log_normalise(x, kind=kind)
        genes = cls._highly_variable(adata, logx, n_top_genes=n_top_genes, cells=cells,
                                     batch_key=batch_key)
        pos = adata.var_names.get_indexer(genes)
        picked = logx[:, pos].tocsr()
        mean, sd = sparse_mean_sd(picked)
        logger.info("reference: %s, %d cells, %d of %d genes selected", kind, x.shape[0],
                    len(genes), adata.n_vars)
        pre = cls(input_kind=kind, genes=list(map(str, genes)),
                  size_genes=list(map(str, adata.var_names)) if kind == "counts" else None,
                  mean=mean, sd=sd)
        return pre, picked

    @staticmethod
    def _highly_variable(adata: ad.AnnData, logx: sp.csr_matrix, *, n_top_genes: int,
                         cells: np.ndarray | None, batch_key: str | None) -> list[str]:
        _, sd = sparse_mean_sd(logx)
        variable = np.asarray(logx.getnnz(axis=0) > 0) & (sd > 0)
        names = adata.var_names[variable]
        if n_top_genes <= 0 or variable.sum() <= n_top_genes:
            return list(names)
        obs = adata.obs if cells is None else adata.obs[np.asarray(cells)]
        tmp = ad.AnnData(X=logx[:, variable], obs=obs[[batch_key]] if batch_key else None)
        tmp.var_names = names
        sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat",
                                    batch_key=batch_key, subset=False)
        return list(tmp.var_names[tmp.var["highly_variable"].to_numpy()])

    # ------------------------------------------------------------------ applying
    def log_normalised(self, adata: ad.AnnData, *, layer: str | None = None,
                       is_log: bool | None = None, min_gene_overlap: float = 0.5,
                       what: str = "query") -> tuple[sp.csr_matrix, np.ndarray, float]:
        """Log-normalised values of ``adata`` at the model genes.

        Returns the sparse matrix (cells x model genes; missing genes are zero columns), a bool
        mask of missing model genes, and the gene overlap.
        """
        check_names(adata)
        x = get_matrix(adata, layer)
        where = f"{what} " + (f"layers[{layer!r}]" if layer else "X")
        check_matrix_values(x, what=where)
        check_no_empty_cells(x, what=where)
        pos, overlap = align_genes(adata.var_names, self.genes, min_overlap=min_gene_overlap,
                                   what=what)
        kind = detect_input_kind(x, is_log=is_log, what=where)
        if kind != self.input_kind:
            logger.warning("the reference held %s but the %s holds %s; both are brought to "
                           "log-normalised values", self.input_kind, what, kind)
        size_mask = None
        if kind == "counts" and self.size_genes is not None:
            size_mask = adata.var_names.isin(self.size_genes)
            if size_mask.all():
                size_mask = None
        # normalise on the query's own genes, then pick and order the model genes
        logx = log_normalise(x, kind=kind, size_mask=size_mask, target_sum=self.target_sum)
        picked = (logx @ selection_matrix(pos, adata.n_vars)).tocsr()
        return picked, pos < 0, overlap

    def standardise(self, x: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
        """(x - mean) / sd clipped to ``[-clip, clip]``; missing genes set to 0 (the mean)."""
        z = (np.asarray(x, dtype=np.float32) - self.mean) / self.sd
        if missing is not None and missing.any():
            z[:, missing] = 0.0
        return np.clip(z, -self.clip, self.clip, out=z)

    # ------------------------------------------------------------------ storage
    def to_config(self) -> dict:
        """JSON-able part (arrays go to safetensors)."""
        return {"input_kind": self.input_kind, "genes": self.genes,
                "size_genes": self.size_genes, "clip": self.clip,
                "target_sum": self.target_sum, "extra": self.extra}

    def tensors(self) -> dict[str, np.ndarray]:
        return {"preprocess.mean": self.mean, "preprocess.sd": self.sd}

    @classmethod
    def from_config(cls, cfg: dict, tensors: dict[str, np.ndarray]) -> Preprocessor:
        return cls(input_kind=cfg["input_kind"], genes=list(cfg["genes"]),
                   size_genes=cfg.get("size_genes"), mean=np.asarray(tensors["preprocess.mean"]),
                   sd=np.asarray(tensors["preprocess.sd"]), clip=float(cfg["clip"]),
                   target_sum=float(cfg["target_sum"]), extra=dict(cfg.get("extra", {})))
