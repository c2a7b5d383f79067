"""The Python side of the R package ``pyclams`` (reticulate): what ``TrainCLAMS``,
``RunCLAMS`` and ``LoadCLAMS`` call.

Only plain data cross the language boundary: a matrix comes from R as the three slots of its
genes x cells ``dgCMatrix`` (never densified); results go back as the plain columns of
:meth:`pyclams.result.AnnotationResult.to_plain` plus what R needs to type them
(:func:`plain_result`). R imports these functions through :mod:`pyclams.r_bridge`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._logging import logger
from .errors import PyClamsInputError
from .result import RESULT_FIELDS, UNKNOWN, AnnotationResult

if TYPE_CHECKING:  # pragma: no cover
    from .model import CLAMS

__all__ = ["anndata_from_csc", "anndata_parts", "fit_for_r", "infer_for_r", "new_model",
           "plain_result"]


def as_str_list(values: Any) -> list[str]:
    """Names from R: reticulate hands a single name over as a plain string."""
    if isinstance(values, str):
        return [values]
    return [str(v) for v in values]


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
    genes, cells = as_str_list(genes), as_str_list(cells)
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


# ---------------------------------------------------------------------------- training
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


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """pyclams' logger at WARNING while the block runs, unless ``verbose``."""
    old = logger.level
    if not verbose:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def fit_for_r(adata: ad.AnnData, *, labels_key: str, options: dict[str, Any] | None,
              path: str, is_log: bool | None = None, batch_key: str | None = None,
              seed: int = 0, device: str = "auto", verbose: bool = True,
              overwrite: bool = False) -> CLAMS:
    """Train a model for R's ``TrainCLAMS`` and save it to ``path`` (a model directory)."""
    model = new_model(options)
    with quiet(bool(verbose)):
        model.fit(adata, labels_key=str(labels_key), is_log=is_log,
                  batch_key=None if batch_key is None else str(batch_key),
                  seed=_whole(seed, "seed"), device=str(device), verbose=bool(verbose))
        model.save(path, overwrite=bool(overwrite))
    return model


# ---------------------------------------------------------------------------- annotation
def plain_result(result: AnnotationResult) -> dict[str, Any]:
    """:meth:`AnnotationResult.to_plain` and what R needs to rebuild the typed columns.

    Added keys: ``fields`` (:data:`~pyclams.result.RESULT_FIELDS`, in order), ``levels``
    (the categories of each categorical field), ``probability_columns`` (the names of
    :meth:`~AnnotationResult.to_frame`'s probability columns), ``unknown`` and ``n_ood``. R's
    ``RunCLAMS`` and the rpy2 path (:func:`pyclams.r_bridge.annotate_rds`) both turn this into
    a data frame with the same R function, so R names no field itself.
    """
    frame = result.to_frame()
    plain = result.to_plain()
    plain["fields"] = list(RESULT_FIELDS)
    plain["levels"] = {f: [str(c) for c in frame[f].cat.categories] for f in RESULT_FIELDS
                       if isinstance(frame[f].dtype, pd.CategoricalDtype)}
    plain["probability_columns"] = [str(c) for c in frame.columns[len(RESULT_FIELDS):]]
    plain["unknown"] = UNKNOWN
    plain["n_ood"] = result.n_ood
    plain["info"] = {k: v for k, v in plain["info"].items() if v is not None}
    plain["info"]["params"] = {k: v for k, v in plain["info"].get("params", {}).items()
                               if v is not None}
    return plain


def infer_for_r(model: CLAMS, adata: ad.AnnData, *, is_log: bool | None = None,
                ood: dict[str, Any] | None = None, min_gene_overlap: float = 0.5,
                verbose: bool = True) -> dict[str, Any]:
    """Everything R's ``RunCLAMS`` writes, as :func:`plain_result` (nothing written anywhere).

    ``ood``: the OOD settings as R's list (``method``, ``fdr``, ``calibration``,
    ``min_confidence``, ``n_neighbors``, ``label_mode``; see
    :class:`~pyclams.ood.options.OODOptions`).
    """
    with quiet(bool(verbose)):
        result = model.infer(adata, is_log=is_log, ood=dict(ood or {}),
                             min_gene_overlap=float(min_gene_overlap))
    return plain_result(result)
