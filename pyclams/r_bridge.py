"""Bridges between pyclams and R: Seurat / SingleCellExperiment objects and ``.rds`` files.

Two sides, both optional:

* **rpy2** (``pip install "pyclams[r]"``; needs R with Seurat, SingleCellExperiment and the R
  package ``pyclams``): read and write ``.rds`` files from Python, convert Seurat objects to
  AnnData and back, and write pyclams annotations into a Seurat object
  (:func:`read_rds`, :func:`seurat_to_anndata`, :func:`anndata_to_seurat`,
  :func:`write_annotations_to_seurat`, :func:`annotate_rds`, :func:`save_rds`,
  :func:`as_dgcmatrix`). There is no R code here: a Seurat object becomes a
  SingleCellExperiment with ``Seurat::as.SingleCellExperiment`` and then an AnnData with
  anndata2ri, and results are written by the installed R package's own functions (those of
  ``RunCLAMS``), so that the meta data columns, the reduction, ``Misc`` and the command log
  are the same whichever language annotated the object.
* **reticulate** (the R package ``pyclams``): the helpers that ``RunCLAMS``, ``TrainCLAMS`` and
  ``LoadCLAMS`` call (:mod:`pyclams._r_reticulate`, re-exported here).

Nothing here is imported by ``import pyclams``; rpy2 is imported on first use.

Examples
--------
>>> from pyclams import r_bridge
>>> df = r_bridge.annotate_rds("query.rds", "annotated.rds", "my_model")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._logging import logger
from ._r_reticulate import (
    anndata_from_csc,
    anndata_parts,
    fit_for_r,
    infer_for_r,
    new_model,
    plain_result,
)
from ._r_rpy2 import (
    as_dgcmatrix,
    call,
    inherits,
    pyclams_r,
    r_console,
    r_message,
    r_namespace,
    robjects,
    to_r,
)
from .errors import PyClamsInputError
from .result import RESULT_FIELDS, UNKNOWN, AnnotationResult

if TYPE_CHECKING:  # pragma: no cover
    from .model import CLAMS

__all__ = ["RESULT_COLUMNS", "UNKNOWN", "anndata_from_csc", "anndata_parts",
           "anndata_to_seurat", "annotate_rds", "as_dgcmatrix", "fit_for_r", "infer_for_r",
           "new_model", "plain_result", "read_rds", "save_rds", "seurat_to_anndata",
           "write_annotations_to_seurat"]

#: the per-cell fields written as ``<prefix>_<field>`` (:data:`pyclams.result.RESULT_FIELDS`)
RESULT_COLUMNS = RESULT_FIELDS

#: SingleCellExperiment assay of each Seurat slot / layer (``Seurat::as.SingleCellExperiment``)
_SCE_ASSAY = {"counts": "counts", "data": "logcounts", "scale.data": "scaledata"}


# ============================================================================ .rds files
def read_rds(path: str | os.PathLike):
    """Read an ``.rds`` file into an rpy2 R object (a Seurat object, usually)."""
    p = Path(path)
    if not p.exists():
        raise PyClamsInputError(f"{path}: no such file")
    r_namespace("SeuratObject")  # the classes of what the file holds
    try:
        with r_console():
            return robjects().baseenv["readRDS"](str(p))
    except Exception as err:  # rpy2's RRuntimeError  # noqa: BLE001
        raise PyClamsInputError(f"{path} cannot be read as an .rds file: "
                                f"{r_message(err)}") from None


def save_rds(robj, path: str | os.PathLike) -> Path:
    """Write an R object to ``path`` with ``saveRDS``: to a temporary file beside it, renamed
    on success (an existing file is replaced only by a complete one)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        call(robjects().baseenv["saveRDS"], robj, tmp)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


