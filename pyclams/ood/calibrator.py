"""What the model learns about itself on held-out reference cells, and the calls made from it.

:class:`Calibrator` holds the temperature of p(y|x) (fitted on the validation split) and the
calibration scores of the validation + test cells: their log p(x), their predicted class and
each one's nearest held-out neighbours (so that scores can be averaged like the query's). It
turns a query's logits into calibrated probabilities and OOD calls under :class:`OODOptions`:
query-aware by default (:mod:`.query_null`), or reference-calibrated conformal p-values
(:mod:`.conformal`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._logging import logger
from ..metrics import ece
from .calibration import fit_temperature
from .conformal import benjamini_hochberg, classwise_pvalues
from .neighbours import MAX_NEIGHBORS, nearest_neighbours, neighbour_mean
from .options import OODOptions
from .query_null import query_aligned_pvalues, query_shift

#: below this share of held-out reference cells scoring under the query's median (neighbour
#: averages), the query is reported (logged) as shifted as a whole
SHIFT_WARNING = 0.05
#: fewer query cells than this: the query-aware calibration falls back to the reference
MIN_QUERY_CELLS = 50


class Calibrator:
    """Temperature scaling plus conformal scores of held-out reference cells.

    Attributes
    ----------
    temperature
        Divides the logits before the softmax (fitted by NLL on the validation cells).
    scores, predicted
        log p(x) and predicted class of the held-out (validation + test) reference cells.
    neighbours
        Each held-out cell and its :data:`~.neighbours.MAX_NEIGHBORS` nearest held-out cells
        (principal components of the held-out cells' features; None in models written by
        pyclams before query-aware calibration).
    """

    def __init__(self, temperature: float = 1.0, scores: np.ndarray | None = None,
                 predicted: np.ndarray | None = None, neighbours: np.ndarray | None = None):
        self.temperature = float(temperature)
        self.scores = np.zeros(0, np.float32) if scores is None else np.asarray(scores)
        self.predicted = np.zeros(0, np.int64) if predicted is None else np.asarray(predicted)
        self.neighbours = None if neighbours is None else np.asarray(neighbours, np.int64)

    @property
    def n_scores(self) -> int:
        return int(self.scores.size)

    def reference_scores(self, n_neighbors: int) -> np.ndarray:
        """Held-out log p(x), averaged over each cell and its ``n_neighbors`` nearest held-out
        cells when the model stores them (as the query's are averaged over query cells)."""
        if n_neighbors == 0 or self.neighbours is None:
            return self.scores
        return neighbour_mean(self.scores, self.neighbours, n_neighbors)

    @classmethod
    def fit(cls, val_logits: torch.Tensor, y_val: np.ndarray, test_logits: torch.Tensor,
            y_test: np.ndarray, *, held_points: np.ndarray | None = None
            ) -> tuple[Calibrator, dict[str, Any]]:
        """Fit on held-out logits; return the calibrator and held-out accuracy / ECE.

        ``held_points`` (principal components of the validation then test cells' features)
        give the held-out cells' neighbourhoods.
        """
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
        scores = torch.logsumexp(held, 1).numpy().astype(np.float32)
        neighbours = None
        if held_points is not None and len(scores):
            neighbours = nearest_neighbours(held_points, MAX_NEIGHBORS)
        cal = cls(temperature, scores, held.argmax(1).numpy().astype(np.int64), neighbours)
        return cal, metrics

    def probabilities(self, logits: torch.Tensor) -> np.ndarray:
        """Temperature-scaled p(y|x)."""
        return F.softmax(logits / self.temperature, 1).numpy()

    def flag(self, log_px: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
             ood: OODOptions, neighbours: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """P-values of ``log_px``, the OOD calls under ``ood`` and what was done.

        ``neighbours`` is the query's own neighbourhood graph
        (:func:`.neighbours.nearest_neighbours`; None: scores are not averaged). With
        ``ood.calibration == "query"`` the query's scores, averaged over it, are compared with
        held-out scores averaged alike (:mod:`.query_null`); a query of fewer than
        :data:`MIN_QUERY_CELLS` cells falls back to ``"class"``. The returned dict records the
        calibration used, the query's shift and the per-class maps.
        """
        mode = ood.calibration
        if mode == "query" and len(log_px) < MIN_QUERY_CELLS:
            logger.warning("only %d query cells: too few to estimate the query's own score "
                           "distribution; OOD calls use calibration='class' (reference-"
                           "calibrated: see the README for what it assumes)", len(log_px))
            mode = "class"
        info: dict[str, Any] = {"calibration_used": mode}
        if mode == "query":
            k = 0 if neighbours is None else neighbours.shape[1] - 1
            if k and self.neighbours is None:
                logger.info("this model was saved by an earlier pyclams, without its held-out "
                            "cells' neighbourhoods: OOD p-values use single-cell scores "
                            "(retrain to average them over neighbours)")
                k = 0
            scores = log_px if k == 0 else neighbour_mean(log_px, neighbours)
            ref_scores = self.reference_scores(k)
            pvals, maps = query_aligned_pvalues(scores, predicted, ref_scores, self.predicted)
            shift = query_shift(scores, ref_scores)
            info.update(score_neighbors=k, query_shift=shift,
                        class_maps={int(c): asdict(m) for c, m in maps.items()})
            suspects = [int(c) for c, m in maps.items() if m.suspect]
            if suspects:
                info["suspect_classes"] = suspects
            split = [int(c) for c, m in maps.items() if m.known_mode]
            if split:
                info["known_mode_classes"] = split
            if shift < SHIFT_WARNING:
                logger.info(
                    "the query as a whole scores lower in log p(x) than the reference (its "
                    "median is below all but %.1f%% of held-out reference cells): it may come "
                    "from another lab, technology or condition, or be mostly of types the "
                    "reference lacks. Unknown calls are made relative to the query's own bulk "
                    "per predicted type; a novel type that makes up most of its predicted "
                    "class is not flagged, unless a small group of that class scores like "
                    "known cells (uns[key]['class_maps']['known_mode'])", 100 * shift)
        else:
            pvals = classwise_pvalues(log_px, predicted, self.scores, self.predicted, mode=mode)
        # far-tail p-values can underflow: keep them positive in the float32 result
        pvals = np.clip(pvals, np.finfo(np.float32).tiny, 1.0)
        if ood.method == "max_prob":
            return pvals, confidence < ood.min_confidence, info
        if 1.0 / (self.n_scores + 1) > ood.fdr:
            logger.warning(
                "only %d reference cells were held out for calibration: rank p-values cannot go "
                "below ood_fdr=%g, so OOD calls rest on the normal-tail extrapolation of log p(x) "
                "(see pyclams.ood.conformal); treat them as approximate or use a larger "
                "reference", self.n_scores, ood.fdr)
        return pvals, benjamini_hochberg(pvals, ood.fdr), info

    def to_config(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "n_scores": self.n_scores,
                "held_out": "validation + test split of the reference"}

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"calibration.scores": self.scores, "calibration.predicted": self.predicted}
        if self.neighbours is not None:
            out["calibration.neighbours"] = self.neighbours.astype(np.int32)
        return out

    @classmethod
    def from_config(cls, cfg: dict, tensors: dict[str, np.ndarray]) -> Calibrator:
        return cls(float(cfg["temperature"]), tensors["calibration.scores"],
                   tensors["calibration.predicted"], tensors.get("calibration.neighbours"))
