"""Each query cell's type and confidence: from the cell alone or from its query neighbourhood.

Averaging p(y|x) over a cell and its nearest query neighbours (:func:`.neighbours.consensus`)
corrects scattered single-cell errors, and the share of the neighbourhood called alike is then a
confidence that holds on shifted queries (measured: ECE 0.02-0.03 on two cross-lab PBMC pairs,
against 0.01-0.11 for the temperature-scaled max p(y|x); the README has the table). It fails where the query's own
neighbourhood graph (principal components of the model genes) does not separate types that the
network does separate (measured: CD4 / CD8 T cells of a cross-chemistry pair, where the consensus
folded CD8 T cells into CD4 T): the minority type is absorbed by the majority around it.

``label_mode="auto"`` tests this per type, on the query itself: a type is *graph-consistent*
when the cells the network calls that type with high confidence have neighbours the network
calls the same (their neighbourhood purity, :data:`MIN_PURITY`), and when no type that fails
this test has its confident cells' neighbours largely among it (:data:`MAX_ABSORBED`: the graph
folds that type into this one, so this type's consensus labels, and their agreement, would
count the other type's cells as its own). A cell takes its neighbourhood's consensus only when
its own type and the consensus type are both graph-consistent and, where the consensus differs
from its own type, a clear majority of the neighbourhood agrees (:data:`MIN_AGREEMENT`); every
other cell keeps its own type. Its confidence is its temperature-scaled max p(y|x), except
where the graph does not back its type: a cell called an absorbing type (the graph cannot tell
that type from the one it absorbs, and the network's own p(y|x) is over-confident there on a
shifted query; measured on a cross-chemistry PBMC pair whose CD4 T cells absorb its CD8 T
cells, 3 seeds: ECE 0.071 with the cells' own p(y|x), 0.043 with the average below, 0.090 with
the consensus), and a cell between two types (a consensus that differs from its own type
without a clear majority; the bundled demo's ECE: 0.042 with its own p(y|x), 0.025 with the
average). Their confidence is the p(y|x) of their type averaged over the cell and its
neighbours, which falls where confidently called cells of another type are near.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .neighbours import consensus, neighbour_mean

LABEL_MODES = ("auto", "neighbourhood", "cell")
#: own p(y|x) from which a cell counts as confidently called, for the purity test
CONFIDENT = 0.9
#: confidently called cells a type needs before its purity is judged
MIN_CONFIDENT_CELLS = 5
#: share of the confidently called cells' neighbours called the same type, for consistency: a
#: clear majority, so that the consensus keeps those cells' own type
MIN_PURITY = 0.6
#: share of the neighbours of a graph-inconsistent type's confident cells called another type
#: from which that other type counts as absorbing it (and is not graph-consistent either)
MAX_ABSORBED = 0.25
#: share of a cell's neighbourhood (the cell included) that must agree on a consensus type
#: other than the cell's own before it overrules the network: a clear majority (8 of 11 cells
#: with 10 neighbours); below it the cell sits between types and keeps its own call
MIN_AGREEMENT = 0.7


def graph_mixing(own: np.ndarray, own_conf: np.ndarray, neighbours: np.ndarray,
                 n_classes: int) -> np.ndarray:
    """Types x types: row ``c`` holds, over the neighbours of the cells the network calls ``c``
    with p >= :data:`CONFIDENT`, the share it calls each type (a row of NaN where fewer than
    :data:`MIN_CONFIDENT_CELLS` cells are confident). Its diagonal is each type's purity."""
    mixing = np.full((n_classes, n_classes), np.nan)
    others = neighbours[:, 1:]
    if others.shape[1] == 0:
        return mixing
    confident = own_conf >= CONFIDENT
    types = own[confident]
    # (type of the confident cell, type of its neighbour) pairs counted in one pass
    pairs = types[:, None] * n_classes + own[others[confident]]
    counts = np.bincount(pairs.ravel(), minlength=n_classes * n_classes)
    counts = counts[:n_classes * n_classes].reshape(n_classes, n_classes).astype(float)
    n_cells = np.bincount(types, minlength=n_classes)[:n_classes]
    judged = n_cells >= MIN_CONFIDENT_CELLS
    mixing[judged] = counts[judged] / (n_cells[judged, None] * others.shape[1])
    return mixing


def graph_consistent(mixing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bool per type: graph-consistent (see the module), and absorbing some graph-inconsistent
    type (one reason not to be), from :func:`graph_mixing`'s matrix."""
    purity = np.diagonal(mixing)
    judged = ~np.isnan(purity)
    pure = judged & (np.nan_to_num(purity) >= MIN_PURITY)
    mixed_in = np.nan_to_num(mixing[judged & ~pure]).copy()
    mixed_in[:, ~pure] = 0.0  # only types that pass the purity test can absorb
    absorbing = (mixed_in >= MAX_ABSORBED).any(0)
    return pure & ~absorbing, absorbing


def cell_labels(probabilities: np.ndarray, neighbours: np.ndarray | None, mode: str
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Type index and confidence of every cell under ``mode`` (one of :data:`LABEL_MODES`),
    and what was done (``label_mode_used``; for ``"auto"`` the per-type ``graph_purity`` and the
    types that absorb a graph-inconsistent one, ``graph_absorbing``; the share of cells labelled
    by their neighbourhood).

    ``neighbours`` is the query's neighbourhood graph (None: every cell alone, whatever the
    mode).
    """
    probabilities = np.asarray(probabilities)
    own, own_conf = probabilities.argmax(1), probabilities.max(1)
    if neighbours is None or neighbours.shape[1] < 2 or mode == "cell":
        return own, own_conf, {"label_mode_used": "cell"}
    mean_probabilities = neighbour_mean(probabilities, neighbours)
    label, agreement = consensus(probabilities, neighbours,
                                 mean_probabilities=mean_probabilities)
    if mode == "neighbourhood":
        return label, agreement, {"label_mode_used": "neighbourhood"}
    mixing = graph_mixing(own, own_conf, neighbours, probabilities.shape[1])
    purity = np.diagonal(mixing)
    consistent, absorbing = graph_consistent(mixing)
    trusted = consistent[own] & consistent[label]
    clear = (label == own) | (agreement >= MIN_AGREEMENT)
    use = trusted & clear
    # cells that keep their own type where the graph does not back it: their type's p(y|x)
    # averaged over the neighbourhood (cells of absorbing types; cells between two types)
    averaged = absorbing[own] | (trusted & ~clear)
    kept_conf = np.where(averaged, mean_probabilities[np.arange(own.size), own], own_conf)
    info = {"label_mode_used": "auto",
            "graph_purity": {int(c): float(v) for c, v in enumerate(purity) if not np.isnan(v)},
            "graph_absorbing": [int(c) for c in np.flatnonzero(absorbing)],
            "neighbourhood_labelled": float(use.mean()) if use.size else 0.0}
    return np.where(use, label, own), np.where(use, agreement, kept_conf), info
