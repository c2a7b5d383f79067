"""R inside this process, through rpy2: starting it, loading packages, calling R functions with
readable errors, and moving data in (plain values; a sparse matrix as a ``dgCMatrix``).

No R code is written here: R functions are looked up by name in their package's namespace and
called. Used by :mod:`pyclams.r_bridge`; rpy2 is imported on first use.
"""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._logging import logger
from ._r_reticulate import as_str_list
from ._version import __version__
from .errors import PyClamsInputError

__all__ = ["as_dgcmatrix", "call", "inherits", "pyclams_r", "r_namespace", "robjects", "to_r"]

_R_STATE: dict[str, Any] = {}


def robjects():
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


def r_namespace(package: str):
    """The namespace of an R package (loaded on first use), as an rpy2 environment."""
    ro = robjects()
    try:
        with r_console():
            return ro.baseenv["loadNamespace"](package)
    except Exception as err:  # rpy2's RRuntimeError  # noqa: BLE001
        raise ImportError(f"the R package {package} cannot be loaded in the R that rpy2 uses "
                          f"({r_message(err)}); Debian: apt-get install "
                          f"r-cran-{package.lower()} or r-bioc-{package.lower()}") from None


def pyclams_r():
    """The namespace of the installed R package ``pyclams`` (it writes the results)."""
    if "pyclams" not in _R_STATE:
        ns = r_namespace("pyclams")
        version = str(robjects().baseenv["getNamespaceVersion"](ns)[0])
        if version.split(".")[:2] != __version__.split(".")[:2] or \
                ".write_seurat_results" not in ns:
            raise ImportError(f"the R package pyclams {version} does not match the Python "
                              f"package {__version__}: install the matching one (from the "
                              "repository: R CMD INSTALL .)")
        _R_STATE["pyclams"] = ns
    return _R_STATE["pyclams"]


@contextlib.contextmanager
def r_console(lines: list[str] | None = None) -> Iterator[None]:
    """R's console output to the debug log (and to ``lines``) while the block runs."""
    from rpy2.rinterface_lib import callbacks

    def write(text: str) -> None:
        logger.debug("R: %s", text.rstrip())
        if lines is not None:
            lines.append(text)

    saved = callbacks.consolewrite_print, callbacks.consolewrite_warnerror
    callbacks.consolewrite_print = callbacks.consolewrite_warnerror = write
    try:
        yield
    finally:
        callbacks.consolewrite_print, callbacks.consolewrite_warnerror = saved


def r_message(err: Exception, console: list[str] | None = None) -> str:
    """R's error message on one line, without R's decoration. An rlang (cli) error gives
    rpy2 only its last line: the whole message is then taken from what R printed."""
    text = "".join(console or [])
    if "Error" not in text:
        text = str(err)
    text = text[text.find("Error"):] if "Error" in text else text
    lines = [ln.strip().lstrip("!").strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and "rlang::last_error()" not in ln]
    msg = " ".join(lines)
    if msg.startswith("Error in ") and " : " in msg:  # "Error in <call> : <message>"
        return msg.split(" : ", 1)[1].strip()
    return msg.removeprefix("Error:").removeprefix("Error :").strip()


def call(fn, *args, **kwargs):
    """Call R function ``fn``; an R error becomes a :class:`PyClamsInputError` with R's
    message (the R package's checks raise only input errors)."""
    console: list[str] = []
    with r_console(console):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # rpy2's RRuntimeError  # noqa: BLE001
            raise PyClamsInputError(r_message(err, console)) from None


def inherits(robj, cls: str) -> bool:
    return bool(robjects().baseenv["inherits"](robj, cls)[0])


def to_r(value: Any):
    """Plain Python data (dicts, lists, numpy arrays, scalars) as R values: what reticulate
    would make of them (dicts -> named lists, 2-D arrays -> matrices)."""
    import rpy2.rinterface as ri

    ro = robjects()
    if value is None:
        return ro.NULL
    if isinstance(value, dict):
        return ro.ListVector({str(k): to_r(v) for k, v in value.items()})
    arr = np.asarray(value)
    if arr.dtype == object and arr.ndim == 1 and not all(isinstance(v, str) for v in arr):
        return ro.baseenv["list"](*[to_r(v) for v in value])
    if arr.ndim == 2:
        flat = np.asarray(arr, dtype=np.float64).ravel(order="F")
        return ro.baseenv["matrix"](ri.FloatSexpVector.from_memoryview(memoryview(flat)),
                                    nrow=arr.shape[0], ncol=arr.shape[1])
    arr = arr.ravel()
    if arr.dtype.kind == "b":
        return ro.BoolVector([bool(v) for v in arr])
    if arr.dtype.kind in "iu":
        return ro.IntVector([int(v) for v in arr])
    if arr.dtype.kind == "f":
        return ri.FloatSexpVector.from_memoryview(memoryview(arr.astype(np.float64)))
    return ro.StrVector([str(v) for v in arr])


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

    ro = robjects()
    csr = sp.csr_matrix(x, dtype=np.float64)
    if csr is x or (sp.issparse(x) and csr.data is getattr(x, "data", None)):
        csr = csr.copy()  # canonical form below sorts in place: leave the caller's matrix be
    csr.sum_duplicates()
    csr.sort_indices()
    genes, cells = as_str_list(genes), as_str_list(cells)
    if csr.shape != (len(cells), len(genes)):
        raise PyClamsInputError(f"the matrix is {csr.shape[0]} cells x {csr.shape[1]} genes but "
                                f"has {len(cells)} cell and {len(genes)} gene names")
    if csr.nnz >= 2**31:
        raise PyClamsInputError(f"{csr.nnz} non-zero values: more than a dgCMatrix holds")
    r_namespace("Matrix")
    vec = {"i": ri.IntSexpVector.from_memoryview(memoryview(csr.indices.astype(np.int32))),
           "p": ri.IntSexpVector.from_memoryview(memoryview(csr.indptr.astype(np.int32))),
           "x": ri.FloatSexpVector.from_memoryview(memoryview(csr.data))}
    dimnames = ro.baseenv["list"](ro.StrVector(genes), ro.StrVector(cells))
    return r_namespace("methods")["new"]("dgCMatrix", **vec,
                                          Dim=ro.IntVector([len(genes), len(cells)]),
                                          Dimnames=dimnames)
