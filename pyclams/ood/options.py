"""The settings of the OOD ("unknown") call, in one checked object.

Python's ``annotate`` / ``predict`` / ``infer``, the command line and R's ``RunCLAMS`` all build
an :class:`OODOptions` (from keyword arguments, flags or an R list) and pass it on, so each
setting is named, defaulted and checked once.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import PyClamsInputError
from .labels import LABEL_MODES
from .neighbours import MAX_NEIGHBORS

OOD_METHODS = ("conformal", "max_prob")
CALIBRATIONS = ("query", "class", "pooled")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PyClamsInputError(f"{name} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class OODOptions:
    """How each cell's type is called and how cells are flagged as a type the reference lacks.

    Parameters
    ----------
    method
        ``"conformal"``: p-values of log p(x) (see ``calibration``), flagged by
        Benjamini-Hochberg at ``fdr``; ``"max_prob"``: flag cells whose calibrated confidence is
        below ``min_confidence``.
    fdr
        Target false discovery rate of the calls, in (0, 1).
    calibration
        ``"query"`` (default): each cell's log p(x) averaged over its query neighbours, mapped
        per predicted class onto the reference's scale by matching the query's own bulk, then
        compared with held-out reference cells of that class (:mod:`pyclams.ood.query_null`):
        robust to a query from another lab or condition, blind to a novel type that makes up
        most of its predicted class. ``"class"``: plain conformal p-values against held-out
        cells of the predicted class (classes with few held-out cells use all of them), valid
        only when the query's known cells score like held-out reference cells (same lab and
        protocol); ``"pooled"``: the same against all held-out cells.
    min_confidence
        Threshold of ``method="max_prob"``, in [0, 1].
    n_neighbors
        How many nearest query cells (in principal components of the query's own features)
        each cell's OOD score is averaged over, and its type taken from (see ``label_mode``),
        0 to :data:`~pyclams.ood.neighbours.MAX_NEIGHBORS`; 0: every cell alone.
    label_mode
        Where a cell's type and confidence come from (:mod:`pyclams.ood.labels`):
        ``"auto"`` (default): the neighbourhood's consensus for types whose confidently called
        cells have neighbours called alike in this query, the cell's own type otherwise;
        ``"neighbourhood"``: always the consensus (argmax of p(y|x) averaged over the cell and
        its ``n_neighbors`` neighbours; confidence: the share of the neighbourhood called the
        same); ``"cell"``: the cell's own argmax and temperature-scaled max p(y|x).
    """

    method: str = "conformal"
    fdr: float = 0.05
    calibration: str = "query"
    min_confidence: float = 0.5
    n_neighbors: int = 10
    label_mode: str = "auto"

    def __post_init__(self):
        if self.method not in OOD_METHODS:
            raise PyClamsInputError(f"ood_method must be one of {OOD_METHODS}, not "
                                    f"{self.method!r}")
        fdr = _number(self.fdr, "ood_fdr")
        if not 0 < fdr < 1:
            raise PyClamsInputError(f"ood_fdr must be in (0, 1), not {self.fdr!r}")
        if self.calibration not in CALIBRATIONS:
            raise PyClamsInputError(f"calibration must be one of {CALIBRATIONS}, not "
                                    f"{self.calibration!r}")
        conf = _number(self.min_confidence, "min_confidence")
        if not (math.isfinite(conf) and 0 <= conf <= 1):
            raise PyClamsInputError(f"min_confidence must be in [0, 1], not "
                                    f"{self.min_confidence!r}")
        if (isinstance(self.n_neighbors, bool) or not isinstance(self.n_neighbors, numbers.Real)
                or self.n_neighbors != int(self.n_neighbors)
                or not 0 <= self.n_neighbors <= MAX_NEIGHBORS):
            raise PyClamsInputError(f"n_neighbors must be a whole number from 0 to "
                                    f"{MAX_NEIGHBORS}, not {self.n_neighbors!r}")
        if self.label_mode not in LABEL_MODES:
            raise PyClamsInputError(f"label_mode must be one of {LABEL_MODES}, not "
                                    f"{self.label_mode!r}")
        object.__setattr__(self, "n_neighbors", int(self.n_neighbors))
        object.__setattr__(self, "fdr", fdr)
        object.__setattr__(self, "min_confidence", conf)

    @classmethod
    def from_kwargs(cls, ood: OODOptions | dict | None = None, *, ood_method: str | None = None,
                    ood_fdr: float | None = None, calibration: str | None = None,
                    min_confidence: float | None = None, n_neighbors: int | None = None,
                    label_mode: str | None = None) -> OODOptions:
        """Options from an :class:`OODOptions` or dict (``ood=``) and the flat keyword
        arguments of ``annotate`` (which take precedence)."""
        if ood is None:
            base: dict[str, Any] = {}
        elif isinstance(ood, OODOptions):
            base = asdict(ood)
        elif isinstance(ood, dict):
            known = {f.name for f in fields(cls)}
            bad = sorted(set(map(str, ood)) - known)
            if bad:
                raise PyClamsInputError(f"unknown OOD setting(s) {bad}; known: {sorted(known)}")
            base = dict(ood)
        else:
            raise PyClamsInputError(f"ood must be an OODOptions or a dict, not {type(ood)}")
        flat = {"method": ood_method, "fdr": ood_fdr, "calibration": calibration,
                "min_confidence": min_confidence, "n_neighbors": n_neighbors,
                "label_mode": label_mode}
        return cls(**{**base, **{k: v for k, v in flat.items() if v is not None}})

    def to_dict(self) -> dict[str, Any]:
        """The settings under the names ``annotate`` records in ``uns[key]["params"]``."""
        return {"ood_method": self.method, "ood_fdr": self.fdr, "calibration": self.calibration,
                "min_confidence": self.min_confidence, "n_neighbors": self.n_neighbors,
                "label_mode": self.label_mode}
