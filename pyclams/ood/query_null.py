"""Query-aware p-values of log p(x): the reference's null shape, the query's own location and
spread.

Reference-calibrated conformal p-values (:mod:`.conformal`) assume that the query's known cells
score like held-out reference cells. Across labs, chemistries and conditions they do not: the
whole query usually sits lower in log p(x), by an amount that differs between cell types, so the
reference-calibrated test flags many known cells (measured realised FDR 0.2-0.8 at a nominal
0.05).

Here, per predicted class ``c``:

1. the scores are neighbour averages (:mod:`.neighbours`), on the query among query cells and
   on the held-out reference cells among held-out reference cells, so both have the same noise;
2. the query's scores of class ``c`` are mapped onto the reference's scale by the affine map
   that matches their upper quantiles: the median and the 95th percentile of the query class
   (its upper half, which types the reference lacks rarely reach: they score low) to the same
   quantiles of the held-out reference class;
3. the p-value is the conformal p-value of the mapped score against the held-out reference
   class.

So the *shape* of the null, its lower tail included, comes from held-out known cells, and its
*location and spread* from the query's own bulk. The assumption that replaces exchangeability:
in each predicted class, the upper half of the query's cells are of known types and their score
distribution differs from the reference's by a shift and a scale.

One exception is recognised: a novel type absorbed into a *small* known class, so that most of
the class's cells are novel. If a class's cells fall into two well-separated groups
(:func:`known_mode`: Ashman's D of at least :data:`SEPARATION` between them), the upper one
scoring where the typical class's known cells do relative to the reference and the lower one
the larger, the upper group is taken as the class's known cells: it is mapped onto the
reference class's median (a shift only) and the lower group is tested against that
(``source="known mode"``). Otherwise a predicted class made up mostly of a novel type is taken
as known (its bulk sets the location); such a class usually lies far below the others relative
to its reference cells, and is reported as ``suspect`` (:func:`query_aligned_pvalues`) so that
the user can look at it. A query that is all one novel type flags nothing; classes with fewer
than ``min_cells`` query cells borrow the map fitted on all query cells. :func:`query_shift`
measures how far the query's bulk sits from the reference, so that such cases can be reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conformal import conformal_pvalues

#: quantiles matched between query and reference (the lower one and the upper one)
MATCHED_QUANTILES = (0.5, 0.95)
#: the spread ratio is kept within these bounds (a degenerate class cannot blow it up)
SCALE_BOUNDS = (0.25, 4.0)
#: a class whose query median lies this many reference spreads below the typical class's is
#: reported as possibly made up mostly of a novel type (see :func:`query_aligned_pvalues`)
DISPLACED = 3.0
#: the typical class's displacement is measured at this quantile of each class (query and
#: reference alike): a class may be up to three quarters novel without moving it
TYPICAL_QUANTILE = 0.75
#: Ashman's D between a class's upper and lower group for the upper one to be taken as the
#: class's known cells (D > 2 is already a clean separation of two normal modes)
SEPARATION = 5.0
#: the fewest cells the upper group may hold
MIN_KNOWN_MODE = 3


@dataclass(frozen=True)
class ClassMap:
    """The affine map ``shift + scale * score`` applied to one predicted class."""

    shift: float
    scale: float
    n_query: int
    n_reference: int
    source: str  # "class", "all cells" (too few query cells of the class) or "known mode"
    displacement: float = 0.0  # (query median - reference median) / reference upper spread
    suspect: bool = False  # displaced far below the typical class: maybe mostly novel
    known_mode: int = 0  # cells of the upper group the class was calibrated on ("known mode")


def affine_map(query: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(shift, scale)`` mapping the matched quantiles of ``query`` onto ``reference``'s."""
    lo, hi = MATCHED_QUANTILES
    q_lo, q_hi = np.quantile(query, [lo, hi])
    r_lo, r_hi = np.quantile(reference, [lo, hi])
    spread_q = q_hi - q_lo
    scale = (r_hi - r_lo) / spread_q if spread_q > 0 else 1.0
    scale = float(np.clip(scale, *SCALE_BOUNDS))
    return float(r_lo - scale * q_lo), scale


def _spread(reference: np.ndarray) -> float:
    """Upper spread of reference scores: 95th percentile minus median (1 if degenerate)."""
    lo, hi = MATCHED_QUANTILES
    r_lo, r_hi = np.quantile(reference, [lo, hi])
    return float(r_hi - r_lo) if r_hi > r_lo else 1.0


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2.0)])


