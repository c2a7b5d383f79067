"""Extra training objectives plugged into :class:`~pyclams.training.trainer.Trainer`.

The core trainer knows the cross-entropy and CLAMS's SGLD generative term; anything else
(e.g. the paper's comparison methods VERA and HDGE, kept in the repository's ``benchmarks/``)
is an :class:`Objective` whose loss the trainer adds to the total. One training step:

1. ``x.requires_grad_(True)`` when some objective has ``needs_input_grad``;
2. ``logits = net(x)``, the cross-entropy;
3. each objective's ``loss(net, x, y, logits)``, in the order given, added to the total;
4. CLAMS's SGLD term (when the preset has one);
5. the divergence checks, ``backward()`` and the optimiser step;
6. each objective's ``after_step(net)``, if it has one (e.g. a generator's own update).

Statistics returned by ``loss`` and ``after_step`` join the step's statistics (averaged per
epoch into the training history). The divergence guard checks the ``lse_real`` and
``lse_fake`` statistics (mean LSE of real / fake cells) against ``max_abs_energy``; an
objective may also raise :class:`Diverged` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


class Diverged(RuntimeError):
    """Raised inside the training loop (by the trainer or an objective) to end training as
    diverged; the best weights so far are restored and the reason is recorded."""


@dataclass(frozen=True)
class TrainingContext:
    """What the trainer hands an objective before the first step (see ``Objective.setup``).

    Attributes
    ----------
    n_features, n_classes
        Input dimension and number of classes of the network.
    device
        Where the network and the batches live.
    rng
        The trainer's seeded numpy generator (minibatch order, SGLD buffer).
    generator
        The trainer's seeded CPU torch generator (SGLD noise).

    Drawing from ``rng`` or ``generator`` changes what the trainer draws after it; an objective
    that needs its own stream can seed one from them.
    """

    n_features: int
    n_classes: int
    device: torch.device
    rng: np.random.Generator
    generator: torch.Generator


@runtime_checkable
class Objective(Protocol):
    """A term added to the training loss: ``loss(net, x, y, logits) -> (tensor, stats)``.

    Optional members (looked up with ``getattr``; absent means "no"):

    ``needs_input_grad: bool``
        The batch ``x`` must require grad before the forward pass (e.g. a gradient penalty
        on the real cells).
    ``setup(ctx: TrainingContext) -> None``
        Called once when the trainer is built, before any draw of the training loop (build
        and seed state here: a generator network, a memory queue).
    ``after_step(net) -> dict``
        Called after the network's optimiser step; returns statistics.
    """

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
             logits: torch.Tensor) -> tuple[torch.Tensor, dict]:
        ...
