"""Temperature scaling (Guo et al. 2017) fitted on held-out reference cells."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, *, t_min: float = 0.05,
                    t_max: float = 20.0) -> float:
    """Temperature T minimising the NLL of ``softmax(logits / T)`` on labelled cells.

    A coarse grid over log T followed by a golden-section refinement; deterministic.
    """
    logits, y = logits.double(), torch.as_tensor(y, dtype=torch.long)
    if logits.shape[0] == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return F.cross_entropy(logits / np.exp(log_t), y).item()

    grid = np.linspace(np.log(t_min), np.log(t_max), 81)
    vals = [nll(g) for g in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))
