"""Bridges between pyclams and R: Seurat / SingleCellExperiment objects and ``.rds`` files.

Two sides, both optional:

* **rpy2** (``pip install "pyclams[r]"``; needs R with SeuratObject): read and write ``.rds``
  files from Python, convert Seurat objects to AnnData and back, and write pyclams annotations
  into a Seurat object's ``meta.data`` (:func:`read_rds`, :func:`seurat_to_anndata`,
  :func:`anndata_to_seurat`, :func:`write_annotations_to_seurat`, :func:`annotate_rds`,
  :func:`save_rds`).
* **reticulate** (the R package ``pyclams``): small helpers that the R functions ``RunCLAMS``,
  ``TrainCLAMS`` and ``LoadCLAMS`` call, so that only plain vectors, data frames and dense
  arrays cross the language boundary (:func:`anndata_from_csc`, :func:`fit_for_r`,
  :func:`infer_for_r`, :func:`anndata_parts`).

Nothing here is imported by ``import pyclams``; rpy2 is imported on first use. Counts travel
as the three arrays of a compressed sparse column matrix (values, row indices, column
pointers), never as a dense copy.

Examples
--------
>>> from pyclams import r_bridge
>>> df = r_bridge.annotate_rds("query.rds", "annotated.rds", "my_model")  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._logging import logger
from ._version import __version__
from .errors import PyClamsInputError

if TYPE_CHECKING:  # pragma: no cover
    from .model import CLAMS

#: metadata columns written by ``RunCLAMS`` / :func:`write_annotations_to_seurat`
RESULT_COLUMNS = ("label", "label_raw", "confidence", "log_px", "ood_pvalue", "is_ood")
UNKNOWN = "unknown"


# ============================================================================ reticulate side
def anndata_from_csc(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_genes: int,
                     n_cells: int, genes: list[str], cells: list[str],
                     obs: dict[str, Any] | None = None) -> ad.AnnData:
    """AnnData (cells x genes, CSR) from the slots of an R ``dgCMatrix`` (genes x cells).

    Parameters
    ----------
    data, indices, indptr
        The ``x``, ``i`` and ``p`` slots of the genes x cells ``dgCMatrix``.
    n_genes, n_cells
        Its dimensions.
    genes, cells
        Row and column names.
    obs
        Optional per-cell columns (equal-length sequences). A value ``None`` stands for a
        missing label (R's ``NA``).

    Returns
    -------
    anndata.AnnData
        ``X`` is the transposed matrix as CSR: the transpose of a CSC matrix is a CSR matrix
        over the same three arrays, so no dense copy is ever made.
    """
    n_genes, n_cells = int(n_genes), int(n_cells)
    genes, cells = _as_str_list(genes), _as_str_list(cells)
    if len(genes) != n_genes or len(cells) != n_cells:
        raise PyClamsInputError(f"the matrix is {n_genes} x {n_cells} but has {len(genes)} gene "
                                f"and {len(cells)} cell names")
    x = sp.csc_matrix((np.asarray(data, dtype=np.float64),
                       np.asarray(indices, dtype=np.int32).ravel(),
                       np.asarray(indptr, dtype=np.int64).ravel()), shape=(n_genes, n_cells))
    frame = pd.DataFrame(index=pd.Index(cells))
    for key, values in (obs or {}).items():
        values = [values] if isinstance(values, str | int | float) else list(values)
        if len(values) != n_cells:
            raise PyClamsInputError(f"obs column {key!r} has {len(values)} values for "
                                    f"{n_cells} cells")
        frame[str(key)] = pd.Series(values, index=frame.index, dtype=object)
    return ad.AnnData(X=x.T.tocsr(), obs=frame, var=pd.DataFrame(index=pd.Index(genes)))


def _as_str_list(values: Any) -> list[str]:
    if isinstance(values, str):
        return [values]
    return [str(v) for v in values]


def _coerce(cls: type, values: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """Turn R numbers (always doubles) into the field types of dataclass ``cls``."""
    if not values:
        return {}
    known = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in dict(values).items():
        if key not in known:
            raise PyClamsInputError(f"unknown {what} setting {key!r}; known: {sorted(known)}")
        f = known[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        if value is None:
            out[key] = None
        elif isinstance(default, bool):
            out[key] = bool(value)
        elif isinstance(default, int):
            out[key] = _whole(value, f"{what}.{key}")
        elif isinstance(default, tuple):
            seq = [value] if np.isscalar(value) else list(value)
            out[key] = tuple(_whole(v, f"{what}.{key}") for v in seq)
        elif isinstance(default, float) or "float" in str(f.type):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def _whole(value: Any, what: str) -> int:
    v = float(value)
    if not np.isfinite(v) or v != round(v):
        raise PyClamsInputError(f"{what} must be a whole number, not {value!r}")
    return int(round(v))


def new_model(options: dict[str, Any] | None = None) -> CLAMS:
    """A :class:`~pyclams.CLAMS` from the options list of R's ``clams_options()``.

    ``options`` holds ``preset``, ``n_top_genes`` and the dicts ``network``, ``train``,
    ``sgld`` and ``generative`` (field names of the Python configuration classes).
    """
    from .ebm.losses import GenerativeLossConfig
    from .ebm.sgld import SGLDConfig
    from .model import CLAMS, NetworkConfig
    from .training.trainer import TrainConfig

    opts = dict(options or {})
    return CLAMS(preset=str(opts.get("preset", "clams")),
                 n_top_genes=_whole(opts.get("n_top_genes", 2000), "n_top_genes"),
                 network=_coerce(NetworkConfig, opts.get("network"), "network") or None,
                 train=_coerce(TrainConfig, opts.get("train"), "train") or None,
                 sgld=_coerce(SGLDConfig, opts.get("sgld"), "sgld") or None,
                 generative=_coerce(GenerativeLossConfig, opts.get("generative"),
                                    "generative") or None)


def _quiet(verbose: bool):
    """Context manager: pyclams' logger at WARNING unless ``verbose``."""
    import contextlib
    import logging

    @contextlib.contextmanager
    def cm():
        old = logger.level
        if not verbose:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(old)
    return cm()


def fit_for_r(adata: ad.AnnData, *, labels_key: str, options: dict[str, Any] | None,
              path: str, is_log: bool | None = None, batch_key: str | None = None,
              seed: int = 0, device: str = "auto", verbose: bool = True,
              overwrite: bool = False) -> CLAMS:
    """Train a model for R's ``TrainCLAMS`` and save it to ``path`` (a model directory)."""
    model = new_model(options)
    with _quiet(bool(verbose)):
        model.fit(adata, labels_key=str(labels_key), is_log=is_log,
                  batch_key=None if batch_key is None else str(batch_key),
                  seed=_whole(seed, "seed"), device=str(device), verbose=bool(verbose))
        model.save(path, overwrite=bool(overwrite))
    return model


def infer_for_r(model: CLAMS, adata: ad.AnnData, *, is_log: bool | None = None,
                ood_fdr: float = 0.05, ood_method: str = "conformal",
                calibration: str = "class", min_confidence: float = 0.5,
                min_gene_overlap: float = 0.5, verbose: bool = True,
                as_frame: bool = True) -> dict[str, Any]:
    """Everything R's ``RunCLAMS`` writes, as plain data (nothing is written anywhere).

    Returns
    -------
    dict
        ``table``: :meth:`CLAMS.predict`'s DataFrame (float columns as float64; with
        ``as_frame=False`` a dict of columns, strings as lists, for reticulate);
        ``cells``: the cell names;
        ``embedding``: the penultimate layer (float64, cells x d); ``classes``;
        ``gene_overlap``; ``params``; ``model_id``; ``pyclams_version``; ``n_calibration``
        (held-out reference cells behind the conformal p-values).
    """
    with _quiet(bool(verbose)):
        r = model.infer(adata, is_log=is_log, ood_fdr=float(ood_fdr), ood_method=str(ood_method),
                        calibration=str(calibration), min_confidence=float(min_confidence),
                        min_gene_overlap=float(min_gene_overlap))
    table = pd.DataFrame({"label": r.label.astype(str), "label_raw": r.label_raw.astype(str),
                          "confidence": r.confidence.astype(np.float64),
                          "log_px": r.log_px.astype(np.float64),
                          "ood_pvalue": r.ood_pvalue.astype(np.float64),
                          "is_ood": r.is_ood.astype(bool)},
                         index=pd.Index([str(c) for c in r.obs_names]))
    for j, c in enumerate(model.classes):
        table[f"p_{c}"] = r.probabilities[:, j].astype(np.float64)
    out: Any = table
    if not as_frame:
        out = {col: (table[col].tolist() if table[col].dtype == object
                     else table[col].to_numpy()) for col in table.columns}
    return {"table": out, "cells": table.index.tolist(), "embedding": np.ascontiguousarray(r.embedding, dtype=np.float64),
            "classes": list(model.classes), "gene_overlap": float(r.gene_overlap),
            "params": {k: v for k, v in r.params.items() if v is not None},
            "model_id": model.model_id, "pyclams_version": __version__,
            "n_calibration": int(model.cal_scores.size), "diverged": bool(model.history_.diverged)}


def anndata_parts(adata: ad.AnnData | str, layer: str | None = None) -> dict[str, Any]:
    """The genes x cells CSC slots of ``adata.X`` (or a layer) for building an R dgCMatrix.

    ``adata`` may be a path to an ``.h5ad`` file. ``obs`` comes back as a dict of columns:
    numeric and boolean columns as arrays, all others as lists of strings (``None`` where
    missing), so that reticulate needs no pandas conversion.
    """
    if isinstance(adata, str | os.PathLike):
        adata = ad.read_h5ad(adata)
    x = adata.X if layer is None else adata.layers[layer]
    x = sp.csc_matrix(x.T) if sp.issparse(x) else sp.csc_matrix(np.asarray(x).T)
    x.sort_indices()
    obs: dict[str, Any] = {}
    for col in adata.obs.columns:
        v = adata.obs[col]
        if pd.api.types.is_numeric_dtype(v.dtype) or pd.api.types.is_bool_dtype(v.dtype):
            obs[str(col)] = v.to_numpy()
        else:
            obs[str(col)] = [None if pd.isna(e) else str(e) for e in v.astype(object)]
    return {"data": x.data.astype(np.float64), "indices": x.indices.astype(np.int32),
            "indptr": x.indptr.astype(np.int32), "shape": [int(s) for s in x.shape],
            "genes": [str(g) for g in adata.var_names], "cells": [str(c) for c in adata.obs_names],
            "obs": obs}


# ============================================================================== rpy2 side
_R_STATE: dict[str, Any] = {}

_R_CODE = r"""
list(
get_matrix = function(object, assay, layer) {
  if (inherits(object, "Seurat")) {
    if (is.null(assay)) assay <- SeuratObject::DefaultAssay(object)
    if (!assay %in% SeuratObject::Assays(object))
      stop("assay '", assay, "' not found; the object has: ",
           paste(SeuratObject::Assays(object), collapse = ", "), call. = FALSE)
    a <- object[[assay]]
    if (inherits(a, "Assay5")) {
      ld <- getExportedValue("SeuratObject", "LayerData")
      m <- ld(a, layer = layer)
    } else {
      m <- SeuratObject::GetAssayData(object, assay = assay, slot = layer)
    }
  } else {
    m <- object
  }
  if (!inherits(m, "dgCMatrix"))
    m <- methods::as(methods::as(methods::as(m, "dMatrix"), "generalMatrix"), "CsparseMatrix")
  list(x = m@x, i = m@i, p = m@p, dim = dim(m), rn = rownames(m), cn = colnames(m))
},
seurat_info = function(object, assay) {
  if (is.null(assay)) assay <- SeuratObject::DefaultAssay(object)
  red <- SeuratObject::Reductions(object)
  emb <- lapply(red, function(r) SeuratObject::Embeddings(object, reduction = r))
  names(emb) <- red
  list(assay = assay, meta = object[[]], reductions = emb)
},
create_seurat = function(x, i, p, dim, genes, cells, meta, assay, project) {
  m <- methods::new("dgCMatrix", x = as.numeric(x), i = as.integer(i), p = as.integer(p),
                    Dim = as.integer(dim), Dimnames = list(genes, cells))
  o <- SeuratObject::CreateSeuratObject(counts = m, assay = assay, project = project,
                                        min.cells = 0, min.features = 0)
  if (!is.null(meta) && ncol(meta) > 0) {
    rownames(meta) <- cells
    for (col in colnames(meta)) o@meta.data[[col]] <- meta[[col]]
  }
  o
},
write_results = function(object, prefix, label, label_raw, classes, confidence, log_px,
                         ood_pvalue, is_ood, overwrite, embedding, key, misc) {
  cols <- paste0(prefix, "_", c("label", "label_raw", "confidence", "log_px",
                                "ood_pvalue", "is_ood"))
  clash <- intersect(cols, colnames(object[[]]))
  if (length(clash) && !overwrite)
    stop("metadata column(s) ", paste(clash, collapse = ", "),
         " exist already; pass overwrite=True to replace them", call. = FALSE)
  if (!is.null(embedding) && prefix %in% SeuratObject::Reductions(object) && !overwrite)
    stop("a reduction named '", prefix, "' exists already; pass overwrite=True to replace it",
         call. = FALSE)
  vals <- list(factor(label, levels = c(classes, "unknown")),
               factor(label_raw, levels = classes), as.numeric(confidence),
               as.numeric(log_px), as.numeric(ood_pvalue), as.logical(is_ood))
  for (k in seq_along(cols)) object@meta.data[[cols[k]]] <- vals[[k]]
  if (!is.null(embedding)) {
    rownames(embedding) <- colnames(object)
    colnames(embedding) <- paste0(key, seq_len(ncol(embedding)))
    object[[prefix]] <- SeuratObject::CreateDimReducObject(
      embeddings = embedding, key = key, assay = SeuratObject::DefaultAssay(object))
  }
  if (!is.null(misc)) object@misc[[prefix]] <- misc
  object
}
)
"""


def _robjects():
    """rpy2's ``robjects``, imported on first use (R starts embedded in this process)."""
    try:
        import rpy2.rinterface as ri
        import rpy2.robjects as ro
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise ImportError(
            "the R bridge needs rpy2 and R: pip install 'pyclams[r]' (rpy2>=3.5.2,<3.6, "
            f"anndata2ri) and install R ({err})") from None
    if not _R_STATE.get("endr_unregistered"):
        # rpy2 ends R at exit; with reticulate loaded in the same R that can abort the
        # process (both try to finalise Python), so let the OS clean up instead.
        atexit.unregister(ri.endr)
        _R_STATE["endr_unregistered"] = True
    return ro


def _r_namespace(package: str):
    """The namespace of an R package (loaded on first use), as an rpy2 environment."""
    ro = _robjects()
    try:
        return ro.baseenv["loadNamespace"](package)
    except Exception as err:  # rpy2's RRuntimeError  # noqa: BLE001
        raise ImportError(f"the R package {package} cannot be loaded in the R that rpy2 uses: "
                          f"{str(err).strip()}") from None


def as_dgcmatrix(x: Any, genes: Any, cells: Any):
    """A cells x genes matrix as an R ``dgCMatrix`` of genes x cells (rpy2 object).

    Parameters
    ----------
    x
        Cells x genes: a scipy sparse matrix (any format) or a dense numpy array.
    genes, cells
        Names of the columns and rows of ``x``: the row and column names in R.

    Returns
    -------
    rpy2.robjects.RS4
        ``Matrix::dgCMatrix`` (genes x cells, float64 values). The CSR arrays of the cells x
        genes matrix are the CSC arrays of its transpose: sparse data are never made dense,
        and the three arrays are copied into R once.
    """
    import rpy2.rinterface as ri

    ro = _robjects()
    csr = sp.csr_matrix(x, dtype=np.float64)
    if csr is x or (sp.issparse(x) and csr.data is getattr(x, "data", None)):
        csr = csr.copy()  # canonical form below sorts in place: leave the caller's matrix be
    csr.sum_duplicates()
    csr.sort_indices()
    genes, cells = _as_str_list(genes), _as_str_list(cells)
    if csr.shape != (len(cells), len(genes)):
        raise PyClamsInputError(f"the matrix is {csr.shape[0]} cells x {csr.shape[1]} genes but "
                                f"has {len(cells)} cell and {len(genes)} gene names")
    if csr.nnz >= 2**31:
        raise PyClamsInputError(f"{csr.nnz} non-zero values: more than a dgCMatrix holds")
    _r_namespace("Matrix")
    vec = {"i": ri.IntSexpVector.from_memoryview(memoryview(csr.indices.astype(np.int32))),
           "p": ri.IntSexpVector.from_memoryview(memoryview(csr.indptr.astype(np.int32))),
           "x": ri.FloatSexpVector.from_memoryview(memoryview(csr.data))}
    dimnames = ro.baseenv["list"](ro.StrVector(genes), ro.StrVector(cells))
    return _r_namespace("methods")["new"]("dgCMatrix", **vec,
                                          Dim=ro.IntVector([len(genes), len(cells)]),
                                          Dimnames=dimnames)


def _r():
    """rpy2's ``robjects`` (imported on first use) and the bridge's R functions."""
    if "ro" not in _R_STATE:
        try:
            import rpy2.rinterface as ri
            import rpy2.robjects as ro
        except ImportError as err:  # pragma: no cover - depends on the machine
            raise ImportError(
                "the R bridge needs rpy2 and R: pip install 'pyclams[r]' (rpy2>=3.5.2,<3.6, "
                f"anndata2ri) and install R with the SeuratObject package ({err})") from None
        # rpy2 ends R at exit; with reticulate loaded in the same R that can abort the
        # process (both try to finalise Python), so let the OS clean up instead.
        atexit.unregister(ri.endr)
        ok = ro.r('isTRUE(requireNamespace("SeuratObject", quietly = TRUE))')[0]
        if not ok:
            raise ImportError("the R package SeuratObject is not installed in the R that rpy2 "
                              "uses (Debian: apt-get install r-cran-seuratobject)")
        _R_STATE["ro"] = ro
        _R_STATE["fn"] = ro.r(_R_CODE)
    return _R_STATE["ro"], _R_STATE["fn"]


def _r_str(ro, values) -> Any:
    return ro.StrVector([str(v) for v in values])


def _to_pandas(ro, rdf) -> pd.DataFrame:
    from rpy2.robjects import pandas2ri
    from rpy2.robjects.conversion import localconverter
    with localconverter(ro.default_converter + pandas2ri.converter):
        return ro.conversion.rpy2py(rdf)


def _to_r_frame(ro, df: pd.DataFrame):
    from rpy2.robjects import pandas2ri
    from rpy2.robjects.conversion import localconverter
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].astype(str).where(df[col].notna(), None)
    with localconverter(ro.default_converter + pandas2ri.converter):
        return ro.conversion.py2rpy(df)


