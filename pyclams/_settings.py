"""Device choice and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from .errors import PyClamsInputError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a :class:`torch.device`.

    ``"auto"`` picks CUDA when a GPU is visible and the CPU otherwise. Asking for CUDA on a
    machine without one is an error rather than a silent fall-back.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PyClamsInputError(
                f"device={device!r} was requested but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); use device='cpu' or install a CUDA build of torch"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise PyClamsInputError(f"device must be 'auto', 'cpu' or 'cuda[:N]', not {device!r}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global generator (for third-party code) and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002
    torch.manual_seed(seed)
