"""Input validation with errors a user can act on.

Nothing here modifies the AnnData it is given.
"""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._logging import logger
from ..errors import PyClamsInputError
from .blocks import in_memory, row_blocks
from .scale import clear_base, integer_errors

InputKind = Literal["counts", "log"]

#: largest value still read as log-normalised (log1p of CP10k stays below ~12, log2 CPM below ~20)
LOG_MAX_VALUE = 30.0
#: log1p of counts per 10,000 reaches at least ~4.6 in any cell (a gene at 1% of its counts);
#: log-normalised data whose largest value stays below this were most likely logged twice
TWICE_LOGGED_MAX = 3.0


def check_anndata(adata, *, what: str = "adata") -> ad.AnnData:
    """``adata`` if it is an AnnData with at least one cell and one gene."""
    if not isinstance(adata, ad.AnnData):
        hint = (" (wrap it: anndata.AnnData(X, obs=..., var=...), with cells as rows and gene "
                "names as var_names)" if isinstance(adata, np.ndarray | pd.DataFrame)
                or sp.issparse(adata) else "")
        raise PyClamsInputError(f"{what} must be an AnnData object, not "
                                f"{type(adata).__name__}{hint}")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise PyClamsInputError(f"{what} has {adata.n_obs} cells and {adata.n_vars} genes; "
                                "there is nothing to work on")
    return adata


def get_matrix(adata: ad.AnnData, layer: str | None, *, load: bool = True):
    """Return ``adata.X`` or ``adata.layers[layer]``, with a clear error if absent.

    A backed AnnData's matrix is read into memory (sparse stays sparse) unless ``load=False``,
    which returns the on-disk matrix as it is (read it with :func:`~.blocks.row_blocks`).
    float16 values are read as float32. Otherwise no copy is made.
    """
    check_anndata(adata)
    if layer is None:
        if adata.X is None:
            raise PyClamsInputError("adata.X is empty; pass layer= to use a layer instead")
        x = adata.X
    elif layer not in adata.layers:
        raise PyClamsInputError(
            f"layer {layer!r} not found; adata.layers has {sorted(adata.layers.keys()) or 'none'}")
    else:
        x = adata.layers[layer]
    if not in_memory(x):
        if not load:
            return x
        # backed mode: an on-disk sparse dataset (to_memory) or an h5py dataset
        x = x.to_memory() if hasattr(x, "to_memory") else np.asarray(x[()])
    if x.dtype == np.float16:
        x = x.astype(np.float32)
    return x


