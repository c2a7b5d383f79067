"""Opening an .h5ad file, in memory or backed, with one-line errors for a bad path or file."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad

from .errors import PyClamsInputError


def read_h5ad(path: str | os.PathLike, *, backed: bool = False) -> ad.AnnData:
    """``path`` read as an AnnData.

    Parameters
    ----------
    path
        An .h5ad file.
    backed
        Open it read-only with ``X`` (and layers) left on disk (``anndata.read_h5ad(path,
        backed="r")``; the caller closes ``adata.file``) instead of reading it whole.

    Returns
    -------
    The AnnData.

    Raises
    ------
    PyClamsInputError
        When ``path`` does not exist, is a directory, or is not a readable .h5ad file.
    """
    p = Path(path)
    if not p.exists():
        raise PyClamsInputError(f"{path}: no such file")
    if p.is_dir():
        raise PyClamsInputError(f"{path} is a directory, not an .h5ad file")
    try:
        return ad.read_h5ad(p, backed="r") if backed else ad.read_h5ad(p)
    except (OSError, KeyError, ValueError) as err:
        raise PyClamsInputError(f"{path} cannot be read as h5ad: {err}") from None