# ============================================================================ conversion
def seurat_to_anndata(robj, assay: str | None = "RNA", layer: str = "counts") -> ad.AnnData:
    """Convert a Seurat (or SingleCellExperiment) object to AnnData.

    A Seurat object becomes a SingleCellExperiment with ``Seurat::as.SingleCellExperiment``
    (``assay`` only), which anndata2ri converts.

    Parameters
    ----------
    robj
        rpy2 object: a Seurat object (v4; v5 through Seurat's own conversion) or a
        SingleCellExperiment.
    assay
        Seurat assay (``None``: the default assay).
    layer
        Slot / layer that becomes ``X``: ``"counts"``, ``"data"`` (log-normalised values;
        assay ``logcounts`` of a SingleCellExperiment) or ``"scale.data"``.

    Returns
    -------
    anndata.AnnData
        ``X``: the chosen layer (sparse ones as CSR float64, values exact); ``layers``: the
        other slots under their Seurat names (``"counts"``, ``"data"``, ``"scale.data"``);
        ``obs``: ``meta.data`` (factors become categoricals; Seurat adds ``ident``);
        ``obsm["X_<name>"]``: each reduction's embeddings; ``uns["seurat"]``: assay and layer.
    """
    if inherits(robj, "Seurat"):
        so = r_namespace("SeuratObject")
        have = [str(a) for a in so["Assays"](robj)]
        used = assay or str(so["DefaultAssay"](robj)[0])
        if used not in have:
            raise PyClamsInputError(f"assay {used!r} not found; the object has {have}")
        sce = call(r_namespace("Seurat")["as.SingleCellExperiment"], robj, assay=used)
    elif inherits(robj, "SingleCellExperiment"):
        sce, used = robj, None
    else:
        classes = list(robjects().baseenv["class"](robj))
        raise PyClamsInputError(f"expected a Seurat or SingleCellExperiment object, got {classes}")
    adata = _sce_to_anndata(sce, layer)
    adata.uns["seurat"] = {"assay": used, "layer": layer} if used else {"layer": layer}
    return adata


def _sce_to_anndata(sce, layer: str) -> ad.AnnData:
    """anndata2ri's conversion, with the assay of ``layer`` as ``X``."""
    try:
        import anndata2ri
        from rpy2.robjects.conversion import localconverter
    except ImportError as err:  # pragma: no cover
        raise ImportError("the conversion needs anndata2ri: pip install 'pyclams[r]'") from err
    names = [str(n) for n in r_namespace("SummarizedExperiment")["assayNames"](sce)]
    want = _SCE_ASSAY.get(layer, layer)
    if want not in names:
        raise PyClamsInputError(f"layer {layer!r} (assay {want!r}) is not in the object: it "
                                f"has the assays {names}")
    ro = robjects()
    with r_console(), localconverter(anndata2ri.converter):
        adata = ro.conversion.rpy2py(sce)
    mats = dict(zip(names, [adata.X, *(adata.layers[n] for n in names[1:])], strict=True))
    seurat_name = {v: k for k, v in _SCE_ASSAY.items()}
    x = mats.pop(want)
    adata.X = x.tocsr().astype(np.float64) if sp.issparse(x) else np.asarray(x, np.float64)
    adata.layers.clear()
    for name, m in mats.items():
        adata.layers[seurat_name.get(name, name)] = m
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    _restore_logicals(adata.obs, r_namespace("SummarizedExperiment")["colData"](sce))
    return adata


def _restore_logicals(obs: pd.DataFrame, col_data) -> None:
    """Logical columns of ``col_data`` as booleans in ``obs`` (in place).

    anndata2ri hands R logicals over as int32 0 / 1, with NA as -2147483648; they become
    ``bool`` columns, or pandas' nullable ``"boolean"`` where R has NA.
    """
    base = robjects().baseenv
    for name in (str(n) for n in base["colnames"](col_data)):
        if name not in obs.columns:
            continue
        column = base["[["](col_data, name)
        if not bool(base["is.logical"](column)[0]):
            continue
        missing = np.asarray(base["is.na"](column), dtype=bool)
        values = np.asarray(column).astype(np.int64) == 1
        obs[name] = (pd.array(np.where(missing, None, values), dtype="boolean")
                     if missing.any() else values)


def _obs_to_r(obs: pd.DataFrame):
    """``obs`` as an R data.frame (categoricals -> factors, missing values -> NA)."""
    from rpy2.robjects import pandas2ri
    from rpy2.robjects.conversion import localconverter

    df = obs.copy()
    for col in df.columns:
        v = df[col]
        if isinstance(v.dtype, pd.CategoricalDtype):
            df[col] = v.cat.rename_categories([str(c) for c in v.cat.categories])
        elif pd.api.types.is_integer_dtype(v.dtype):  # R integers have 32 bits
            df[col] = v.astype("float64") if v.isna().any() else v.to_numpy(dtype=np.int32)
        elif pd.api.types.is_bool_dtype(v.dtype) and not v.isna().any():
            df[col] = v.to_numpy(dtype=bool)
        elif not pd.api.types.is_numeric_dtype(v.dtype):
            df[col] = [None if pd.isna(e) else str(e) for e in v.astype(object)]
    df.index = [str(i) for i in df.index]
    ro = robjects()
    with localconverter(ro.default_converter + pandas2ri.converter):
        return ro.conversion.py2rpy(df)


