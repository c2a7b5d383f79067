"""Step statistics and the divergence guard without a host sync inside a training step.

A step's statistics stay 0-d tensors where they were computed (the training device) and are
read by the host once per epoch (:func:`read_stats`); the guard keeps one on-device flag,
read every few steps (:class:`DivergenceGuard`). On the CPU reading costs nothing and the
trainer reads the guard at every step.
"""

from __future__ import annotations

import numpy as np
import torch

from .distributed import any_rank
from .objectives import Diverged

#: statistics the guard checks against ``max_abs_energy``, with their names in its message
ENERGIES = {"lse_real": "mean LSE real", "lse_fake": "fake"}


class DivergenceGuard:
    """Flags a step whose loss is not finite or above ``max_loss``, or whose mean LSE of real
    or fake cells exceeds ``max_abs_energy`` in absolute value.

    :meth:`record` updates an on-device flag (no host sync) and, every ``every`` records, calls
    :meth:`check`, which reads the flag once (combined over data-parallel ranks) and raises
    :class:`Diverged` with the reason of the first flagged step since the previous check.
    """

    def __init__(self, *, max_abs_energy: float, max_loss: float, every: int):
        self.max_abs_energy, self.max_loss, self.every = max_abs_energy, max_loss, every
        self._flag: torch.Tensor | None = None
        self._pending: list[tuple[torch.Tensor, dict]] = []

    def record(self, loss: torch.Tensor, stats: dict) -> None:
        """Add a step's loss and statistics (before its backward pass)."""
        loss = loss.detach()
        flag = ~torch.isfinite(loss) | (loss > self.max_loss)
        for key in ENERGIES:
            if key in stats:
                flag = flag | (torch.as_tensor(stats[key], device=loss.device).abs()
                               > self.max_abs_energy)
        self._flag = flag if self._flag is None else self._flag | flag
        self._pending.append((loss, stats))
        if len(self._pending) >= self.every:
            self.check()

    def check(self) -> None:
        """Read the flag (one host sync); raise :class:`Diverged` when a step was flagged."""
        flag, pending = self._flag, self._pending
        self._flag, self._pending = None, []
        # data-parallel ranks record the same number of steps: all check together
        if flag is None or not any_rank(flag):
            return
        for loss, stats in pending:
            reason = self.reason(float(loss), {k: float(stats[k]) for k in ENERGIES
                                               if k in stats})
            if reason:
                raise Diverged(reason)
        raise Diverged("diverged on another data-parallel rank")

    def reason(self, loss: float, energies: dict[str, float]) -> str | None:
        """Why a step with these host values diverged (None: it did not)."""
        if any(abs(v) > self.max_abs_energy for v in energies.values()):
            what = ", ".join(f"{ENERGIES[k]} {v:.3g}" for k, v in energies.items())
            return f"energy exploded ({what})"
        if not np.isfinite(loss):
            return "non-finite loss"
        if loss > self.max_loss:
            return f"loss exploded ({loss:.3g})"
        return None


def read_stats(steps: list[dict]) -> list[dict[str, float]]:
    """The steps' statistics as floats, reading every tensor among them in one host copy
    (a float32 tensor reads as the same value as its ``.item()``)."""
    tensors = [v for s in steps for v in s.values() if isinstance(v, torch.Tensor)]
    if not tensors:
        return [{k: float(v) for k, v in s.items()} for s in steps]
    device = tensors[0].device
    values = iter(torch.stack([t.detach().reshape(()).float().to(device) for t in tensors])
                  .cpu().numpy().tolist())
    return [{k: next(values) if isinstance(v, torch.Tensor) else float(v)
             for k, v in s.items()} for s in steps]
