"""The settings of the OOD ("unknown") call, in one checked object.

Python's ``annotate`` / ``predict`` / ``infer``, the command line and R's ``RunCLAMS`` all build
an :class:`OODOptions` (from keyword arguments, flags or an R list) and pass it on, so each
setting is named, defaulted and checked once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import PyClamsInputError

OOD_METHODS = ("conformal", "max_prob")
CALIBRATIONS = ("class", "pooled")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PyClamsInputError(f"{name} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class OODOptions:
    """How cells are flagged as a type the reference lacks.

    Parameters
    ----------
    method
        ``"conformal"``: conformal p-values of log p(x) against held-out reference cells,
        flagged by Benjamini-Hochberg at ``fdr``; ``"max_prob"``: flag cells whose calibrated
        confidence is below ``min_confidence``.
    fdr
        False discovery rate of the conformal calls, in (0, 1).
    calibration
        ``"class"``: p-values against held-out cells of the predicted class (classes with few
        held-out cells use all of them); ``"pooled"``: against all held-out cells.
    min_confidence
        Threshold of ``method="max_prob"``, in [0, 1].
    """

    method: str = "conformal"
    fdr: float = 0.05
    calibration: str = "class"
    min_confidence: float = 0.5

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
        object.__setattr__(self, "fdr", fdr)
        object.__setattr__(self, "min_confidence", conf)

    @classmethod
    def from_kwargs(cls, ood: OODOptions | dict | None = None, *, ood_method: str | None = None,
                    ood_fdr: float | None = None, calibration: str | None = None,
                    min_confidence: float | None = None) -> OODOptions:
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
                "min_confidence": min_confidence}
        return cls(**{**base, **{k: v for k, v in flat.items() if v is not None}})

    def to_dict(self) -> dict[str, Any]:
        """The settings under the names ``annotate`` records in ``uns[key]["params"]``."""
        return {"ood_method": self.method, "ood_fdr": self.fdr, "calibration": self.calibration,
                "min_confidence": self.min_confidence}
