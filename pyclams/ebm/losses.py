"""The generative loss L_g and CLAMS's regularisers (clip, stochastic unit, hard threshold).

``L_g = mean LSE(x_fake) - mean LSE(x_real)`` (JEM's code; the paper's eq. 5). CLAMS adds:

* clipping ``clip(L_g)`` with ELU (asymptote -1), ReLU (0) or LeakyReLU (slope 0.01);
* a stochastic unit: L_g is back-propagated with probability ``p_on``;
* a hard threshold: L_g passes only when ``L_g > threshold`` (tested on the unclipped value).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

CLIPS = ("none", "elu", "relu", "leakyrelu")

#: preset name -> generative-loss settings
PRESETS: dict[str, dict] = {
    "clams": {"enabled": True, "clip": "elu", "p_on": 0.25, "threshold": None},
    "jem": {"enabled": True, "clip": "none", "p_on": 1.0, "threshold": None},
    "classifier": {"enabled": False, "clip": "none", "p_on": 1.0, "threshold": None},
}


@dataclass
class GenerativeLossConfig:
    """Settings of the regularised generative loss.

    Parameters
    ----------
    enabled
        False trains a plain classifier (no L_g, no SGLD).
    clip
        ``"none"``, ``"elu"``, ``"relu"`` or ``"leakyrelu"``.
    p_on
        Probability that L_g is back-propagated at a step.
    threshold
        L_g passes only when above this value (None: no threshold).
    weight
        Multiplier of the regularised L_g in the total loss.
    """

    enabled: bool = True
    clip: str = "elu"
    p_on: float = 0.25
    threshold: float | None = None
    weight: float = 1.0

    def __post_init__(self):
        if self.clip not in CLIPS:
            raise ValueError(f"clip must be one of {CLIPS}, not {self.clip!r}")
        if not 0.0 <= self.p_on <= 1.0:
            raise ValueError(f"p_on must be in [0, 1], not {self.p_on}")

    @classmethod
    def preset(cls, name: str, **overrides) -> GenerativeLossConfig:
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {name!r}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def generative_loss(lse_real: torch.Tensor, lse_fake: torch.Tensor) -> torch.Tensor:
    """``mean LSE(x_fake) - mean LSE(x_real)``."""
    return lse_fake.mean() - lse_real.mean()


def clip_loss(loss: torch.Tensor, clip: str) -> torch.Tensor:
    """Apply the clipping function to L_g."""
    if clip == "none":
        return loss
    if clip == "elu":
        return F.elu(loss)
    if clip == "relu":
        return F.relu(loss)
    if clip == "leakyrelu":
        return F.leaky_relu(loss, negative_slope=0.01)
    raise ValueError(f"unknown clip {clip!r}")


def regularise(loss: torch.Tensor, cfg: GenerativeLossConfig, *, draw: float) -> tuple[
        torch.Tensor, bool]:
    """Regularised L_g and whether it passed.

    ``draw`` is a uniform number in [0, 1) from the caller's seeded generator; the stochastic
    unit passes when ``draw < p_on``. The threshold is tested on the unclipped L_g.
    """
    passed = draw < cfg.p_on
    if cfg.threshold is not None and not bool(loss.detach() > cfg.threshold):
        passed = False
    if not passed:
        return loss.new_zeros(()), False
    return cfg.weight * clip_loss(loss, cfg.clip), True
