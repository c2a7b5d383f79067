"""Matching a query's genes to the genes of a model."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._logging import logger
from ..errors import PyClamsInputError

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}")


def _share(names: Sequence[str], pattern: re.Pattern) -> float:
    sample = list(names[:2000])
    return float(np.mean([bool(pattern.match(str(n))) for n in sample])) if sample else 0.0


def _case_style(names: Sequence[str]) -> str:
    sample = [str(n) for n in names[:2000] if str(n)[:1].isalpha()]
    if not sample:
        return "other"
    upper = np.mean([n == n.upper() for n in sample])
    title = np.mean([n[:1].isupper() and n[1:] == n[1:].lower() for n in sample])
    return "upper" if upper > 0.7 else ("title" if title > 0.5 else "mixed")


def likely_cause(query_genes: Sequence[str], model_genes: Sequence[str]) -> str:
    """A short guess at why two gene lists hardly overlap."""
    eq, em = _share(query_genes, _ENSEMBL), _share(model_genes, _ENSEMBL)
    if (eq > 0.5) != (em > 0.5):
        which = "query" if eq > 0.5 else "model"
        return (f"the {which} uses Ensembl ids and the other gene symbols; map ids to symbols "
                "(e.g. through a var column) first")
    cq, cm = _case_style(query_genes), _case_style(model_genes)
    if {cq, cm} == {"upper", "title"}:
        return ("one side has human-style upper-case symbols and the other mouse-style ones: "
                "another species?")
    return "different gene annotations or a gene subset; check var_names of both"


def align_genes(query_genes: Sequence[str], model_genes: Sequence[str], *,
                min_overlap: float = 0.5, warn_below: float = 0.8,
                what: str = "query") -> tuple[np.ndarray, float]:
    """Column index of each model gene in ``query_genes`` (-1 where missing) and the overlap.

    The overlap is the share of model genes found in the query. Below ``min_overlap`` it is an
    error naming the overlap and a likely cause; below ``warn_below`` a warning.
    """
    pos = pd.Index(query_genes).get_indexer(pd.Index(model_genes))
    found = int(np.sum(pos >= 0))
    overlap = found / max(1, len(model_genes))
    if overlap < min_overlap:
        raise PyClamsInputError(
            f"only {found} of the model's {len(model_genes)} genes ({overlap:.1%}) are in the "
            f"{what} (min_gene_overlap={min_overlap:.0%}); likely cause: "
            f"{likely_cause(query_genes, model_genes)}")
    if found < len(model_genes):
        missing = [g for g, p in zip(model_genes, pos, strict=True) if p < 0][:8]
        log = logger.warning if overlap < warn_below else logger.info
        log("%d of %d model genes are missing from the %s (overlap %.1f%%, e.g. %s); they are "
            "filled with the reference mean", len(model_genes) - found, len(model_genes), what,
            100 * overlap, missing)
    return pos.astype(np.int64), overlap