def read_rds(path: str | os.PathLike):
    """Read an ``.rds`` file into an rpy2 R object (a Seurat object, usually)."""
    p = Path(path)
    if not p.exists():
        raise PyClamsInputError(f"{path}: no such file")
    ro, _ = _r()
    ro.r("suppressPackageStartupMessages(library(SeuratObject))")
    try:
        return ro.r["readRDS"](str(p))
    except Exception as err:  # rpy2's RRuntimeError
        raise PyClamsInputError(f"{path} cannot be read as an .rds file: {err}") from None


def save_rds(robj, path: str | os.PathLike) -> Path:
    """Write an R object to ``path`` with ``saveRDS``."""
    ro, _ = _r()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ro.r["saveRDS"](robj, str(p))
    return p


def _r_classes(ro, robj) -> list[str]:
    return list(ro.r["class"](robj))


def seurat_to_anndata(robj, assay: str | None = "RNA", layer: str = "counts") -> ad.AnnData:
    """Convert a Seurat (or SingleCellExperiment) object to AnnData.

    Parameters
    ----------
    robj
        rpy2 object: a Seurat object (v4 assays; v5 ``Assay5`` through ``LayerData``) or a
        SingleCellExperiment (converted by anndata2ri).
    assay
        Seurat assay (``None``: the default assay).
    layer
        Slot / layer that becomes ``X`` (``"counts"``; ``"data"`` for log-normalised values).

    Returns
    -------
    anndata.AnnData
        ``X``: the chosen layer as CSR float64 (values exact); ``layers["data"]``: the
        normalised data when ``layer="counts"`` and the object has it; ``obs``: ``meta.data``
        (factors become categoricals); ``obsm["X_<name>"]``: each reduction's embeddings;
        ``uns["seurat"]``: the assay used.
    """
    ro, fn = _r()
    classes = _r_classes(ro, robj)
    if "SingleCellExperiment" in classes or ro.r["is"](robj, "SingleCellExperiment")[0]:
        return _sce_to_anndata(ro, robj)
    if "Seurat" not in classes:
        raise PyClamsInputError(f"expected a Seurat or SingleCellExperiment object, got {classes}")
    info = fn.rx2("seurat_info")(robj, ro.NULL if assay is None else assay)
    assay_used = str(info.rx2("assay")[0])
    adata = _parts_to_anndata(fn.rx2("get_matrix")(robj, assay_used, layer))
    obs = _to_pandas(ro, info.rx2("meta"))
    obs.index = adata.obs_names
    adata.obs = obs
    if layer == "counts":
        try:
            data = _parts_to_anndata(fn.rx2("get_matrix")(robj, assay_used, "data"))
            if data.shape == adata.shape and (data.X != adata.X).nnz:
                adata.layers["data"] = data.X
        except Exception as err:  # no data layer: nothing to copy  # noqa: BLE001
            logger.debug("no data layer copied: %s", err)
    reds = info.rx2("reductions")
    for name, emb in zip(reds.names or [], reds, strict=False):
        adata.obsm[f"X_{name}"] = np.asarray(emb, dtype=np.float64)
    adata.uns["seurat"] = {"assay": assay_used, "layer": layer}
    return adata


