"""The bridge to R through rpy2: availability checks, sparse matrices and readable R errors.

R runs embedded in this Python process. Matrices go to R as ``dgCMatrix`` genes x cells built
from the CSR indices of a cells x genes matrix (no converter, no densifying). An R error comes
back as :class:`RCallError` whose message holds R's own error text.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger("pyclams")

__all__ = ["RCallError", "r_available", "r_packages_missing", "r_call", "to_dgcmatrix",
           "r_str", "r_num", "r_int"]


class RCallError(RuntimeError):
    """An error raised by R code, with R's message and the last lines R printed."""


@functools.lru_cache(maxsize=1)
def r_available() -> tuple[bool, str]:
    """Whether rpy2 imports and embedded R starts; the reason when it does not."""
    # R 4.2 calls timedatectl when TZ is unset, which prints an error in containers
    os.environ.setdefault("TZ", "UTC")
    try:
        import rpy2.robjects as ro
    except Exception as exc:  # ImportError, or R failing to start
        return False, (f"rpy2 is not usable ({type(exc).__name__}: {exc}); install R and "
                       '`pip install "rpy2>=3.5.2,<3.6"`')
    try:
        version = str(ro.r("R.version.string")[0])
    except Exception as exc:
        return False, f"embedded R does not start: {exc}"
    return True, version


@functools.lru_cache(maxsize=64)
def _has_r_package(name: str) -> bool:
    import rpy2.robjects as ro

    # isTRUE(): requireNamespace() returns invisibly, which ro.r() hands back as None
    code = f'isTRUE(suppressWarnings(requireNamespace("{name}", quietly = TRUE)))'
    with _captured_console([]):  # loading a namespace may print (rpy2's reticulate notice)
        return bool(ro.r(code)[0])


def r_packages_missing(names: Sequence[str]) -> list[str]:
    """The R packages of ``names`` that ``requireNamespace`` cannot load (all if R is absent)."""
    if not r_available()[0]:
        return list(names)
    return [n for n in names if not _has_r_package(n)]


@contextlib.contextmanager
def _captured_console(lines: list[str]) -> Iterator[None]:
    """Route R's console output into ``lines`` (and the debug log) instead of stdout."""
    from rpy2.rinterface_lib import callbacks

    def write(text: str) -> None:
        lines.append(text)
        logger.debug("R: %s", text.rstrip())

    old_print, old_err = callbacks.consolewrite_print, callbacks.consolewrite_warnerror
    callbacks.consolewrite_print, callbacks.consolewrite_warnerror = write, write
    try:
        yield
    finally:
        callbacks.consolewrite_print, callbacks.consolewrite_warnerror = old_print, old_err


def r_call(code: str, fn_name: str, *args, **kwargs):
    """Define the R function(s) in ``code`` and call ``fn_name(*args, **kwargs)`` in R.

    Raises
    ------
    RCallError
        With R's error message and the tail of R's console output.
    """
    import rpy2.robjects as ro
    from rpy2.rinterface_lib.embedded import RRuntimeError

    lines: list[str] = []
    with _captured_console(lines):
        try:
            ro.r(code)
            return ro.globalenv[fn_name](*args, **kwargs)
        except RRuntimeError as exc:
            tail = "".join(lines).strip().splitlines()[-5:]
            msg = str(exc).strip()
            detail = " | ".join(t.strip() for t in tail if t.strip() and t.strip() not in msg)
            raise RCallError(f"R error in {fn_name}: {msg}" + (f" [R said: {detail}]"
                                                               if detail else "")) from None


_DGC_CODE = """
.pyclams_dgc <- function(i, p, x, nr, nc, rn, cn) {
  suppressPackageStartupMessages(requireNamespace("Matrix"))
  methods::new("dgCMatrix", i = as.integer(i), p = as.integer(p), x = as.numeric(x), Dim = c(nr, nc), Dimnames = list(rn, cn))
}
"""


def to_dgcmatrix(x, genes: Sequence[str], cells: Sequence[str]):
    """A cells x genes matrix as an R ``dgCMatrix`` of genes x cells with dimnames."""
    import rpy2.robjects as ro
    from rpy2.robjects import numpy2ri
    from rpy2.robjects.conversion import localconverter

    csr = sp.csr_matrix(x, dtype=np.float64)
    csr.sum_duplicates()
    csr.sort_indices()
    # the CSR arrays of cells x genes are the CSC arrays of genes x cells
    with localconverter(ro.default_converter + numpy2ri.converter):
        i = ro.conversion.py2rpy(csr.indices.astype(np.int32))
        p = ro.conversion.py2rpy(csr.indptr.astype(np.int32))
        v = ro.conversion.py2rpy(csr.data.astype(np.float64))
    return r_call(_DGC_CODE, ".pyclams_dgc", i, p, v, r_int(csr.shape[1]), r_int(csr.shape[0]),
                  r_str(genes), r_str(cells))

def r_str(values: Sequence) -> object:
    """A character vector."""
    import rpy2.robjects as ro

    return ro.StrVector([str(v) for v in values])


def r_num(value: float) -> object:
    """A numeric scalar."""
    import rpy2.robjects as ro

    return ro.FloatVector([float(value)])


def r_int(value: int) -> object:
    """An integer scalar."""
    import rpy2.robjects as ro

    return ro.IntVector([int(value)])


def r_column(frame, name: str) -> np.ndarray:
    """Column ``name`` of an R data.frame or list as a numpy array."""
    col = frame.rx2(name)
    return np.asarray(list(col)) if hasattr(col, "__iter__") else np.asarray([col])
