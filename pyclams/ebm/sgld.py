"""Stochastic gradient Langevin dynamics on the model's energy (JEM's sampler)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class SGLDConfig:
    """Sampler and replay-buffer settings.

    Parameters
    ----------
    step_size, noise, n_steps
        ``x <- x + step_size * grad_x E + noise * N(0, I)`` repeated ``n_steps`` times
        (E = LSE(x), or f(x)[y] for class-conditional draws). ``step_size=None`` (default)
        takes ``min(1, 1 / L)`` with ``L`` the largest curvature of the network's base measure
        (:func:`resolve_step_size`): JEM's step of 1 without a base measure, and a step that
        cannot overshoot the reference clusters with one (a step of 1 on a narrow cluster
        throws the chains to the clipping boundary).
    buffer_size
        Cells kept in the replay buffer.
    reinit_freq
        Probability that a chain restarts from a real training cell plus noise.
    init_noise
        Sd of the Gaussian noise added to real cells when chains (re)start.
    buffer_classes
        ``"proportional"`` (classes follow the training proportions; Appendix A.3) or
        ``"balanced"`` (JEM).
    """

    step_size: float | None = None
    noise: float = 0.01
    n_steps: int = 20
    buffer_size: int = 10_000
    reinit_freq: float = 0.05
    init_noise: float = 0.5
    buffer_classes: str = "proportional"

    def __post_init__(self):
        if self.buffer_classes not in ("proportional", "balanced"):
            raise ValueError("buffer_classes must be 'proportional' or 'balanced'")
        if self.n_steps < 1 or self.buffer_size < 1:
            raise ValueError("n_steps and buffer_size must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_step_size(net: nn.Module, step_size: float | None) -> float:
    """``step_size``, or ``min(1, 1 / L)`` for the base measure's largest curvature ``L``."""
    if step_size is not None:
        return float(step_size)
    base = getattr(net, "base", None)
    if base is None:
        return 1.0
    n_input = net.config["n_input"] if hasattr(net, "config") else 1
    curvature = base.max_curvature(n_input)
    return float(min(1.0, 1.0 / curvature)) if curvature > 0 else 1.0


def sgld_sample(net: nn.Module, x: torch.Tensor, *, step_size: float, noise: float,
                n_steps: int, y: torch.Tensor | None = None, clip: float | None = None,
                generator: torch.Generator | None = None,
                autocast: Callable[[], AbstractContextManager] | None = None) -> torch.Tensor:
    """Run SGLD from ``x`` uphill on log p(x) (or log p(x, y) when ``y`` is given).

    The network is put in eval mode during sampling and its parameters receive no gradient.
    The noise is drawn on ``generator``'s device (the CPU without one) and moved to ``x``'s:
    a generator on the training device keeps every step there. ``autocast`` returns the
    context of the forward passes (e.g. bf16 autocast; none by default). Returns detached
    samples.
    """
    noise_device = generator.device if generator is not None else torch.device("cpu")
    forward_ctx = autocast or nullcontext
    was_training = net.training
    net.eval()
    requires = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        x = x.detach().clone()
        for _ in range(n_steps):
            x.requires_grad_(True)
            with forward_ctx():
                logits = net(x).float()
            energy = (torch.logsumexp(logits, dim=-1) if y is None
                      else logits.gather(1, y.view(-1, 1)).squeeze(1))
            (grad,) = torch.autograd.grad(energy.sum(), x)
            eps = torch.randn(x.shape, generator=generator, device=noise_device).to(x.device)
            x = (x + step_size * grad + noise * eps).detach()
            if clip is not None:
                x = x.clamp_(-clip, clip)
    finally:
        for p, r in zip(net.parameters(), requires, strict=True):
            p.requires_grad_(r)
        net.train(was_training)
    return x