def _sample_values(x, max_values: int = 200_000) -> np.ndarray:
    """Up to ``max_values`` stored values of a (sparse or dense, in-memory or on-disk) matrix,
    read in row blocks from the first rows."""
    if sp.issparse(x):
        data = x.data if hasattr(x, "data") else sp.csr_matrix(x).data
        return np.asarray(data[:max_values])
    out, n = [], 0
    if not in_memory(x):  # on disk: the values a loaded copy would give, read block by block
        for _, _, block in row_blocks(x):
            if sp.issparse(block):
                out.append(block.data[:max_values - n])
            else:
                out.append(block.ravel())
            n += out[-1].size
            if n >= max_values:
                break
        return np.concatenate(out) if out else np.zeros(0)
    step = max(1, 4096 * 1000 // max(1, x.shape[1]))
    for start in range(0, x.shape[0], step):
        block = np.asarray(x[start:start + step]).ravel()
        out.append(block)
        n += block.size
        if n >= max_values:
            break
    return np.concatenate(out) if out else np.zeros(0)


def check_matrix_values(x, *, what: str = "adata.X") -> None:
    """Error on NaN, infinite or negative values (scanned in row blocks, never densified)."""
    step = 8192
    for start in range(0, x.shape[0], step):
        block = x[start:start + step]
        vals = block.data if sp.issparse(block) else np.asarray(block)
        if vals.size == 0:
            continue
        if not np.all(np.isfinite(vals)):
            raise PyClamsInputError(
                f"{what} contains NaN or infinite values; remove or impute them first")
        if vals.min() < 0:
            raise PyClamsInputError(
                f"{what} has negative values (min {vals.min():.3g}): it looks scaled or centred "
                "(e.g. by sc.pp.scale); pass the raw counts (layer='counts' or "
                "adata.raw.to_adata()) or the log-normalised values from before scaling")


def check_leading_values(x, *, what: str = "adata.X", max_values: int = 200_000) -> None:
    """:func:`check_matrix_values` over the leading row blocks of an on-disk matrix that hold
    the values :func:`detect_input_kind` samples (the other rows are checked as they are
    read)."""
    n = 0
    for _, _, block in row_blocks(x):
        check_matrix_values(block, what=what)
        n += block.nnz if sp.issparse(block) else block.size
        if n >= max_values:
            break


def is_raw_counts(x) -> bool:
    """Whether ``x`` holds raw counts: its stored nonzero values (a sample of up to 200,000,
    read in row blocks) are non-negative integers. False for a matrix without nonzero values."""
    vals = _sample_values(x)
    vals = vals[vals != 0]
    return bool(vals.size and np.all(vals > 0) and np.all(np.mod(vals, 1) == 0))


def detect_input_kind(x, *, is_log: bool | None = None, what: str = "adata.X") -> InputKind:
    """Decide whether ``x`` holds raw counts or log-normalised values.

    Raw counts are integer-valued; log-normalised data are non-integer and below
    :data:`LOG_MAX_VALUE`. Values below :data:`TWICE_LOGGED_MAX` are refused as logged twice,
    unless they derive from counts under some log base (e.g. ``log10(CP10k + 1)``, see
    :func:`~.scale.integer_errors`). ``is_log`` overrides the guess (``True``: already
    log-normalised, never logged again; ``False``: counts, normalised and logged here).
    """
    vals = _sample_values(x)
    looks_integer = vals.size == 0 or bool(np.all(np.equal(np.mod(vals, 1), 0)))
    vmax = float(vals.max()) if vals.size else 0.0
    if is_log is True:
        if looks_integer and vmax > LOG_MAX_VALUE:
            logger.warning("%s looks like raw counts (integers up to %g) but is_log=True: "
                           "it is taken for log-normalised values", what, vmax)
        return "log"
    if is_log is False:
        if not looks_integer and vmax <= LOG_MAX_VALUE:
            logger.warning("%s looks log-normalised (non-integer, max %.3g) but is_log=False: "
                           "it will be normalised and logged again", what, vmax)
        return "counts"
    if looks_integer:
        return "counts"
    if vmax < TWICE_LOGGED_MAX and clear_base(integer_errors(x)) is None:
        raise PyClamsInputError(
            f"{what} looks log-transformed twice: its largest value is {vmax:.3g}, while "
            "log1p of counts per 10,000 reaches 5 or more; pass the raw counts or the "
            "once-logged values (is_log=True uses these values as they are)")
    if vmax <= LOG_MAX_VALUE:
        return "log"
    raise PyClamsInputError(
        f"{what} is neither integer counts nor log-normalised (non-integer values up to {vmax:.4g}); "
        "pass is_log=False if these are (non-integer) counts, is_log=True if already log-normalised")


def check_names(adata: ad.AnnData) -> None:
    """Error on duplicated gene or cell names."""
    check_anndata(adata)
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        raise PyClamsInputError(
            f"{int(adata.var_names.duplicated().sum())} duplicated gene names (e.g. {dup}); "
            "run adata.var_names_make_unique() or aggregate them first")
    if not adata.obs_names.is_unique:
        dup = adata.obs_names[adata.obs_names.duplicated()].unique()[:5].tolist()
        raise PyClamsInputError(
            f"{int(adata.obs_names.duplicated().sum())} duplicated cell names (e.g. {dup}); "
            "run adata.obs_names_make_unique() first")


def check_no_empty_cells(x, *, what: str = "adata.X") -> None:
    """Error when some cells have no expression at all."""
    totals = np.asarray(x.sum(axis=1)).ravel()
    raise_empty_cells(int(np.sum(totals <= 0)), what=what)


def raise_empty_cells(n_empty: int, *, what: str = "adata.X") -> None:
    """The error of :func:`check_no_empty_cells` for ``n_empty`` cells (none: no error)."""
    if n_empty:
        raise PyClamsInputError(
            f"{n_empty} cells in {what} have no expression (all zeros); remove them, e.g. "
            "sc.pp.filter_cells(adata, min_counts=1)")


def check_labels(adata: ad.AnnData, labels_key: str, *, min_cells: int = 10) -> pd.Series:
    """Validate ``adata.obs[labels_key]`` and return it as strings (NaN kept as NaN).

    Errors: missing key, fewer than two classes, a class with fewer than two cells.
    Warnings: unlabelled cells (they are left out of training), classes under ``min_cells``.
    """
    if labels_key is None or labels_key not in adata.obs.columns:
        raise PyClamsInputError(
            f"labels_key {labels_key!r} is not a column of adata.obs; columns are "
            f"{list(adata.obs.columns)}")
    raw = adata.obs[labels_key]
    missing = raw.isna().to_numpy()
    labels = raw.astype(object).where(~missing, None)
    labels = pd.Series([None if m else str(v) for v, m in zip(labels, missing, strict=True)],
                       index=adata.obs_names, dtype=object)
    if missing.any():
        logger.warning("%d cells have no label in obs[%r]; they are left out of training",
                       int(missing.sum()), labels_key)
    counts = labels.dropna().value_counts()
    if len(counts) < 2:
        raise PyClamsInputError(
            f"obs[{labels_key!r}] has {len(counts)} class(es) {list(counts.index)}; "
            "a classifier needs at least 2")
    tiny = counts[counts < 2]
    if len(tiny):
        raise PyClamsInputError(
            f"class(es) {list(tiny.index)} in obs[{labels_key!r}] have a single cell; remove or "
            "merge them (at least 2 cells per class are needed)")
    few = counts[counts < min_cells]
    if len(few):
        logger.warning("classes with fewer than %d cells: %s; their predictions and OOD "
                       "calibration will be unreliable", min_cells, dict(few))
    return labels