def _parts_to_anndata(parts) -> ad.AnnData:
    dim = [int(d) for d in parts.rx2("dim")]
    return anndata_from_csc(np.asarray(parts.rx2("x"), dtype=np.float64),
                            np.asarray(parts.rx2("i"), dtype=np.int32),
                            np.asarray(parts.rx2("p"), dtype=np.int64), dim[0], dim[1],
                            list(parts.rx2("rn")), list(parts.rx2("cn")))


def _sce_to_anndata(ro, robj) -> ad.AnnData:
    try:
        import anndata2ri
        from rpy2.robjects.conversion import localconverter
    except ImportError as err:  # pragma: no cover
        raise ImportError("SingleCellExperiment conversion needs anndata2ri: "
                          "pip install 'pyclams[r]'") from err
    with localconverter(anndata2ri.converter):
        return ro.conversion.rpy2py(robj)


def anndata_to_seurat(adata: ad.AnnData, *, layer: str | None = None, assay: str = "RNA",
                      project: str = "pyclams"):
    """Build a Seurat object (counts + ``meta.data``) from an AnnData.

    ``X`` (or ``layers[layer]``) must hold counts; it becomes the ``counts`` of ``assay``
    (values exact, cells and genes keep their names) and ``obs`` becomes ``meta.data``.
    Seurat replaces underscores in gene names by dashes (a warning says so).
    """
    ro, fn = _r()
    x = adata.X if layer is None else adata.layers[layer]
    csc = sp.csc_matrix(x.T) if sp.issparse(x) else sp.csc_matrix(np.asarray(x).T)
    csc.sort_indices()
    if any("_" in g for g in adata.var_names):
        logger.warning("Seurat replaces '_' by '-' in gene names: some names will change")
    meta = _to_r_frame(ro, adata.obs) if adata.obs.shape[1] else ro.NULL
    from rpy2.robjects import numpy2ri
    from rpy2.robjects.conversion import localconverter
    with localconverter(ro.default_converter + numpy2ri.converter):
        x_r = ro.conversion.py2rpy(csc.data.astype(np.float64))
        i_r = ro.conversion.py2rpy(csc.indices.astype(np.int32))
        p_r = ro.conversion.py2rpy(csc.indptr.astype(np.int32))
    return fn.rx2("create_seurat")(x_r, i_r, p_r, ro.IntVector(list(csc.shape)),
                                   _r_str(ro, adata.var_names), _r_str(ro, adata.obs_names),
                                   meta, assay, project)