def anndata_to_seurat(adata: ad.AnnData, *, layer: str | None = None, assay: str = "RNA",
                      project: str = "pyclams"):
    """Build a Seurat object (counts + ``meta.data``) from an AnnData.

    ``X`` (or ``layers[layer]``) must hold counts; it becomes the ``counts`` of ``assay``
    (a dgCMatrix from :func:`as_dgcmatrix`: values exact, cells and genes keep their names)
    and ``obs`` becomes ``meta.data`` (``SeuratObject::CreateSeuratObject``). Seurat replaces
    underscores in gene names by dashes (a warning says so).
    """
    x = adata.X if layer is None else adata.layers[layer]
    if any("_" in g for g in adata.var_names):
        logger.warning("Seurat replaces '_' by '-' in gene names: some names will change")
    counts = as_dgcmatrix(x, adata.var_names, adata.obs_names)
    meta = _obs_to_r(adata.obs) if adata.obs.shape[1] else robjects().NULL
    return call(r_namespace("SeuratObject")["CreateSeuratObject"], counts=counts,
                 assay=assay, project=project, **{"meta.data": meta, "min.cells": 0,
                                                  "min.features": 0})


# ============================================================================ annotation
def _write_seurat(robj, result: AnnotationResult, prefix: str, *, overwrite: bool,
                  reduction: bool, settings=None, model_path: str | None = None,
                  info: dict[str, Any] | None = None):
    """Write ``result`` into Seurat object ``robj`` with the R package's functions: the
    engine's data frame (``.as_results``) written by ``.write_seurat_results``, as
    ``RunCLAMS`` does. ``settings``: the run (R's ``.run_settings``), recorded in ``Misc``;
    else ``info`` is."""
    pkg = pyclams_r()
    plain = to_r(plain_result(result))
    if settings is None:
        results = call(pkg[".as_results"], plain)
        return call(pkg[".write_seurat_results"], robj, results, prefix, overwrite,
                     reduction, info=to_r(info))
    ro = robjects()
    path = ro.StrVector([model_path if model_path else ro.NA_Character])
    results = call(pkg[".as_results"], plain, settings, **{"model.path": path})
    return call(pkg[".write_seurat_results"], robj, results, prefix, overwrite, reduction)


def write_annotations_to_seurat(robj, df: pd.DataFrame, key_added: str = "clams", *,
                                overwrite: bool = False, classes: list[str] | None = None,
                                embedding: np.ndarray | None = None,
                                misc: dict[str, Any] | None = None, prefix: str | None = None):
    """Return a copy of Seurat object ``robj`` with the pyclams columns in ``meta.data``.

    Parameters
    ----------
    robj
        rpy2 Seurat object (not modified: R objects are copied on change).
    df
        :meth:`CLAMS.predict`'s DataFrame, indexed by the object's cell names (any order).
    key_added
        Column prefix, as in :meth:`CLAMS.annotate` (R calls it ``prefix``):
        ``<key_added>_<field>`` for each of :data:`~pyclams.result.RESULT_FIELDS`.
    overwrite
        Replace existing columns / reduction of those names (else an error).
    classes
        Factor levels (default: the categories of ``df["label_raw"]``, else the labels seen).
    embedding
        Optional cells x d array (rows in ``df``'s order): stored as a reduction named
        ``prefix``.
    misc
        Optional dict stored in ``Misc(object, key_added)`` (with a command log entry).
    prefix
        Older name of ``key_added`` (still accepted).
    """
    key_added = prefix or key_added
    missing = [c for c in RESULT_FIELDS if c not in df.columns]
    if missing:
        raise PyClamsInputError(f"df lacks the result column(s) {missing}")
    cells = [str(c) for c in robjects().baseenv["colnames"](robj)]
    idx = pd.Index([str(i) for i in df.index])
    if len(cells) != len(idx) or not idx.is_unique or set(cells) != set(idx):
        raise PyClamsInputError("df must hold exactly one row per cell of the Seurat object "
                                f"({len(cells)} cells, {len(idx)} rows)")
    order = idx.get_indexer(cells)
    d = df.iloc[order]
    raw = d["label_raw"]
    if classes is None:
        classes = ([str(c) for c in raw.cat.categories]
                   if isinstance(raw.dtype, pd.CategoricalDtype) else sorted(set(map(str, raw))))
    n = len(cells)
    emb = np.zeros((n, 0)) if embedding is None else np.asarray(embedding)[order]
    result = AnnotationResult(
        pd.Index(cells), list(classes), d["label"].astype(str).to_numpy(object),
        raw.astype(str).to_numpy(object), d["confidence"].to_numpy(np.float64),
        d["log_px"].to_numpy(np.float64), d["ood_pvalue"].to_numpy(np.float64),
        d["is_ood"].to_numpy(bool), np.full((n, len(classes)), np.nan), emb)
    return _write_seurat(robj, result, key_added, overwrite=overwrite,
                         reduction=embedding is not None, info=misc)


