"""Calibration of p(y|x) and OOD decisions from log p(x)."""

from .calibration import fit_temperature
from .conformal import benjamini_hochberg, conformal_pvalues

__all__ = ["fit_temperature", "conformal_pvalues", "benjamini_hochberg"]