def write_annotations_to_seurat(robj, df: pd.DataFrame, prefix: str = "clams", *,
                                overwrite: bool = False, classes: list[str] | None = None,
                                embedding: np.ndarray | None = None,
                                misc: dict[str, Any] | None = None):
    """Return a copy of Seurat object ``robj`` with the pyclams columns in ``meta.data``.

    Parameters
    ----------
    robj
        rpy2 Seurat object (not modified: R objects are copied on change).
    df
        :meth:`CLAMS.predict`'s DataFrame, indexed by the object's cell names (any order).
    prefix
        Column prefix: ``<prefix>_label`` (factor, ``"unknown"`` for OOD cells),
        ``<prefix>_label_raw``, ``<prefix>_confidence``, ``<prefix>_log_px``,
        ``<prefix>_ood_pvalue``, ``<prefix>_is_ood`` (logical).
    overwrite
        Replace existing columns / reduction of those names (else an error).
    classes
        Factor levels (default: the ``p_<class>`` columns of ``df``, else the labels seen).
    embedding
        Optional cells x d array (rows in ``df``'s order): stored as a reduction named
        ``prefix``.
    misc
        Optional dict of scalars/strings stored in ``object@misc[[prefix]]``.
    """
    ro, fn = _r()
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise PyClamsInputError(f"df lacks the result column(s) {missing}")
    cells = [str(c) for c in ro.r["colnames"](robj)]
    idx = pd.Index([str(i) for i in df.index])
    if len(cells) != len(idx) or not idx.is_unique or not set(cells) == set(idx):
        raise PyClamsInputError("df must hold exactly one row per cell of the Seurat object "
                                f"({len(cells)} cells, {len(idx)} rows)")
    order = idx.get_indexer(cells)
    d = df.iloc[order]
    if classes is None:
        pcols = [c[2:] for c in d.columns if c.startswith("p_")]
        classes = pcols or sorted(set(map(str, d["label_raw"])))
    cols = [f"{prefix}_{c}" for c in RESULT_COLUMNS]
    clash = [c for c in cols if c in set(ro.r["colnames"](ro.r["slot"](robj, "meta.data")))]
    if not overwrite and clash:
        raise PyClamsInputError(f"metadata column(s) {', '.join(clash)} exist already; pass "
                                "overwrite=True (CLI: --overwrite) to replace them")
    if (not overwrite and embedding is not None
            and prefix in set(ro.r["names"](ro.r["slot"](robj, "reductions")))):
        raise PyClamsInputError(f"a reduction named {prefix!r} exists already; pass "
                                "overwrite=True (CLI: --overwrite) to replace it")
    key = "".join(ch for ch in prefix if ch.isalnum()) + "_"
    if key == "_":
        raise PyClamsInputError(f"prefix {prefix!r} needs at least one letter or digit")
    emb = ro.NULL
    if embedding is not None:
        e = np.asarray(embedding, dtype=np.float64)[order]
        emb = ro.r["matrix"](ro.FloatVector(e.ravel(order="F")), nrow=e.shape[0],
                             ncol=e.shape[1])
    misc_r = ro.NULL
    if misc:
        misc_r = ro.ListVector({str(k): _r_scalar(ro, v) for k, v in misc.items()})
    try:
        return fn.rx2("write_results")(
            robj, prefix, _r_str(ro, d["label"]), _r_str(ro, d["label_raw"]),
            _r_str(ro, classes), ro.FloatVector(d["confidence"].astype(float)),
            ro.FloatVector(d["log_px"].astype(float)),
            ro.FloatVector(d["ood_pvalue"].astype(float)),
            ro.BoolVector(d["is_ood"].astype(bool)), bool(overwrite), emb, key, misc_r)
    except Exception as err:  # rpy2's RRuntimeError carries R's message
        msg = str(err).replace("Error : ", "").strip()
        raise PyClamsInputError(msg) from None


