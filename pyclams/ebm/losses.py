"""The generative loss L_g and CLAMS's regularisers (clip, stochastic unit, hard threshold).

``L_g = mean LSE(x_fake) - mean LSE(x_real)`` (JEM's code; the paper's eq. 5). CLAMS adds:

* clipping ``clip(L_g)`` with ELU (asymptote -1), ReLU (0) or LeakyReLU (slope 0.01);
* a stochastic unit: L_g is back-propagated with probability ``p_on``;
* a hard threshold: L_g passes only when ``L_g > threshold`` (tested on the unclipped value).

Fake cells come from SGLD on a replay buffer (:mod:`pyclams.ebm.sgld`). Other training terms
(the paper's comparison methods VERA and HDGE, in the repository's ``benchmarks/``) plug into
the trainer as :class:`~pyclams.training.objectives.Objective`; :func:`regularise` works on any
L_g, whatever produced the fake cells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

CLIPS = ("none", "elu", "relu", "leakyrelu")

#: preset name -> generative-loss settings
PRESETS: dict[str, dict] = {
    "clams": {"enabled": True, "clip": "elu", "p_on": 0.25, "threshold": None,
              "energy_reg": 0.1},
    "jem": {"enabled": True, "clip": "none", "p_on": 1.0, "threshold": None},
    "classifier": {"enabled": False, "clip": "none", "p_on": 1.0, "threshold": None},
}

#: ``training.generative`` keys of model files written before VERA and HDGE left the package
#: (they were selected by ``method``); :meth:`GenerativeLossConfig.from_dict` drops them
LEGACY_KEYS = ("method", "vera_noise_dim", "vera_hidden", "vera_lr", "vera_post_lr",
               "vera_entropy_weight", "vera_grad_penalty", "vera_n_posterior", "vera_max_sigma",
               "hdge_weight", "hdge_mode", "hdge_temperature", "hdge_normalize",
               "hdge_queue_size")


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
    energy_reg
        Weight of the energy penalty ``mean t(x_real)**2 + mean t(x_fake)**2`` on the network's
        tilt ``t(x) = LSE(f(x)) - b(x)`` (b: the network's base measure; Du & Mordatch 2019),
        added whenever fake cells are drawn by SGLD. It keeps log p(x) anchored to the base
        measure where the sampler never went. 0.1 in the ``clams`` preset, 0 elsewhere.
    """

    enabled: bool = True
    clip: str = "elu"
    p_on: float = 0.25
    threshold: float | None = None
    weight: float = 1.0
    energy_reg: float = 0.0

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

    @classmethod
    def from_dict(cls, d: dict) -> GenerativeLossConfig:
        """Inverse of :meth:`to_dict`, tolerant of older model files.

        Settings missing from older files take their defaults. Files written while VERA and
        HDGE were part of the package also hold ``method`` and ``vera_*`` / ``hdge_*``
        settings (:data:`LEGACY_KEYS`): they are dropped, and ``method="vera"`` or ``"hdge"``
        (no SGLD) reads as ``enabled=False``, the core trainer's settings of that model.
        Any other unknown key is an error.
        """
        d = dict(d)
        method = d.pop("method", "sgld")
        for key in LEGACY_KEYS:
            d.pop(key, None)
        if method in ("vera", "hdge"):
            d["enabled"] = False
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown generative setting(s) {unknown}")
        return cls(**d)


def generative_loss(lse_real: torch.Tensor, lse_fake: torch.Tensor) -> torch.Tensor:
    """``mean LSE(x_fake) - mean LSE(x_real)``."""
    return lse_fake.mean() - lse_real.mean()


def tilt(net: torch.nn.Module, x: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """The network's part of log p(x): ``LSE(f(x)) - b(x)`` (``lse`` when it has no base)."""
    base = getattr(net, "base", None)
    return lse if base is None else lse - base(x).squeeze(1)


def energy_penalty(t_real: torch.Tensor, t_fake: torch.Tensor) -> torch.Tensor:
    """``mean t_real**2 + mean t_fake**2`` (Du & Mordatch 2019's energy regulariser)."""
    return t_real.pow(2).mean() + t_fake.pow(2).mean()


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
