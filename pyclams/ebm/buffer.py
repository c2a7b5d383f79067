"""The SGLD replay buffer, its classes following the training proportions or balanced.

The chains and their classes live on the training device; slot draws come from the trainer's
seeded numpy generator (the same stream on every device) and cross as small index tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.loader import send


def slot_classes(train_labels: np.ndarray, n_classes: int, size: int, *, mode: str,
                 rng: np.random.Generator) -> np.ndarray:
    """Class of each buffer slot: proportional to ``train_labels`` or balanced."""
    if mode == "balanced":
        share = np.full(n_classes, 1.0 / n_classes)
    else:
        share = np.bincount(train_labels, minlength=n_classes) / len(train_labels)
    counts = np.floor(share * size).astype(int)
    # hand out the remainder to the largest fractional parts
    rest = size - counts.sum()
    order = np.argsort(-(share * size - counts))
    counts[order[:rest]] += 1
    return rng.permutation(np.repeat(np.arange(n_classes), counts))


class ReplayBuffer:
    """Persistent SGLD chains, (re)started from real training cells plus Gaussian noise.

    Parameters
    ----------
    draw_real
        Callable ``(class_id, n) -> tensor`` returning ``n`` real training cells of a class
        (standardised features, float32).
    slot_y
        Class of each slot (see :func:`slot_classes`).
    init_noise
        Sd of the noise added to real cells.
    """

    def __init__(self, draw_real, slot_y: np.ndarray, *, init_noise: float,
                 rng: np.random.Generator, device: torch.device):
        self.draw_real = draw_real
        self.slot_y_host = np.asarray(slot_y)
        self.slot_y = torch.as_tensor(slot_y, dtype=torch.long, device=device)
        self.init_noise = init_noise
        self.rng = rng
        self.device = device
        self.x = self._fresh(np.arange(len(slot_y)))

    def __len__(self) -> int:
        return len(self.slot_y)

    def _fresh(self, slots: np.ndarray) -> torch.Tensor:
        """Real cells of the slots' classes plus noise, in slot order."""
        y = self.slot_y_host[slots]
        parts = {}
        for c in np.unique(y):
            where = np.flatnonzero(y == c)
            parts[int(c)] = (where, self.draw_real(int(c), len(where)))
        n_feat = next(iter(parts.values()))[1].shape[1]
        out = torch.empty((len(slots), n_feat), dtype=torch.float32, device=self.device)
        for where, cells in parts.values():
            out[torch.as_tensor(where, device=self.device)] = cells.to(self.device)
        noise = torch.from_numpy(self.rng.standard_normal(out.shape).astype(np.float32))
        return out + self.init_noise * send(noise, self.device)

    def sample(self, n: int, *, reinit_freq: float) -> tuple[np.ndarray, torch.Tensor,
                                                               torch.Tensor]:
        """Draw ``n`` distinct slots uniformly (with replacement only when ``n`` exceeds the
        buffer); restart each with probability ``reinit_freq``.

        Distinct slots make :meth:`update` well defined (no two chains write one slot).
        Returns slot indices, starting points and the slots' classes.
        """
        slots = self.rng.choice(len(self), size=n, replace=n > len(self))
        slots_t = send(torch.from_numpy(slots), self.device)
        x = self.x[slots_t]  # advanced indexing copies
        restart = self.rng.random(n) < reinit_freq
        if restart.any():
            where = send(torch.from_numpy(np.flatnonzero(restart)), self.device)
            x[where] = self._fresh(slots[restart])
        return slots, x, self.slot_y[slots_t]

    def update(self, slots: np.ndarray, x: torch.Tensor) -> None:
        """Write the chains' new states back (the last write wins for a repeated slot)."""
        if len(np.unique(slots)) < len(slots):
            _, last = np.unique(slots[::-1], return_index=True)
            keep = np.sort(len(slots) - 1 - last)
            slots, x = slots[keep], x[send(torch.from_numpy(keep), x.device)]
        self.x[send(torch.from_numpy(np.asarray(slots)), self.device)] = x.detach()