def _r_scalar(ro, v: Any):
    if isinstance(v, bool | np.bool_):
        return ro.BoolVector([bool(v)])
    if isinstance(v, int | np.integer):
        return ro.IntVector([int(v)])
    if isinstance(v, float | np.floating):
        return ro.FloatVector([float(v)])
    if isinstance(v, list | tuple):
        return ro.StrVector([str(x) for x in v])
    return ro.StrVector([str(v)])


def annotate_rds(in_rds: str | os.PathLike, out_rds: str | os.PathLike,
                 model: CLAMS | str | os.PathLike, *, assay: str | None = None,
                 layer: str = "counts", prefix: str = "clams", overwrite: bool = False,
                 reduction: bool = True, **kwargs) -> pd.DataFrame:
    """Annotate the Seurat object in ``in_rds`` and write it, annotated, to ``out_rds``.

    Parameters
    ----------
    in_rds, out_rds
        Input and output ``.rds`` files (they may be the same file).
    model
        A :class:`~pyclams.CLAMS` or a model directory.
    assay, layer
        Where the counts are (``layer="data"``: log-normalised values, ``is_log=True``).
    prefix, overwrite
        Column prefix and whether existing columns may be replaced
        (see :func:`write_annotations_to_seurat`).
    reduction
        Also store the penultimate-layer embedding as a reduction named ``prefix``.
    **kwargs
        Passed to :meth:`CLAMS.infer` (``ood_fdr``, ``ood_method``, ``min_gene_overlap``, ...).

    Returns
    -------
    pandas.DataFrame
        :meth:`CLAMS.predict`'s table. The output file is written only when everything
        succeeded.
    """
    from .model import CLAMS

    if not isinstance(model, CLAMS):
        model = CLAMS.load(model)
    robj = read_rds(in_rds)
    adata = seurat_to_anndata(robj, assay=assay, layer=layer)
    if layer == "data" and kwargs.get("is_log") is None:
        kwargs["is_log"] = True
    res = infer_for_r(model, adata, **kwargs)
    df = res["table"]
    params = {k: v for k, v in res["params"].items() if isinstance(v, str | int | float | bool)}
    misc = {**params, "model_id": res["model_id"], "pyclams_version": res["pyclams_version"],
            "preset": model.preset, "classes": res["classes"],
            "gene_overlap": res["gene_overlap"], "assay": adata.uns["seurat"]["assay"],
            "layer": layer}
    annotated = write_annotations_to_seurat(robj, df, prefix, overwrite=overwrite,
                                            classes=res["classes"],
                                            embedding=res["embedding"] if reduction else None,
                                            misc=misc)
    save_rds(annotated, out_rds)
    n_ood = int(df["is_ood"].sum())
    logger.info("annotated %d cells of %s (%d flagged OOD) -> %s", len(df), in_rds, n_ood,
                out_rds)
    return df
