"""Extra training objectives plugged into :class:`~pyclams.training.trainer.Trainer`.

The core trainer knows the cross-entropy and CLAMS's SGLD generative term; anything else
(e.g. the paper's comparison methods VERA and HDGE, kept in the repository's ``benchmarks/``)
is an :class:`Objective` whose loss the trainer adds to the total.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Objective(Protocol):
    """A term added to the training loss: ``loss(net, x, y, logits) -> (tensor, stats)``."""

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
             logits: torch.Tensor) -> tuple[torch.Tensor, dict]:
        ...
