r"""VERA: fake cells from an amortised generator instead of SGLD (Grathwohl et al. 2021).

VERA ("No MCMC for me: amortized sampling for fast and stable training of energy-based models",
ICLR 2021) trains, next to the EBM, a generator ``q(x) = ∫ q(x|z) p(z) dz`` with
``z ~ N(0, I)`` and ``q(x|z) = N(mu(z), diag(sigma^2))``: ``x = mu(z) + sigma * eps``.
What is implemented here, following the authors' code (``VERAGenerator.entropy_obj`` and the
JEM branch of their ``train.py``):

EBM step (on the classifier network, with the fakes detached)
    .. math::

        L_{EBM} = CE + w\,\bigl[\overline{LSE(x_{fake})} - \overline{LSE(x_{real})}
                  + \tfrac{\gamma}{2}\,\overline{\lVert \nabla_x LSE(x_{real}) \rVert^2}\bigr]

    where the bracket's L_g goes through CLAMS's regulariser (a no-op by default: no clip,
    ``p_on`` = 1). VERA's JEM recipe weights the cross-entropy by alpha = 100 and the
    gradient penalty by gamma = 0.1; Adam being invariant to a global scale of the loss,
    :class:`VERAConfig` uses ``weight`` w = 1/alpha = 0.01 and ``grad_penalty`` gamma = 0.1.

Generator step (after the EBM step, on the same draws, the network frozen)
    maximise ``E_q[LSE(x)] + lambda * H(q)`` with ``lambda = entropy_weight``
    (the paper's JEM runs: 1e-4). The entropy gradient is
    ``grad H(q) = -E[ grad_x log q(x) . dx/dtheta ]`` with the score estimated by
    self-normalised importance sampling over ``K = n_posterior`` proposals
    ``z'_k ~ xi(z'|x) = N(z, diag(eta^2))`` centred on the latent ``z`` that produced ``x``:

    .. math::

        -\nabla_x \log q(x) \approx c(x) = \sum_k w_k \frac{x - \mu(z'_k)}{\sigma^2},
        \qquad w = \mathrm{softmax}_k\bigl[\log q(x|z'_k) + \log p(z'_k)
                   - \log \xi(z'_k|x)\bigr]

    and the generator minimises ``-(mean LSE(x) + lambda * mean_i stopgrad(c_i) . x_i)``.
    The proposal scale ``eta`` (per latent dimension, initially 0.1) is fitted by its own Adam
    (``post_lr``) to the ELBO ``E_xi[log q(x, z')] + H(xi)``. sigma is clamped to
    ``[0.01, max_sigma]`` after every step (initially 0.01).

Simplifications (documented choices, not the paper's image set-up):

* the generator is an MLP (``hidden``, ReLU, linear output; latent ``noise_dim``)
  instead of the DCGAN-style convolutional generator, and sigma is learned per feature (the
  authors learn one scalar);
* one generator step per EBM step, no learning-rate warm-up or decay, and the generator's
  Adam has no weight decay; its learning rate defaults to 2e-3, twice the trainer's 1e-3, as
  in the paper (glr = 2 lr);
* the generator is not saved with the model (only the classifier network is).

In the benchmark VERA is the ``classifier`` preset of :class:`pyclams.CLAMS` (cross-entropy,
no SGLD) plus :class:`VERAObjective`, which the trainer calls at every step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from pyclams.ebm.losses import GenerativeLossConfig, regularise
from pyclams.training.objectives import Diverged, TrainingContext

MIN_SIGMA = 0.01
INIT_SIGMA = 0.01
INIT_POST_SIGMA = 0.1
_LOG_2PI = math.log(2 * math.pi)


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """Parameters of ``net`` receive no gradient inside the block (restored afterwards)."""
    requires = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, r in zip(net.parameters(), requires, strict=True):
            p.requires_grad_(r)


def _normal_log_prob(x: torch.Tensor, mean: torch.Tensor, log_sd: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(log_sd)^2), summed over the last dimension."""
    return (-0.5 * ((x - mean) / log_sd.exp()) ** 2 - log_sd - 0.5 * _LOG_2PI).sum(-1)