def known_mode(scores: np.ndarray, reference: np.ndarray, typical: float) -> np.ndarray | None:
    """The cells of one predicted class taken as its known cells, if the class splits in two.

    ``scores`` are the class's query scores, ``reference`` its held-out reference scores and
    ``typical`` the typical class's displacement at :data:`TYPICAL_QUANTILE` (in reference
    upper spreads). The upper group is the cells within :data:`DISPLACED` spreads of where the
    typical class puts them. It is returned (a boolean mask) when it holds at least
    :data:`MIN_KNOWN_MODE` cells, fewer than the rest, and the two groups are separated by
    Ashman's D >= :data:`SEPARATION`; else ``None``.
    """
    z = (scores - np.quantile(reference, TYPICAL_QUANTILE)) / _spread(reference)
    upper = z >= typical - DISPLACED
    lower = ~upper
    if not MIN_KNOWN_MODE <= upper.sum() < lower.sum() or lower.sum() < 2:
        return None
    pooled = z[upper].var() + z[lower].var()
    if pooled <= 0:
        return None
    separation = np.sqrt(2.0) * (z[upper].mean() - z[lower].mean()) / np.sqrt(pooled)
    return upper if separation >= SEPARATION else None


def query_aligned_pvalues(scores: np.ndarray, predicted: np.ndarray, ref_scores: np.ndarray,
                          ref_predicted: np.ndarray, *, min_cells: int = 30
                          ) -> tuple[np.ndarray, dict[int, ClassMap]]:
    """Per-class conformal p-values of ``scores`` after the query-to-reference affine map.

    Parameters
    ----------
    scores, predicted
        Neighbour-averaged log p(x) and predicted class of the query cells.
    ref_scores, ref_predicted
        The same for the held-out reference cells (averaged among themselves).
    min_cells
        A class with fewer query cells uses the map fitted on all query cells; one with fewer
        held-out reference cells is compared with all held-out cells.

    Returns
    -------
    The p-values (small = lower than the class's known cells) and the map used per class,
    with its *displacement*: how far the class's query median lies from its reference median,
    in units of the reference's upper spread (95th percentile minus median). A technical shift
    moves the known types about alike; a class displaced :data:`DISPLACED` spreads or more
    below the cell-weighted median class is ``suspect``: its bulk may be a novel type, which
    this map cannot flag. A class of at least ``min_cells`` query cells that splits into a
    known group and a larger novel one (:func:`known_mode`) is calibrated on the known group
    instead, and is not suspect.
    """
    scores = np.asarray(scores, dtype=float)
    predicted = np.asarray(predicted)
    ref_scores = np.asarray(ref_scores, dtype=float)
    ref_predicted = np.asarray(ref_predicted)
    p = np.ones(scores.size)
    maps: dict[int, ClassMap] = {}
    if scores.size == 0:
        return p, maps
    overall = affine_map(scores, ref_scores)
    classes = np.unique(predicted)
    sizes = np.array([np.sum(predicted == c) for c in classes], dtype=float)
    refs, displacement, upper_displacement = {}, {}, {}
    for c in classes:
        ref_c = ref_scores[ref_predicted == c]
        refs[c] = ref_c if ref_c.size >= min_cells else ref_scores
        query_c = scores[predicted == c]
        displacement[c] = (np.median(query_c) - np.median(refs[c])) / _spread(refs[c])
        upper_displacement[c] = (np.quantile(query_c, TYPICAL_QUANTILE)
                                 - np.quantile(refs[c], TYPICAL_QUANTILE)) / _spread(refs[c])
    typical = _weighted_median(np.array([displacement[c] for c in classes]), sizes)
    typical_upper = _weighted_median(np.array([upper_displacement[c] for c in classes]), sizes)
    for c, n in zip(classes, sizes, strict=True):
        in_class = predicted == c
        known = None
        if n >= min_cells:
            (shift, scale), source = affine_map(scores[in_class], refs[c]), "class"
            known = known_mode(scores[in_class], refs[c], typical_upper)
        else:
            (shift, scale), source = overall, "all cells"
        if known is not None:
            # the known group's median onto the reference class's median; the spread as is
            shift = float(np.median(refs[c]) - np.median(scores[in_class][known]))
            scale, source = 1.0, "known mode"
        p[in_class] = conformal_pvalues(shift + scale * scores[in_class], refs[c])
        maps[int(c)] = ClassMap(shift, scale, int(n), int(refs[c].size), source,
                                float(displacement[c]),
                                known is None and bool(displacement[c] <= typical - DISPLACED),
                                0 if known is None else int(known.sum()))
    return p, maps


def query_shift(scores: np.ndarray, ref_scores: np.ndarray) -> float:
    """Share of held-out reference cells scoring below the query's median: about 0.5 when the
    query's bulk scores like the reference, near 0 when the whole query sits lower."""
    ref = np.sort(np.asarray(ref_scores, dtype=float))
    if ref.size == 0 or np.asarray(scores).size == 0:
        return float("nan")
    return float(np.searchsorted(ref, np.median(scores), side="right") / ref.size)
