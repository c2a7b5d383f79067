"""The bridge to R through rpy2: availability checks, R scripts and readable R errors.

R runs embedded in this Python process. The R code of the baselines lives in ``R/*.R`` beside
this file; :func:`r_call` sources the scripts a baseline needs into a fresh R environment and
calls one of their functions. Matrices go to R as ``dgCMatrix`` genes x cells through
:func:`pyclams.r_bridge.as_dgcmatrix` (re-exported here as :func:`to_dgcmatrix`). An R error
comes back as :class:`RCallError` whose message holds R's own error text.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pyclams.r_bridge import as_dgcmatrix as to_dgcmatrix

logger = logging.getLogger("pyclams")

__all__ = ["RCallError", "R_DIR", "r_available", "r_packages_missing", "r_call",
           "to_dgcmatrix", "r_str", "r_num", "r_int"]

#: the R scripts of the baselines
R_DIR = Path(__file__).resolve().parent / "R"


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


def r_call(scripts: str | os.PathLike | Sequence[str | os.PathLike], fn_name: str, *args,
           **kwargs):
    """Source the R file(s) ``scripts`` into a fresh R environment and call
    ``fn_name(*args, **kwargs)`` defined there.

    ``scripts`` are names of files in :data:`R_DIR` (e.g. ``("common.R", "seurat.R")``) or
    paths, sourced in order.

    Raises
    ------
    RCallError
        With R's error message and the tail of R's console output.
    """
    import rpy2.robjects as ro
    from rpy2.rinterface_lib.embedded import RRuntimeError

    if isinstance(scripts, (str, os.PathLike)):
        scripts = [scripts]
    lines: list[str] = []
    with _captured_console(lines):
        try:
            env = ro.r["new.env"](parent=ro.globalenv)
            for script in scripts:
                ro.r["source"](str(R_DIR / script), local=env)
            return env[fn_name](*args, **kwargs)
        except RRuntimeError as exc:
            tail = "".join(lines).strip().splitlines()[-5:]
            msg = str(exc).strip()
            detail = " | ".join(t.strip() for t in tail if t.strip() and t.strip() not in msg)
            raise RCallError(f"R error in {fn_name}: {msg}" + (f" [R said: {detail}]"
                                                               if detail else "")) from None


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
