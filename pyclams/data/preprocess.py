"""Reference-fitted preprocessing: normalise total + log1p, highly variable genes, scaling.

The :class:`Preprocessor` is fitted once on the reference and stored in the model. It turns any
AnnData into a sparse log-normalised matrix over the model's genes; minibatches are then
standardised with the reference's per-gene mean and sd and clipped (see :mod:`.loader`). No whole
count matrix is ever densified.

One input scale whatever the data kind: raw counts become log1p of counts per 10,000 over the
reference's genes; log-normalised input (log1p CP10k, log2 CPM or TPM, ...) is first un-logged
with its detected base (:mod:`.scale`) and then normalised the same way. Models stored before
this (``harmonise`` absent from their config) keep passing log input through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

from .._logging import logger
from .blocks import in_memory, row_blocks
from .checks import (
    InputKind,
    check_leading_values,
    check_matrix_values,
    check_names,
    check_no_empty_cells,
    detect_input_kind,
    get_matrix,
    raise_empty_cells,
)
from .genes import align_genes
from .scale import base_name, detect_log_base, parse_log_base, unlog

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
                  target_sum: float = TARGET_SUM, log_base: float | None = None
                  ) -> sp.csr_matrix:
    """log1p(target_sum * counts / library size), sparse CSR float32.

    ``size_mask`` (bool over genes) restricts the library size to some genes, so that a query
    measured on more genes than the reference is scaled like the reference. Log input is
    un-logged with ``log_base`` and then normalised like counts; without ``log_base`` (models
    stored before harmonisation) it is returned as it is.
    """
    if kind == "log":
        if log_base is None:
            return _as_csr(x).astype(np.float32)
        return _normalise_log1p(unlog(_as_csr(x), log_base), size_mask, target_sum)
    x = _as_csr(x).astype(np.float32)
    totals = np.asarray(x @ size_mask.astype(np.float32) if size_mask is not None
                        else x.sum(axis=1)).ravel()
    totals[totals <= 0] = 1.0
    out = sp.diags((target_sum / totals).astype(np.float32)) @ x
    out = out.tocsr()
    np.log1p(out.data, out=out.data)
    return out


def pick_in_blocks(x, select: sp.csr_matrix, *, what: str, **normalise) -> sp.csr_matrix:
    """``log_normalise(x, **normalise) @ select`` computed a block of rows at a time, for a
    matrix on disk (a backed AnnData's): only the picked genes of all cells are held at once.

    Each block's values are checked on the way (:func:`~.checks.check_matrix_values`) and empty
    cells are counted over all blocks; the same errors as for a matrix in memory.
    """
    parts, n_empty = [], 0
    for _, _, block in row_blocks(x):
        check_matrix_values(block, what=what)
        n_empty += int(np.sum(np.asarray(block.sum(axis=1)).ravel() <= 0))
        if not n_empty:  # once a cell is empty the call fails: skip the work
            parts.append((log_normalise(block, **normalise) @ select).tocsr())
    raise_empty_cells(n_empty, what=what)
    if not parts:
        return sp.csr_matrix((0, select.shape[1]), dtype=np.float32)
    return sp.vstack(parts, format="csr")


def _normalise_log1p(v: sp.csr_matrix, size_mask: np.ndarray | None,
                     target_sum: float) -> sp.csr_matrix:
    """log1p(target_sum * v / total of v over ``size_mask``) of un-logged values (float64 in,
    float32 out)."""
    totals = np.asarray(v @ size_mask.astype(np.float64) if size_mask is not None
                        else v.sum(axis=1)).ravel()
    totals[totals <= 0] = 1.0
    out = (sp.diags(target_sum / totals) @ v).tocsr()
    np.log1p(out.data, out=out.data)
    return out.astype(np.float32)


def describe_input(x, *, is_log: bool | None = None, log_base: str | float | None = None,
                   what: str = "adata.X") -> dict[str, Any]:
    """What ``x`` holds: ``{"kind": "counts"/"log", "log_base": float or None,
    "log_base_source": "detected"/"guessed"/"given" or None}``.

    ``log_base`` (``"e"``, 2 or 10) is checked even for counts, where it is ignored.
    """
    given = parse_log_base(log_base)
    kind = detect_input_kind(x, is_log=is_log, what=what)
    if kind == "counts":
        if given is not None:
            logger.warning("%s holds counts: log_base=%r is ignored", what, log_base)
        return {"kind": kind, "log_base": None, "log_base_source": None}
    base, source = detect_log_base(x, log_base=given, what=what)
    return {"kind": kind, "log_base": base, "log_base_source": source}


def input_label(desc: dict[str, Any]) -> str:
    """``"counts"`` or e.g. ``"log-normalised (base 2, detected)"`` for :func:`describe_input`'s
    result."""
    if desc["kind"] == "counts" or desc.get("log_base") is None:
        return "counts" if desc["kind"] == "counts" else "log-normalised"
    return f"log-normalised (base {base_name(desc['log_base'])}, {desc['log_base_source']})"


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
    log_base, log_base_source
        The log base of a log-normalised reference and how it was found (``"detected"``,
        ``"guessed"``, ``"given"``); None for counts.
    harmonise
        Un-log log-normalised input and normalise it like counts (True for every model fitted
        now); False for models stored before, which pass log input through unchanged.
    last_input
        What the last :meth:`log_normalised` call was given (see :func:`describe_input`).
    """

    input_kind: InputKind
    genes: list[str]
    size_genes: list[str] | None
    mean: np.ndarray
    sd: np.ndarray
    clip: float = CLIP
    target_sum: float = TARGET_SUM
    extra: dict = field(default_factory=dict)
    log_base: float | None = None
    log_base_source: str | None = None
    harmonise: bool = True
    last_input: dict[str, Any] | None = field(default=None, init=False, repr=False,
                                              compare=False)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, adata: ad.AnnData, *, layer: str | None = None, is_log: bool | None = None,
            n_top_genes: int = 2000, cells: np.ndarray | None = None,
            batch_key: str | None = None, log_base: str | float | None = None
            ) -> Preprocessor:
        """Fit on the reference: detect counts vs log (and the log base), choose HVGs, store
        mean and sd.

        ``cells`` (bool mask) restricts fitting to some cells (e.g. the labelled ones).
        ``log_base`` (``"e"``, 2 or 10) sets the base of log-normalised input instead of
        detecting it.
        """
        return cls.fit_transform(adata, layer=layer, is_log=is_log, n_top_genes=n_top_genes,
                                 cells=cells, batch_key=batch_key, log_base=log_base)[0]

    @classmethod
    def fit_transform(cls, adata: ad.AnnData, *, layer: str | None = None,
                      is_log: bool | None = None, n_top_genes: int = 2000,
                      cells: np.ndarray | None = None, batch_key: str | None = None,
                      log_base: str | float | None = None
                      ) -> tuple[Preprocessor, sp.csr_matrix]:
        """:meth:`fit`, also returning the fitted cells' log-normalised values at the model
        genes (what :meth:`log_normalised` would give for them, computed once)."""
        check_names(adata)
        x = get_matrix(adata, layer)
        what = f"adata.layers[{layer!r}]" if layer else "adata.X"
        check_matrix_values(x, what=what)
        check_no_empty_cells(x, what=what)
        desc = describe_input(x, is_log=is_log, log_base=log_base, what=what)
        if cells is not None:
            x = x[np.asarray(cells)]
        logx = log_normalise(x, kind=desc["kind"], log_base=desc["log_base"])
        genes = cls._highly_variable(adata, logx, n_top_genes=n_top_genes, cells=cells,
                                     batch_key=batch_key)
        pos = adata.var_names.get_indexer(genes)
        picked = logx[:, pos].tocsr()
        mean, sd = sparse_mean_sd(picked)
        logger.info("reference: %s, %d cells, %d of %d genes selected", input_label(desc),
                    x.shape[0], len(genes), adata.n_vars)
        pre = cls(input_kind=desc["kind"], genes=list(map(str, genes)),
                  size_genes=list(map(str, adata.var_names)), mean=mean, sd=sd,
                  log_base=desc["log_base"], log_base_source=desc["log_base_source"])
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
                       what: str = "query", log_base: str | float | None = None
                       ) -> tuple[sp.csr_matrix, np.ndarray, float]:
        """Log-normalised values of ``adata`` at the model genes.

        Returns the sparse matrix (cells x model genes; missing genes are zero columns), a bool
        mask of missing model genes, and the gene overlap. What ``adata`` held (counts or log,
        and the log base) is left in :attr:`last_input`.
        """
        check_names(adata)
        x = get_matrix(adata, layer, load=False)  # a backed matrix stays on disk
        where = f"{what} " + (f"layers[{layer!r}]" if layer else "X")
        if in_memory(x):
            check_matrix_values(x, what=where)
            check_no_empty_cells(x, what=where)
        else:  # the leading rows the input kind is detected from (all rows are checked below)
            check_leading_values(x, what=where)
        pos, overlap = align_genes(adata.var_names, self.genes, min_overlap=min_gene_overlap,
                                   what=what)
        desc = describe_input(x, is_log=is_log, log_base=log_base, what=where)
        self.last_input = desc
        logger.info("%s: %s", what, input_label(desc))
        self._warn_mismatch(desc, what)
        kind = desc["kind"]
        size_mask = None
        if (kind == "counts" or self.harmonise) and self.size_genes is not None:
            size_mask = adata.var_names.isin(self.size_genes)
            if size_mask.all():
                size_mask = None
        # normalise on the query's own genes, then pick and order the model genes
        normalise = {"kind": kind, "size_mask": size_mask, "target_sum": self.target_sum,
                     "log_base": desc["log_base"] if self.harmonise else None}
        select = selection_matrix(pos, adata.n_vars)
        if in_memory(x):
            picked = (log_normalise(x, **normalise) @ select).tocsr()
        else:
            picked = pick_in_blocks(x, select, what=where, **normalise)
        return picked, pos < 0, overlap

    def reference_input(self) -> dict[str, Any]:
        """What the reference held, as :func:`describe_input` gives it."""
        return {"kind": self.input_kind, "log_base": self.log_base,
                "log_base_source": self.log_base_source}

    def _warn_mismatch(self, desc: dict[str, Any], what: str) -> None:
        """Warn when the query's kind (or log base) differs from the reference's."""
        ref = self.reference_input()
        if not self.harmonise:
            if desc["kind"] != ref["kind"]:
                logger.warning("the reference held %s but the %s holds %s; both are brought to "
                               "log-normalised values", ref["kind"], what, desc["kind"])
            return
        same_base = (desc["log_base"] is None or ref["log_base"] is None
                     or np.isclose(desc["log_base"], ref["log_base"]))
        if desc["kind"] != ref["kind"] or not same_base:
            logger.warning("the reference held %s but the %s holds %s; both are brought to "
                           "log1p of counts per 10,000", input_label(ref), what,
                           input_label(desc))

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
                "target_sum": self.target_sum, "extra": self.extra,
                "log_base": self.log_base, "log_base_source": self.log_base_source,
                "harmonise": self.harmonise}

    def tensors(self) -> dict[str, np.ndarray]:
        return {"preprocess.mean": self.mean, "preprocess.sd": self.sd}

    @classmethod
    def from_config(cls, cfg: dict, tensors: dict[str, np.ndarray]) -> Preprocessor:
        """The preprocessor stored by :meth:`to_config` and :meth:`tensors`; a config without
        ``harmonise`` (written before it existed) passes log input through unchanged."""
        base = cfg.get("log_base")
        return cls(input_kind=cfg["input_kind"], genes=list(cfg["genes"]),
                   size_genes=cfg.get("size_genes"), mean=np.asarray(tensors["preprocess.mean"]),
                   sd=np.asarray(tensors["preprocess.sd"]), clip=float(cfg["clip"]),
                   target_sum=float(cfg["target_sum"]), extra=dict(cfg.get("extra", {})),
                   log_base=None if base is None else float(base),
                   log_base_source=cfg.get("log_base_source"),
                   harmonise=bool(cfg.get("harmonise", False)))
