"""Drawing new cells from a trained model by SGLD, starting near the training classes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._config import check_whole
from ..errors import PyClamsInputError
from .sgld import sgld_sample


def check_generation_settings(*, n: int, n_steps: int, step_size: float | None,
                              noise: float | None, init_noise: float) -> None:
    """One clear error for a count that is not a positive whole number or a step size or
    noise that is not a non-negative number."""
    check_whole(n, "n", 1)
    check_whole(n_steps, "n_steps", 1)
    for name, value in (("step_size", step_size), ("noise", noise), ("init_noise", init_noise)):
        if value is not None and not (isinstance(value, int | float) and value >= 0
                                      and np.isfinite(value)):
            raise PyClamsInputError(f"{name} must be a non-negative number, not {value!r}")


def draw_cells(net: nn.Module, class_means: np.ndarray, class_share: np.ndarray, n: int, *,
               label: int | None, n_steps: int, step_size: float, noise: float,
               init_noise: float, clip: float | None, seed: int, device: torch.device
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` cells (network inputs) and their starting classes.

    Chains start at the class means (of ``label``, or of classes drawn with probabilities
    ``class_share``) plus Gaussian noise of sd ``init_noise``, then climb f(x)[label]
    (class-conditional) or log p(x) (``label=None``) for ``n_steps`` SGLD steps.
    """
    check_generation_settings(n=n, n_steps=n_steps, step_size=step_size, noise=noise,
                              init_noise=init_noise)
    rng = np.random.default_rng(seed)
    if label is not None:
        ys = np.full(n, label)
    else:
        ys = rng.choice(len(class_share), size=n, p=class_share / class_share.sum())
    x0 = class_means[ys] + init_noise * rng.standard_normal(
        (n, class_means.shape[1])).astype(np.float32)
    y_t = torch.as_tensor(ys, device=device) if label is not None else None
    x = sgld_sample(net, torch.from_numpy(x0.astype(np.float32)).to(device),
                    step_size=step_size, noise=noise, n_steps=n_steps, y=y_t, clip=clip,
                    generator=torch.Generator().manual_seed(seed))
    return x.cpu().numpy(), ys