class VERAGenerator(nn.Module):
    """``x = mu(z) + sigma * eps`` with an MLP ``mu``, ``z, eps ~ N(0, I)`` and learned
    per-feature ``sigma``; ``post_log_sigma`` is the log scale of the entropy estimator's
    proposal.

    Parameters
    ----------
    n_features
        Dimension of the cells.
    noise_dim
        Latent dimension.
    hidden
        Widths of the hidden ReLU layers of ``mu``.
    """

    def __init__(self, n_features: int, *, noise_dim: int = 32,
                 hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.noise_dim = int(noise_dim)
        layers: list[nn.Module] = []
        width = self.noise_dim
        for w in hidden:
            layers += [nn.Linear(width, int(w)), nn.ReLU()]
            width = int(w)
        layers.append(nn.Linear(width, n_features))
        self.mu = nn.Sequential(*layers)
        self.log_sigma = nn.Parameter(torch.full((n_features,), math.log(INIT_SIGMA)))
        self.post_log_sigma = nn.Parameter(torch.full((self.noise_dim,),
                                                      math.log(INIT_POST_SIGMA)))

    def generator_parameters(self) -> list[nn.Parameter]:
        """Parameters of q(x) (everything but the proposal scale)."""
        return [*self.mu.parameters(), self.log_sigma]

    def sample(self, n: int, *, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(x, z)``; ``x`` is differentiable with respect to the generator."""
        dev = self.log_sigma.device
        z = _randn((n, self.noise_dim), generator, dev)
        eps = _randn((n, self.log_sigma.numel()), generator, dev)
        return self.mu(z) + self.log_sigma.exp() * eps, z

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log q(x|z) + log p(z)`` (the last dimension summed)."""
        log_pz = _normal_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
        return _normal_log_prob(x, self.mu(z), self.log_sigma) + log_pz

    @torch.no_grad()
    def score_estimate(self, x: torch.Tensor, z: torch.Tensor, *, n_posterior: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """VERA's importance-sampled estimate ``c(x)`` of ``-grad_x log q(x)`` (no gradient).

        Proposals ``z'_k ~ N(z, eta^2)``, weights ``softmax_k(log q(x, z'_k) - log xi(z'_k))``,
        ``c = sum_k w_k (x - mu(z'_k)) / sigma^2``.
        """
        n, k = z.shape
        post_ls = self.post_log_sigma.expand(n_posterior, n, k)
        zs = z + post_ls.exp() * _randn((n_posterior, n, k), generator, z.device)
        log_xi = _normal_log_prob(zs, z.expand_as(zs), post_ls)  # (K, n)
        mu = self.mu(zs.reshape(-1, k)).reshape(n_posterior, n, -1)
        log_pz = _normal_log_prob(zs, torch.zeros_like(zs), torch.zeros_like(zs))
        log_q = _normal_log_prob(x.expand_as(mu), mu, self.log_sigma) + log_pz
        w = torch.softmax(log_q - log_xi, dim=0)  # (K, n)
        return (w.unsqueeze(-1) * (x - mu)).sum(0) / self.log_sigma.exp() ** 2

    def posterior_loss(self, x: torch.Tensor, z: torch.Tensor, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """``-ELBO`` of the proposal ``xi = N(z, eta^2)``: ``-(E_xi log q(x, z') + H(xi))``,
        one reparameterised draw per cell (only ``eta`` is meant to be stepped on it)."""
        eps = _randn(z.shape, generator, z.device)
        zp = z.detach() + self.post_log_sigma.exp() * eps
        entropy = (self.post_log_sigma + 0.5 * (1.0 + _LOG_2PI)).sum()
        return -(self.log_joint(x.detach(), zp) + entropy).mean()

    @torch.no_grad()
    def clamp_sigma(self, max_sigma: float) -> None:
        """Keep sigma in ``[0.01, max_sigma]``."""
        self.log_sigma.clamp_(math.log(MIN_SIGMA), math.log(max_sigma))


def _randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard normal draws from a CPU generator (repeatable across devices)."""
    return torch.randn(shape, generator=generator, device="cpu").to(device)


def gradient_penalty(lse_real: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``mean ||grad_x LSE(x)||^2 / 2`` with a graph for back-propagation (``x`` must require
    grad and ``lse_real`` come from it)."""
    (grad,) = torch.autograd.grad(lse_real.sum(), x, create_graph=True)
    return 0.5 * grad.flatten(1).pow(2).sum(1).mean()


@dataclass
class VERAConfig:
    """Settings of VERA's generator and of its term in the EBM loss.

    Parameters
    ----------
    noise_dim, hidden
        Latent size and hidden widths of the generator MLP.
    lr, post_lr
        Adam learning rates of the generator and of the posterior scale of its entropy
        estimator.
    entropy_weight
        Weight lambda of the generator's entropy H(q) (VERA's ``--ent_weight``).
    grad_penalty
        Weight gamma of ``mean ||grad_x LSE(x_real)||^2 / 2`` in the EBM loss (``--pg_control``).
    n_posterior
        Importance samples of the entropy-gradient estimator.
    max_sigma
        Upper bound of the generator's per-feature output sd (the lower bound is 0.01).
    clip, p_on, threshold, weight
        CLAMS's regulariser of L_g (:func:`pyclams.ebm.losses.regularise`); ``weight``
        multiplies L_g plus its gradient penalty (VERA's JEM recipe: 1/alpha = 0.01).
    """

    noise_dim: int = 32
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 2e-3
    post_lr: float = 1e-3
    entropy_weight: float = 1e-4
    grad_penalty: float = 0.1
    n_posterior: int = 20
    max_sigma: float = 0.3
    clip: str = "none"
    p_on: float = 1.0
    threshold: float | None = None
    weight: float = 0.01

    def __post_init__(self):
        self.hidden = tuple(int(w) for w in self.hidden)  # JSON gives lists back
        if self.noise_dim < 1 or self.n_posterior < 1 or not self.hidden or \
                min(self.hidden) < 1:
            raise ValueError("noise_dim, n_posterior and hidden must be positive")
        if not self.max_sigma >= 0.01:
            raise ValueError(f"max_sigma must be at least 0.01, not {self.max_sigma}")
        self.regulariser()  # checks clip and p_on

    def regulariser(self) -> GenerativeLossConfig:
        """The L_g regulariser settings as :func:`~pyclams.ebm.losses.regularise` takes them."""
        return GenerativeLossConfig(clip=self.clip, p_on=self.p_on, threshold=self.threshold,
                                    weight=self.weight)


class VERA:
    """VERA's generator, its optimisers and one training step of each side.

    Parameters
    ----------
    n_features
        Dimension of the cells.
    cfg
        A :class:`VERAConfig`.
    device
        Where the generator lives.
    generator
        Seeded CPU random generator for every draw (latents, noise, proposals).
    """

    def __init__(self, n_features: int, cfg: VERAConfig, *, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None):
        self.cfg = cfg
        self.rand = generator
        self.g = VERAGenerator(n_features, noise_dim=cfg.noise_dim, hidden=cfg.hidden).to(device)
        self.opt = torch.optim.Adam(self.g.generator_parameters(), lr=cfg.lr)
        self.post_opt = torch.optim.Adam([self.g.post_log_sigma], lr=cfg.post_lr)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, z)`` for one training step (``x`` keeps its graph for the generator step)."""
        return self.g.sample(n, generator=self.rand)

    def ebm_terms(self, net: nn.Module, x_real: torch.Tensor, logits_real: torch.Tensor,
                  x_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor | None]:
        """LSE of real and (detached) fake cells, L_g and the gradient penalty (None when
        ``grad_penalty`` is 0)."""
        lse_real = torch.logsumexp(logits_real, dim=1)
        lse_fake = torch.logsumexp(net(x_fake.detach()), dim=1)
        lg = lse_fake.mean() - lse_real.mean()
        gp = gradient_penalty(lse_real, x_real) if self.cfg.grad_penalty > 0 else None
        return lse_real, lse_fake, lg, gp

    def generator_step(self, net: nn.Module, x: torch.Tensor, z: torch.Tensor) -> dict:
        """One Adam step of the generator on ``-(mean LSE(x) + lambda * entropy surrogate)``
        and one of the proposal scale on its ``-ELBO``; returns statistics.

        ``net`` is frozen (and left in its current train/eval mode); ``x, z`` are the draws of
        :meth:`sample` used by the EBM step.
        """
        cfg = self.cfg
        with frozen(net):
            lse = torch.logsumexp(net(x), dim=1).mean()
        loss = -lse
        if cfg.entropy_weight != 0:
            c = self.g.score_estimate(x.detach(), z, n_posterior=cfg.n_posterior,
                                      generator=self.rand)
            loss = loss - cfg.entropy_weight * (c * x).sum(1).mean()
            self._posterior_step(x, z)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.g.clamp_sigma(cfg.max_sigma)
        return {"vera_loss": loss.item(), "vera_sigma": self.g.log_sigma.exp().mean().item(),
                "vera_post_sigma": self.g.post_log_sigma.exp().mean().item()}

    def _posterior_step(self, x: torch.Tensor, z: torch.Tensor) -> None:
        post_loss = self.g.posterior_loss(x, z, generator=self.rand)
        (grad,) = torch.autograd.grad(post_loss, [self.g.post_log_sigma])
        self.post_opt.zero_grad(set_to_none=True)
        self.g.post_log_sigma.grad = grad
        self.post_opt.step()


class VERAObjective:
    """VERA as a :class:`~pyclams.training.objectives.Objective` of the CLAMS trainer.

    At each step :meth:`loss` draws fake cells from the generator and returns
    ``weight * (regularised L_g + gamma/2 ||grad_x LSE(x_real)||^2)``; after the network's
    optimiser step, :meth:`after_step` updates the generator on the same draws. The
    generator is built in :meth:`setup` (a new one for every training run) and draws from the
    trainer's seeded torch generator; the regulariser's uniform draw comes from the trainer's
    numpy generator.

    Parameters
    ----------
    config
        A :class:`VERAConfig`, or None for the defaults.
    **overrides
        Fields of :class:`VERAConfig` (e.g. ``hidden=(64,), noise_dim=8``).
    """

    def __init__(self, config: VERAConfig | None = None, **overrides):
        base = config or VERAConfig()
        self.config = replace(base, **overrides)
        self._reg = self.config.regulariser()
        self.vera: VERA | None = None
        self._rng = None
        self._draws: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def needs_input_grad(self) -> bool:
        """The gradient penalty differentiates LSE with respect to the real cells."""
        return self.config.grad_penalty > 0

    def setup(self, ctx: TrainingContext) -> None:
        self.vera = VERA(ctx.n_features, self.config, device=ctx.device, generator=ctx.generator)
        self._rng = ctx.rng

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
             logits: torch.Tensor) -> tuple[torch.Tensor, dict]:
        self._draws = self.vera.sample(x.shape[0])
        lse_real, lse_fake, lg, gp = self.vera.ebm_terms(net, x, logits, self._draws[0])
        reg, passed = regularise(lg, self._reg, draw=float(self._rng.random()))
        stats = {"gen_loss": lg.item(), "gen_passed": float(passed),
                 "lse_real": lse_real.mean().item(), "lse_fake": lse_fake.mean().item()}
        if gp is None:
            return reg, stats
        stats["grad_penalty"] = gp.item()
        return reg + self.config.weight * self.config.grad_penalty * gp, stats

    def after_step(self, net: nn.Module) -> dict:
        stats = self.vera.generator_step(net, *self._draws)
        self._draws = None
        if not math.isfinite(stats["vera_loss"]):
            raise Diverged("VERA generator diverged (non-finite loss)")
        return stats
