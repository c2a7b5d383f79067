"""The generative loss L_g and CLAMS's regularisers (clip, stochastic unit, hard threshold).

``L_g = mean LSE(x_fake) - mean LSE(x_real)`` (JEM's code; the paper's eq. 5). CLAMS adds:

* clipping ``clip(L_g)`` with ELU (asymptote -1), ReLU (0) or LeakyReLU (slope 0.01);
* a stochastic unit: L_g is back-propagated with probability ``p_on``;
* a hard threshold: L_g passes only when ``L_g > threshold`` (tested on the unclipped value).

The other EBMs of the paper's comparison are selected by :attr:`GenerativeLossConfig.method`:
``"sgld"`` (CLAMS / JEM: fake cells by SGLD from a replay buffer), ``"vera"`` (fake cells from an
amortised generator, :mod:`pyclams.ebm.vera`), ``"hdge"`` (a contrastive approximation of
log p(x|y), no fake cells, :mod:`pyclams.ebm.hdge`) and ``"hdge_jem"`` (both HDGE's term and
JEM's SGLD L_g).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

CLIPS = ("none", "elu", "relu", "leakyrelu")
#: how fake cells / the generative term are obtained
METHODS = ("sgld", "vera", "hdge", "hdge_jem")
HDGE_MODES = ("class", "joint")

#: preset name -> generative-loss settings
PRESETS: dict[str, dict] = {
    "clams": {"enabled": True, "clip": "elu", "p_on": 0.25, "threshold": None,
              "energy_reg": 0.1},
    "jem": {"enabled": True, "clip": "none", "p_on": 1.0, "threshold": None},
    "classifier": {"enabled": False, "clip": "none", "p_on": 1.0, "threshold": None},
    # VERA's JEM recipe (Grathwohl et al. 2021): classification weight alpha = 100, i.e. L_g
    # and its gradient penalty weighted 1/100 relative to the cross-entropy
    "vera": {"enabled": True, "method": "vera", "clip": "none", "p_on": 1.0, "threshold": None,
             "weight": 0.01},
    "hdge": {"enabled": True, "method": "hdge", "clip": "none", "p_on": 1.0, "threshold": None},
    "hdge_jem": {"enabled": True, "method": "hdge_jem", "clip": "none", "p_on": 1.0,
                 "threshold": None},
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
        Multiplier of the regularised L_g in the total loss (with ``"vera"``: of L_g plus its
        gradient penalty).
    energy_reg
        Weight of the energy penalty ``mean t(x_real)**2 + mean t(x_fake)**2`` on the network's
        tilt ``t(x) = LSE(f(x)) - b(x)`` (b: the network's base measure; Du & Mordatch 2019),
        added whenever fake cells are drawn by SGLD. It keeps log p(x) anchored to the base
        measure where the sampler never went. 0.1 in the ``clams`` preset, 0 elsewhere.
    method
        ``"sgld"`` (CLAMS / JEM), ``"vera"``, ``"hdge"`` or ``"hdge_jem"``; see the module
        docstring. ``clip``, ``p_on`` and ``threshold`` act on L_g whatever produced the fake
        cells; ``"hdge"`` has no L_g and ignores them.
    vera_noise_dim, vera_hidden
        Latent size and hidden widths of VERA's generator MLP.
    vera_lr, vera_post_lr
        Adam learning rates of the generator and of the posterior scale of its entropy
        estimator.
    vera_entropy_weight
        Weight lambda of the generator's entropy H(q) (VERA's ``--ent_weight``).
    vera_grad_penalty
        Weight gamma of ``mean ||grad_x LSE(x_real)||^2 / 2`` in the EBM loss (``--pg_control``).
    vera_n_posterior
        Importance samples of the entropy-gradient estimator.
    vera_max_sigma
        Upper bound of the generator's per-feature output sd (the lower bound is 0.01).
    hdge_weight
        Multiplier of HDGE's contrastive term.
    hdge_mode
        ``"class"`` (the paper: normalise f(x)[y] over samples for the label y) or ``"joint"``
        (normalise over samples and all classes).
    hdge_temperature, hdge_normalize
        Logits are divided by the temperature, after L2 normalisation when ``hdge_normalize``
        (the authors' code: normalised logits, temperature 0.1).
    hdge_queue_size
        Past logits kept as extra negatives (MoCo-style memory queue; 0, the default: the
        batch only). With raw logits a queue lets the model lower the loss by inflating all
        current logits above the stale ones: log p(x) then drifts upward without bound.
    """

    enabled: bool = True
    clip: str = "elu"
    p_on: float = 0.25
    threshold: float | None = None
    weight: float = 1.0
    energy_reg: float = 0.0
    method: str = "sgld"
    vera_noise_dim: int = 32
    vera_hidden: tuple[int, ...] = (256, 256)
    vera_lr: float = 2e-3
    vera_post_lr: float = 1e-3
    vera_entropy_weight: float = 1e-4
    vera_grad_penalty: float = 0.1
    vera_n_posterior: int = 20
    vera_max_sigma: float = 0.3
    hdge_weight: float = 1.0
    hdge_mode: str = "class"
    hdge_temperature: float = 1.0
    hdge_normalize: bool = False
    hdge_queue_size: int = 0

    def __post_init__(self):
        if self.clip not in CLIPS:
            raise ValueError(f"clip must be one of {CLIPS}, not {self.clip!r}")
        if not 0.0 <= self.p_on <= 1.0:
            raise ValueError(f"p_on must be in [0, 1], not {self.p_on}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if self.hdge_mode not in HDGE_MODES:
            raise ValueError(f"hdge_mode must be one of {HDGE_MODES}, not {self.hdge_mode!r}")
        # JSON gives lists back
        self.vera_hidden = tuple(int(w) for w in self.vera_hidden)
        if self.vera_noise_dim < 1 or self.vera_n_posterior < 1 or not self.vera_hidden or \
                min(self.vera_hidden) < 1:
            raise ValueError("vera_noise_dim, vera_n_posterior and vera_hidden must be positive")
        if not self.vera_max_sigma >= 0.01:
            raise ValueError(f"vera_max_sigma must be at least 0.01, not {self.vera_max_sigma}")
        if not self.hdge_temperature > 0 or self.hdge_queue_size < 0:
            raise ValueError("hdge_temperature must be positive and hdge_queue_size >= 0")

    @property
    def uses_sgld(self) -> bool:
        """Whether training draws fake cells by SGLD from a replay buffer."""
        return self.enabled and self.method in ("sgld", "hdge_jem")

    @property
    def uses_hdge(self) -> bool:
        """Whether training adds HDGE's contrastive term."""
        return self.enabled and self.method in ("hdge", "hdge_jem")

    @property
    def uses_vera(self) -> bool:
        """Whether training draws fake cells from VERA's generator."""
        return self.enabled and self.method == "vera"

    @classmethod
    def preset(cls, name: str, **overrides) -> GenerativeLossConfig:
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {name!r}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vera_hidden"] = list(self.vera_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GenerativeLossConfig:
        """Inverse of :meth:`to_dict`; settings missing from older files take their defaults
        (``method="sgld"``)."""
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
