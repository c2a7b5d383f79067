"""Annotating an .h5ad file into a new .h5ad file without loading its count matrix.

The query is opened backed (``anndata.read_h5ad(path, backed="r")``): ``X`` stays on disk and
is read a block of rows at a time (:mod:`pyclams.data.blocks`); only the model genes of all
cells are held in memory, sparse. The output is written to a temporary name beside
the output: every element of the input (``X``, layers, ``var``, ...) is copied by HDF5 as
stored, a chunk at a time, and only the new fields are written (``obs`` with the new columns,
``obsm[<k>_probabilities]``, ``obsm[<k>_embedding]``, ``uns[<k>]``); the file is renamed to
the output when complete. The input file is never opened for writing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np

from ._files import atomic_path, check_room
from ._h5ad_read import read_h5ad
from ._logging import logger
from .result import MATRIX_FIELDS, check_key_added

try:  # anndata >= 0.11
    from anndata.io import write_elem
except ImportError:  # pragma: no cover - older anndata
    from anndata.experimental import write_elem

#: compression of the fields written into the output
COMPRESSION: dict[str, Any] = {"compression": "gzip"}


def _replace(group: h5py.Group, key: str, value: Any) -> None:
    """Write ``value`` as ``group[key]`` (anndata's encoding), replacing what was there."""
    if key in group:
        del group[key]
    write_elem(group, key, value, dataset_kwargs=COMPRESSION)


def _group(f: h5py.File, key: str) -> h5py.Group:
    """``f[key]`` as an anndata mapping group, created empty when absent."""
    if key not in f:
        write_elem(f, key, {})
    return f[key]


def is_current_format(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an .h5ad file written by anndata >= 0.8 (encoded elements), so
    that new elements can be written into a copy of it."""
    with h5py.File(path, "r") as f:
        return (f.attrs.get("encoding-type") == "anndata"
                and f["obs"].attrs.get("encoding-type") == "dataframe")


def write_fields(source: str | os.PathLike, output: str | os.PathLike, adata: ad.AnnData, *,
                 key_added: str) -> None:
    """Write ``output``: a copy of ``source`` with ``adata``'s ``obs`` and its pyclams fields
    ``obsm[<k>_probabilities]``, ``obsm[<k>_embedding]`` and ``uns[<k>]`` written into it.

    ``adata`` is ``source`` read (backed) and annotated. Nothing else of the file is read or
    rewritten. An older-format file (anndata < 0.8) is written whole instead, as anndata
    reads it. On any failure ``output`` is left as it was.
    """
    k = check_key_added(key_added)
    check_room(output, _size_bound(source, adata, k))
    with atomic_path(output) as tmp:
        if not is_current_format(source):
            logger.info("%s is in an old h5ad format: it is read whole and written anew",
                        source)
            full = ad.read_h5ad(source)
            full.obs = adata.obs
            for name in MATRIX_FIELDS:
                full.obsm[f"{k}_{name}"] = adata.obsm[f"{k}_{name}"]
            full.uns[k] = adata.uns[k]
            full.write_h5ad(tmp, compression="gzip")
            return
        try:
            with h5py.File(source, "r") as src, h5py.File(tmp, "w") as out:
                _copy_all_but_obs(src, out)
                _replace(out, "obs", adata.obs)
                obsm = _group(out, "obsm")
                for name in MATRIX_FIELDS:
                    _replace(obsm, f"{k}_{name}", adata.obsm[f"{k}_{name}"])
                _replace(_group(out, "uns"), k, adata.uns[k])
                out.flush()
        except RuntimeError as err:  # HDF5 reports some failed writes (full disk) so
            raise _as_os_error(err) from None


def _size_bound(source: str | os.PathLike, adata: ad.AnnData, k: str) -> int:
    """More bytes than the output will take: the input, the new fields uncompressed (obs
    whole, as it is rewritten) and a margin for HDF5's own records."""
    new = sum(np.asarray(adata.obsm[f"{k}_{name}"]).nbytes for name in MATRIX_FIELDS)
    new += int(adata.obs.memory_usage(index=True, deep=True).sum())
    return Path(source).stat().st_size + new + 2**20


def _copy_all_but_obs(src: h5py.File, out: h5py.File) -> None:
    """Copy every element of ``src`` but ``obs`` into ``out`` (HDF5's object copy: stored
    chunks are copied as they are, a piece at a time, never decompressed into memory)."""
    for key, value in src.attrs.items():
        out.attrs[key] = value
    for key in src:
        if key != "obs":
            src.copy(src[key], out, name=key)


def _as_os_error(err: BaseException) -> OSError:
    """An :class:`OSError` for an HDF5 write failure (its errno when HDF5 names one)."""
    found = re.search(r"errno = (\d+)", str(err))
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return OSError(" ".join(str(err).split()))


def annotate_h5ad(query: str | os.PathLike, output: str | os.PathLike, model, *,
                  key_added: str = "clams", overwrite: bool = False,
                  **kwargs: Any) -> ad.AnnData:
    """Annotate the cells of the .h5ad file ``query`` with ``model`` into the file ``output``,
    reading ``X`` (or ``layer``) a block of rows at a time.

    Parameters
    ----------
    query
        Path of the query .h5ad; it is only read.
    output
        Path of the annotated .h5ad to write (replaced when it exists; it may be ``query``).
    model
        A trained :class:`~pyclams.CLAMS` or a model directory.
    key_added, overwrite
        As in :meth:`~pyclams.CLAMS.annotate`.
    **kwargs
        Options of :meth:`~pyclams.CLAMS.infer` (``layer``, ``ood_fdr``, ``n_neighbors``,
        ``n_threads``, ...).

    Returns
    -------
    The annotated query as read (backed, file closed): its ``obs``, ``obsm`` and ``uns``
    hold the fields written; its ``X`` is not loaded.
    """
    check_key_added(key_added)
    if isinstance(model, str | os.PathLike):
        from .model import CLAMS
        model = CLAMS.load(model)
    adata = read_h5ad(query, backed=True)
    try:
        model.annotate(adata, key_added=key_added, overwrite=overwrite, **kwargs)
        write_fields(query, output, adata, key_added=key_added)
    finally:
        adata.file.close()
    return adata
