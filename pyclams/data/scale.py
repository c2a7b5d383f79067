"""The log base of log-normalised input, and undoing the log.

Log-normalised data come as ``log1p`` of counts per 10,000 (Seurat, scanpy: base e), as
``log2(CPM + 1)`` or ``log2(TPM + 1)`` (base 2) and sometimes with base 10. To bring them to one
scale, pyclams un-logs them (``b**x - 1``) and normalises them like counts. The base is detected
from the data: in values derived from counts, each cell's un-logged values are integer multiples
of the cell's smallest value, for the right base only (see :func:`integer_errors`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .._logging import logger
from ..errors import PyClamsInputError
from .blocks import max_value, read_rows

#: candidate bases, in the order they are tried (and named in messages)
BASES: dict[str, float] = {"e": math.e, "2": 2.0, "10": 10.0}
#: cells sampled (evenly spaced rows) to detect the base
N_SAMPLE_CELLS = 100
#: ratios to a cell's smallest value above this are left out (stored rounding makes large
#: ratios non-integer). Above 38.5, so that log2 data un-logged with base 10 (count ratios 2 and
#: 3 become ~10 and ~38.5) are not taken for integers
MAX_RATIO = 50.0
#: largest integer error of the right base (wrong bases give ~0.1-0.3)
MAX_INTEGER_ERROR = 0.05
#: the runner-up's error must be at least this many times the best one's, and above
#: :data:`MIN_RUNNER_UP_ERROR`, for the best base to count as detected
CLEAR_FACTOR = 4.0
MIN_RUNNER_UP_ERROR = 0.02
#: log1p of counts per 10,000 stays below ~9.3; log2 of CPM or TPM reaches 14-20
BASE2_MIN_MAX_VALUE = 13.0


def base_name(base: float | None) -> str | None:
    """``"e"``, ``"2"`` or ``"10"`` for a candidate base (None stays None)."""
    if base is None:
        return None
    for name, value in BASES.items():
        if math.isclose(base, value):
            return name
    return f"{base:g}"


def parse_log_base(log_base: str | float | None) -> float | None:
    """The base given by a user (``"e"``, ``2`` or ``10``; None: detect it) as a number."""
    if log_base is None:
        return None
    key = log_base.strip().lower() if isinstance(log_base, str) else None
    if key is None and isinstance(log_base, int | float | np.integer | np.floating) \
            and not isinstance(log_base, bool):
        key = next((n for n, v in BASES.items() if math.isclose(float(log_base), v)), None)
    if key not in BASES:
        raise PyClamsInputError(f"log_base must be 'e', 2 or 10 (or None to detect it from the "
                                f"data), not {log_base!r}")
    return BASES[key]


def sample_rows(x, n_cells: int = N_SAMPLE_CELLS) -> sp.csr_matrix:
    """Up to ``n_cells`` evenly spaced rows of ``x`` (sparse or dense) as a float64 CSR matrix."""
    n = x.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, n_cells)).astype(np.int64)) if n else []
    block = read_rows(x, rows) if len(rows) else x[:0]
    block = sp.csr_matrix(block) if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
    return block.astype(np.float64)


def _cell_error(vals: np.ndarray, log_base: float) -> float | None:
    """Mean distance to the nearest integer of ``v / min(v)`` (``v = base**vals - 1``) over the
    values above the cell's smallest one; None when the cell has no such ratio below
    :data:`MAX_RATIO`."""
    vals = vals[vals > 0]
    if vals.size < 2:
        return None
    low = vals.min()
    higher = vals[vals > low]
    with np.errstate(over="ignore", invalid="ignore"):
        ratios = np.expm1(higher * math.log(log_base)) / math.expm1(low * math.log(log_base))
    ratios = ratios[np.isfinite(ratios) & (ratios < MAX_RATIO)]
    if not ratios.size:
        return None
    return float(np.mean(np.abs(ratios - np.rint(ratios))))


def integer_errors(x, n_cells: int = N_SAMPLE_CELLS) -> dict[str, float]:
    """For each candidate base, the median over sampled cells of :func:`_cell_error`.

    About 0 for the base the data were logged with (when they derive from counts), 0.15-0.25
    for the others; NaN when no sampled cell has two distinct values.
    """
    block = sample_rows(x, n_cells)
    out = {}
    for name, base in BASES.items():
        errs = [_cell_error(block.data[block.indptr[i]:block.indptr[i + 1]], base)
                for i in range(block.shape[0])]
        errs = [e for e in errs if e is not None]
        out[name] = float(np.median(errs)) if errs else math.nan
    return out


def clear_base(errors: dict[str, float]) -> str | None:
    """The base whose error is below :data:`MAX_INTEGER_ERROR` and clearly below the others
    (None when there is no such base)."""
    finite = sorted((e, n) for n, e in errors.items() if np.isfinite(e))
    if not finite or finite[0][0] >= MAX_INTEGER_ERROR:
        return None
    best = finite[0][0]
    if len(finite) > 1 and finite[1][0] < max(CLEAR_FACTOR * best, MIN_RUNNER_UP_ERROR):
        return None
    return finite[0][1]


def detect_log_base(x, *, log_base: str | float | None = None,
                    what: str = "adata.X") -> tuple[float, str]:
    """The log base of log-normalised ``x`` and how it was found.

    Returns the base and ``"given"`` (``log_base`` set), ``"detected"`` (integer structure of
    the un-logged values) or ``"guessed"`` (no such structure, e.g. TPM: base 2 when the largest
    value exceeds :data:`BASE2_MIN_MAX_VALUE`, else e; with a warning).
    """
    given = parse_log_base(log_base)
    if given is not None:
        return given, "given"
    errors = integer_errors(x)
    name = clear_base(errors)
    logger.debug("%s: integer errors of the un-logged values per log base %s", what,
                 {k: round(v, 3) for k, v in errors.items()})
    if name is not None:
        return BASES[name], "detected"
    vmax = max_value(x)
    name = "2" if vmax > BASE2_MIN_MAX_VALUE else "e"
    logger.warning("the log base of %s could not be detected (its values do not derive from "
                   "counts, e.g. TPM); guessed base %s from its largest value %.3g: pass "
                   "log_base='e', 2 or 10 to set it", what, name, vmax)
    return BASES[name], "guessed"


def _row_max(x: sp.csr_matrix) -> np.ndarray:
    """Largest stored value of each row (0 for an empty row) of a non-negative CSR matrix."""
    out = np.zeros(x.shape[0])
    nonempty = np.diff(x.indptr) > 0
    if nonempty.any():
        out[nonempty] = np.maximum.reduceat(x.data, x.indptr[:-1][nonempty])
    return out


def unlog(x: sp.csr_matrix, log_base: float) -> sp.csr_matrix:
    """``log_base**x - 1``, each row divided by ``log_base**max(row)`` (float64 CSR).

    The per-row factor keeps large values from overflowing and cancels out when the rows are
    then normalised to a total (as :func:`~.preprocess.log_normalise` does).
    """
    out = sp.csr_matrix(x, dtype=np.float64, copy=True)
    out.sum_duplicates()
    shift = _row_max(out)
    per_value = np.repeat(shift, np.diff(out.indptr))
    ln_b = math.log(log_base)
    out.data = np.exp((out.data - per_value) * ln_b) - np.exp(-per_value * ln_b)
    out.eliminate_zeros()
    return out