def annotate_rds(in_rds: str | os.PathLike, out_rds: str | os.PathLike,
                 model: CLAMS | str | os.PathLike, *, assay: str | None = None,
                 layer: str = "counts", key_added: str = "clams", overwrite: bool = False,
                 reduction: bool = True, prefix: str | None = None, **kwargs) -> pd.DataFrame:
    """Annotate the Seurat object in ``in_rds`` and write it, annotated, to ``out_rds``.

    What R's ``RunCLAMS(object, model = model)`` writes, written by the same R functions:
    meta data columns ``<key_added>_<field>``, the reduction ``key_added``,
    ``Misc(object, key_added)`` and the command log entry ``RunCLAMS.<assay>.<key_added>``.

    Parameters
    ----------
    in_rds, out_rds
        Input and output ``.rds`` files (they may be the same file).
    model
        A :class:`~pyclams.CLAMS` or a model directory.
    assay, layer
        Where the counts are (``layer="data"``: log-normalised values, ``is_log=True``).
    key_added, overwrite
        Column prefix, as in :meth:`CLAMS.annotate` (R's ``prefix``), and whether existing
        columns may be replaced. ``prefix`` is still accepted as the older name.
    reduction
        Also store the penultimate-layer embedding as a reduction named ``key_added``.
    **kwargs
        Passed to :meth:`CLAMS.infer` (``ood`` or ``ood_fdr``, ``ood_method``,
        ``calibration``, ``min_confidence``; ``min_gene_overlap``; ``is_log``).

    Returns
    -------
    pandas.DataFrame
        :meth:`CLAMS.predict`'s table. The output file is written only when everything
        succeeded.
    """
    from .model import CLAMS
    from .ood.options import OODOptions

    key_added = prefix or key_added
    if not isinstance(model, CLAMS):
        model = CLAMS.load(model)
    model_path = model.path_
    robj = read_rds(in_rds)
    if not inherits(robj, "Seurat"):
        raise PyClamsInputError(f"{in_rds} does not hold a Seurat object")
    pkg = pyclams_r()
    try:  # refuse before computing, as RunCLAMS does
        call(pkg[".check_seurat_clash"], robj, key_added, overwrite, reduction,
              fields=to_r(list(RESULT_FIELDS)))
    except PyClamsInputError as err:
        raise PyClamsInputError(f"{err} (Python: overwrite=True; command line: "
                                "--overwrite)") from None
    adata = seurat_to_anndata(robj, assay=assay, layer=layer)
    if layer == "data" and kwargs.get("is_log") is None:
        kwargs["is_log"] = True
    ood = OODOptions.from_kwargs(kwargs.pop("ood", None), ood_method=kwargs.pop("ood_method", None),
                                 ood_fdr=kwargs.pop("ood_fdr", None),
                                 calibration=kwargs.pop("calibration", None),
                                 min_confidence=kwargs.pop("min_confidence", None),
                                 n_neighbors=kwargs.pop("n_neighbors", None),
                                 label_mode=kwargs.pop("label_mode", None))
    if kwargs.get("min_gene_overlap") is None:
        kwargs["min_gene_overlap"] = 0.5
    result = model.infer(adata, ood=ood, **kwargs)
    settings = call(pkg[".run_settings"], layer=layer, device=str(model.device),
                     seed=robjects().NULL, verbose=False, assay=adata.uns["seurat"]["assay"],
                     **{"ood.fdr": ood.fdr, "ood.method": ood.method,
                        "calibration": ood.calibration, "min.confidence": ood.min_confidence,
                        "n.neighbors": ood.n_neighbors, "label.mode": ood.label_mode,
                        "min.gene.overlap": float(kwargs["min_gene_overlap"])})
    annotated = _write_seurat(robj, result, key_added, overwrite=overwrite, reduction=reduction,
                              settings=settings, model_path=model_path)
    save_rds(annotated, out_rds)
    logger.info("annotated %d cells of %s (%d flagged OOD) -> %s", result.n_cells, in_rds,
                result.n_ood, out_rds)
    return result.to_frame()
