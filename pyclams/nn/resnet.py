"""The 1-D residual MLP backbone of CLAMS (the paper's ResNet)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base_measure import make_base

_ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "silu": nn.SiLU}


def make_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, not {name!r}") from None


class ResidualBlock(nn.Module):
    """``x + Dropout(Linear(act(Linear(act(x)))))`` at constant width (pre-activation)."""

    def __init__(self, width: int, *, activation: str = "elu", dropout: float = 0.1):
        super().__init__()
        self.body = nn.Sequential(
            make_activation(activation), nn.Linear(width, width),
            make_activation(activation), nn.Dropout(dropout), nn.Linear(width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetMLP(nn.Module):
    """Input -> wide residual blocks -> narrower residual blocks -> logits.

    Parameters
    ----------
    n_input, n_classes
        Feature and class counts.
    widths
        Width of each stage (e.g. ``(512, 256)``); a linear map joins consecutive stages.
    blocks_per_stage
        Residual blocks per stage.
    activation, dropout
        Non-linearity (``elu``, ``relu``, ``leakyrelu``, ``silu``) and dropout rate.
    base
        Base measure added to every logit (:mod:`pyclams.nn.base_measure`): ``"isotropic"``
        (``-base_scale * mean(x**2) / 2``), ``"class_gaussian"`` (a class-mixture Gaussian on
        ``base_pcs`` principal components, filled by ``net.base.fit``) or ``"none"`` (the
        paper's pure LSE). It leaves p(y|x) unchanged and enters log p(x) = LSE(f(x)).
    base_scale
        Weight of the isotropic base measure (0 = none).
    base_pcs
        Principal components of the class-Gaussian base measure.
    """

    def __init__(self, n_input: int, n_classes: int, *, widths: Sequence[int] = (512, 256),
                 blocks_per_stage: int = 2, activation: str = "elu", dropout: float = 0.1,
                 input_dropout: float = 0.0, base: str = "isotropic", base_scale: float = 0.0,
                 base_pcs: int = 30):
        super().__init__()
        if not widths:
            raise ValueError("widths needs at least one stage")
        self.config = {"n_input": n_input, "n_classes": n_classes, "widths": list(widths),
                       "blocks_per_stage": blocks_per_stage, "activation": activation,
                       "dropout": dropout, "input_dropout": input_dropout,
                       "base": base, "base_scale": base_scale, "base_pcs": base_pcs}
        self.base = make_base(base, n_input=n_input, n_classes=n_classes, scale=base_scale,
                              n_pcs=base_pcs)
        layers: list[nn.Module] = [nn.Dropout(input_dropout), nn.Linear(n_input, widths[0])]
        for i, w in enumerate(widths):
            if i > 0:
                layers += [make_activation(activation), nn.Linear(widths[i - 1], w)]
            layers += [ResidualBlock(w, activation=activation, dropout=dropout)
                       for _ in range(blocks_per_stage)]
        layers.append(make_activation(activation))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer embedding (the input of the logit layer)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits f(x)."""
        return self.logits_from(self.body(x), x)

    def logits_from(self, embedding: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits from a penultimate embedding of input ``x`` (adds the base measure)."""
        logits = self.head(embedding)
        if self.base is not None:
            logits = logits + self.base(x)
        return logits

    @staticmethod
    def log_px(logits: torch.Tensor) -> torch.Tensor:
        """Unnormalised log density log p(x) + log Z = logsumexp_y f(x)[y] (JEM)."""
        return torch.logsumexp(logits, dim=-1)
