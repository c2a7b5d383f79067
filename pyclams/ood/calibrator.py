"""What the model learns about itself on held-out reference cells, and the calls made from it.

:class:`Calibrator` holds the temperature of p(y|x) (fitted on the validation split) and the
conformal calibration scores (log p(x) and predicted class of the validation + test cells). It
turns a query's logits into calibrated probabilities and OOD calls under :class:`OODOptions`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._logging import logger
from ..metrics import ece
from .calibration import fit_temperature
from .conformal import benjamini_hochberg, classwise_pvalues
from .options import OODOptions


class Calibrator:
    """Temperature scaling plus conformal scores of held-out reference cells.

    Attributes
    ----------
    temperature
        Divides the logits before the softmax (fitted by NLL on the validation cells).
    scores, predicted
        log p(x) and predicted class of the held-out (validation + test) reference cells.
    """

    def __init__(self, temperature: float = 1.0, scores: np.ndarray | None = None,
                 predicted: np.ndarray | None = None):
        self.temperature = float(temperature)
        self.scores = np.zeros(0, np.float32) if scores is None else np.asarray(scores)
        self.predicted = np.zeros(0, np.int64) if predicted is None else np.asarray(predicted)

    @property
    def n_scores(self) -> int:
        return int(self.scores.size)

    @classmethod
    def fit(cls, val_logits: torch.Tensor, y_val: np.ndarray, test_logits: torch.Tensor,
            y_test: np.ndarray) -> tuple[Calibrator, dict[str, Any]]:
        """Fit on held-out logits; return the calibrator and held-out accuracy / ECE."""
        temperature = fit_temperature(val_logits, torch.as_tensor(y_val))
        metrics: dict[str, Any] = {"temperature": temperature}
        for name, logits, y in (("val", val_logits, y_val), ("test", test_logits, y_test)):
            if len(y) == 0:
                continue
            p1 = F.softmax(logits, 1).numpy()
            pt = F.softmax(logits / temperature, 1).numpy()
            correct = p1.argmax(1) == y
            metrics[f"{name}_accuracy"] = float(correct.mean())
            metrics[f"{name}_ece_uncalibrated"] = ece(p1.max(1), correct)
            metrics[f"{name}_ece"] = ece(pt.max(1), correct)
        held = torch.cat([val_logits, test_logits])
        cal = cls(temperature, torch.logsumexp(held, 1).numpy().astype(np.float32),
                  held.argmax(1).numpy().astype(np.int64))
        return cal, metrics

    def probabilities(self, logits: torch.Tensor) -> np.ndarray:
        """Temperature-scaled p(y|x)."""
        return F.softmax(logits / self.temperature, 1).numpy()

    def flag(self, log_px: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
             ood: OODOptions) -> tuple[np.ndarray, np.ndarray]:
        """Conformal p-values of ``log_px`` and the OOD calls under ``ood``."""
        pvals = classwise_pvalues(log_px, predicted, self.scores, self.predicted,
                                  mode=ood.calibration)
        if ood.method == "max_prob":
            return pvals, confidence < ood.min_confidence
        if 1.0 / (self.n_scores + 1) > ood.fdr:
            logger.warning(
                "only %d reference cells were held out for calibration: rank p-values cannot go "
                "below ood_fdr=%g, so OOD calls rest on the normal-tail extrapolation of log p(x) "
                "(see pyclams.ood.conformal); treat them as approximate or use a larger "
                "reference", self.n_scores, ood.fdr)
        return pvals, benjamini_hochberg(pvals, ood.fdr)

    def to_config(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "n_scores": self.n_scores,
                "held_out": "validation + test split of the reference"}

    def tensors(self) -> dict[str, np.ndarray]:
        return {"calibration.scores": self.scores, "calibration.predicted": self.predicted}

    @classmethod
    def from_config(cls, cfg: dict, tensors: dict[str, np.ndarray]) -> Calibrator:
        return cls(float(cfg["temperature"]), tensors["calibration.scores"],
                   tensors["calibration.predicted"])
