"""The CLAMS training loop: cross-entropy + regularised L_g, SGLD, early stopping, and a
divergence guard that restores the best weights and records the failure.

Other training terms plug in from outside as :class:`~pyclams.training.objectives.Objective`
(the paper's comparison methods VERA and HDGE live in the repository's ``benchmarks/``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._config import check_whole
from .._logging import logger
from .._progress import progress
from .._threads import enforce_threads
from ..data.loader import FeatureMatrix, send
from ..ebm.buffer import ReplayBuffer, slot_classes
from ..ebm.losses import GenerativeLossConfig, energy_penalty, generative_loss, regularise, tilt
from ..ebm.sgld import SGLDConfig, resolve_step_size, sgld_sample
from .distributed import average_gradients, broadcast_module, shard, world
from .guard import DivergenceGuard, read_stats
from .history import History
from .objectives import Diverged, Objective, TrainingContext

__all__ = ["TrainConfig", "Trainer", "Diverged", "evaluate_logits"]

PRECISIONS = ("auto", "fp32", "tf32", "bf16")
#: host reads of the divergence guard on a GPU: every this many steps
GPU_GUARD_EVERY = 25


@dataclass
class TrainConfig:
    """Optimisation settings.

    Parameters
    ----------
    max_epochs, batch_size, lr, weight_decay
        Adam with (L2) weight decay.
    min_steps_per_epoch
        An epoch is one pass over the training cells, repeated (reshuffled) until at least this
        many steps were taken: small references still get enough SGLD updates per epoch.
    patience
        Stop after this many epochs without a better validation accuracy.
    min_epochs
        Checkpoints are chosen among epochs ``>= min_epochs`` (guards against picking an
        under-trained density in the first epochs, when validation accuracy is already high).
    val_fraction, test_fraction
        Held-out shares of the reference (stratified).
    max_abs_energy, max_loss
        Divergence guard: a non-finite loss, ``|mean LSE| > max_abs_energy`` or a loss above
        ``max_loss`` ends training as diverged.
    guard_every
        The guard's on-device checks are read by the host every this many steps (and at the
        end of each epoch). None: every step on the CPU (where reading costs nothing; the step
        that diverges is not taken) and every 25 steps on a GPU (no host sync inside a step;
        the steps taken after the one that diverged are undone with the rest of the epoch, as
        the weights of the best epoch are restored).
    precision
        Arithmetic of the forward passes: ``"fp32"``, ``"tf32"`` (TF32 matrix products on
        CUDA; plain float32 on the CPU), ``"bf16"`` (bfloat16 autocast) or ``"auto"``
        (default: ``"tf32"`` on CUDA, ``"fp32"`` on the CPU).
    """

    max_epochs: int = 40
    batch_size: int = 128
    min_steps_per_epoch: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10
    min_epochs: int = 5
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_abs_energy: float = 1e4
    max_loss: float = 1e4
    guard_every: int | None = None
    precision: str = "auto"

    def __post_init__(self):
        for name in ("max_epochs", "batch_size", "min_steps_per_epoch", "patience"):
            check_whole(getattr(self, name), name, 1)
        check_whole(self.min_epochs, "min_epochs", 0)
        if self.guard_every is not None:
            check_whole(self.guard_every, "guard_every", 1)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError("lr must be positive and weight_decay non-negative")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in [0, 1) with a sum "
                             "below 1")

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_logits(net: nn.Module, features: FeatureMatrix, rows: np.ndarray, *,
                    batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits of ``rows`` in eval mode, computed in minibatches (CPU tensor)."""
    net.eval()
    out = [net(x).float().cpu()
           for _, x in features.batches(batch_size, subset=rows, device=device)]
    return torch.cat(out) if out else torch.zeros((0, 0))


class Trainer:
    """Fits a network as a CLAMS/JEM hybrid model, or a plain classifier (``gen.enabled``
    False), plus any extra ``objectives`` (see :mod:`pyclams.training.objectives`).

    Nothing inside a step waits for the device: minibatches cross as sparse rows and are
    standardised there (:meth:`~pyclams.data.loader.FeatureMatrix.to_device`), the replay
    buffer and the SGLD noise live there, statistics stay there until the end of the epoch and
    the divergence guard is read every ``train.guard_every`` steps
    (:class:`~pyclams.training.guard.DivergenceGuard`). On the CPU a seeded run draws exactly
    what it drew before these changes. Inside an initialised ``torch.distributed`` process
    group it trains data-parallel (:mod:`pyclams.training.distributed`).
    """

    def __init__(self, net: nn.Module, features: FeatureMatrix, y: np.ndarray, *,
                 train_idx: np.ndarray, val_idx: np.ndarray, n_classes: int,
                 train: TrainConfig, gen: GenerativeLossConfig, sgld: SGLDConfig,
                 device: torch.device, seed: int, feature_clip: float | None,
                 objectives: Sequence[Objective] = (), verbose: bool = True):
        self.net, self.features, self.y = net.to(device), features, np.asarray(y)
        #: data-parallel rank and world size (0, 1 without a process group)
        self.rank, self.world = world()
        train_idx = shard(train_idx, seed=seed, rank=self.rank, size=self.world)
        self.train_idx, self.val_idx = train_idx, val_idx
        self.n_classes = n_classes
        self.cfg, self.gen, self.sgld = train, gen, sgld
        self.device, self.verbose = torch.device(device), verbose
        self.feature_clip = feature_clip
        self.rng = np.random.default_rng(seed if self.world == 1 else [seed, self.rank])
        self.torch_gen = torch.Generator().manual_seed(seed + self.rank)
        #: SGLD noise: drawn on the training device (the CPU generator itself on the CPU)
        self.noise_gen = (self.torch_gen if self.device.type == "cpu"
                          else torch.Generator(device=self.device).manual_seed(seed))
        self.precision = resolve_precision(train.precision, self.device)
        self._autocast = ((lambda: torch.autocast(self.device.type, dtype=torch.bfloat16))
                          if self.precision == "bf16" else None)
        every = train.guard_every or (1 if self.device.type == "cpu" else GPU_GUARD_EVERY)
        self.guard = DivergenceGuard(max_abs_energy=train.max_abs_energy,
                                     max_loss=train.max_loss, every=every)
        self.history = History()
        #: SGLD step size (resolved from the base measure when the config says None)
        self.step_size = resolve_step_size(net, sgld.step_size)
        self.buffer: ReplayBuffer | None = None
        if gen.enabled:
            by_class = {c: train_idx[self.y[train_idx] == c] for c in range(n_classes)}

            def draw_real(c: int, n: int) -> torch.Tensor:
                rows = self.rng.choice(by_class[c], size=n, replace=True)
                return self.features.to_device(rows, self.device)

            # each data-parallel rank holds its share of the buffer
            slots = slot_classes(self.y[train_idx], n_classes,
                                 max(1, -(-sgld.buffer_size // self.world)),
                                 mode=sgld.buffer_classes, rng=self.rng)
            self.buffer = ReplayBuffer(draw_real, slots, init_noise=sgld.init_noise,
                                       rng=self.rng, device=self.device)
        self.objectives = list(objectives)
        ctx = TrainingContext(features.n_features, n_classes, self.device, self.rng,
                              self.torch_gen)
        for obj in self.objectives:
            if hasattr(obj, "setup"):
                obj.setup(ctx)
        self._input_grad = any(getattr(o, "needs_input_grad", False) for o in self.objectives)
        if self.world > 1:
            broadcast_module(self.net)
            logger.info("data-parallel rank %d of %d: %d training cells", self.rank,
                        self.world, len(train_idx))

    # ------------------------------------------------------------------ one step
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in float32 (the forward pass under autocast when bf16 is asked for)."""
        if self._autocast is None:
            return self.net(x)
        with self._autocast():
            return self.net(x).float()

    def _fake_cells(self, n: int) -> torch.Tensor:
        slots, x0, _ = self.buffer.sample(n, reinit_freq=self.sgld.reinit_freq)
        x = sgld_sample(self.net, x0, step_size=self.step_size, noise=self.sgld.noise,
                        n_steps=self.sgld.n_steps, clip=self.feature_clip,
                        generator=self.noise_gen, autocast=self._autocast)
        self.buffer.update(slots, x)
        return x

    def _step(self, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer) -> dict:
        """One optimiser step; returns its statistics as on-device 0-d tensors (and the
        objectives' own values)."""
        self.net.train()
        if self._input_grad:
            x.requires_grad_(True)  # e.g. a gradient penalty on the real cells
        logits = self._forward(x)
        ce = F.cross_entropy(logits, y)
        loss, stats = ce, {"ce": ce.detach(),
                           "acc": (logits.detach().argmax(1) == y).float().mean()}
        for obj in self.objectives:
            term, ostats = obj.loss(self.net, x, y, logits)
            loss = loss + term
            stats.update(ostats)
        if self.gen.enabled:
            reg = self._sgld_term(x, logits, stats)
            if reg is not None:
                loss = loss + reg
        self.guard.record(loss, stats)  # before the backward pass: see TrainConfig.guard_every
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            average_gradients(self.net, self.world)
        opt.step()
        for obj in self.objectives:
            if hasattr(obj, "after_step"):
                stats.update(obj.after_step(self.net))
        return stats

    def _sgld_term(self, x: torch.Tensor, logits: torch.Tensor, stats: dict
                   ) -> torch.Tensor | None:
        """CLAMS/JEM: regularised L_g on SGLD fakes (None when the sampler is skipped), plus
        the energy penalty on the network's tilt when ``energy_reg`` is set."""
        n = x.shape[0]
        draw = float(self.rng.random())
        # SGLD is only needed when L_g can pass: always with a threshold (its value
        # decides), otherwise only when the stochastic unit is on
        if self.gen.threshold is None and draw >= self.gen.p_on:
            return None
        x_fake = self._fake_cells(n)
        lse_real = torch.logsumexp(logits, dim=1)
        lse_fake = torch.logsumexp(self._forward(x_fake), dim=1)
        lg = generative_loss(lse_real, lse_fake)
        reg, passed = regularise(lg, self.gen, draw=draw)
        stats.update(gen_loss=lg.detach(), gen_passed=float(passed),
                     lse_real=lse_real.detach().mean(), lse_fake=lse_fake.detach().mean())
        if self.gen.energy_reg:
            penalty = energy_penalty(tilt(self.net, x, lse_real), tilt(self.net, x_fake, lse_fake))
            stats["energy_penalty"] = penalty.detach()
            reg = reg + self.gen.energy_reg * penalty
        return reg

    # ------------------------------------------------------------------ validation
    def _validate(self) -> dict:
        logits = evaluate_logits(self.net, self.features, self.val_idx,
                                 batch_size=1024, device=self.device)
        y = torch.as_tensor(self.y[self.val_idx])
        return {"val_acc": (logits.argmax(1) == y).float().mean().item(),
                "val_nll": F.cross_entropy(logits, y).item(),
                "val_lse": torch.logsumexp(logits, 1).mean().item()}

    def _better(self, row: dict, best: dict | None) -> bool:
        if best is None:
            return True
        if row["val_acc"] != best["val_acc"]:
            return row["val_acc"] > best["val_acc"]
        return row["val_nll"] < best["val_nll"]

    # ------------------------------------------------------------------ loop
    def fit(self) -> History:
        # denormal floats (tiny gradients once the cross-entropy nears 0) slow CPU
        # arithmetic down by 10-30x; flush them to zero while training
        torch.set_flush_denormal(True)
        enforce_threads()  # the reference's gene selection (numba) may have changed them
        matmul = torch.get_float32_matmul_precision()
        if self.precision == "tf32" and self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matrix products
        try:
            return self._fit()
        finally:
            torch.set_flush_denormal(False)
            torch.set_float32_matmul_precision(matmul)

    def _epoch(self, opt: torch.optim.Optimizer) -> list[dict]:
        """One epoch's steps (their statistics, still on the device)."""
        cfg, steps = self.cfg, []
        while not steps or len(steps) < cfg.min_steps_per_epoch:
            for rows, x in self.features.batches(cfg.batch_size, shuffle=True,
                                                 generator=self.rng, subset=self.train_idx,
                                                 device=self.device):
                if len(rows) < 2:
                    continue
                y = send(torch.from_numpy(self.y[rows]), self.device)
                steps.append(self._step(x, y, opt))
        self.guard.check()
        return steps

    def _fit(self) -> History:
        cfg = self.cfg
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best_row, best_state = None, None
        last_good = (None, copy.deepcopy(self.net.state_dict()))
        since_best = 0
        bar = progress(range(1, cfg.max_epochs + 1), desc="training", verbose=self.verbose)
        for epoch in bar:
            t0 = time.perf_counter()
            try:
                steps = self._epoch(opt)
            except Diverged as err:
                self.history.diverged = True
                self.history.divergence_epoch = epoch
                self.history.divergence_reason = str(err)
                logger.warning("training diverged at epoch %d (%s); restoring the weights of "
                               "epoch %s", epoch, err, self.history.best_epoch)
                break
            row = {"epoch": epoch, **_mean_stats(read_stats(steps)), **self._validate(),
                   "seconds": time.perf_counter() - t0}
            if not math.isfinite(row["val_nll"]):
                self.history.add(**row)
                self.history.diverged, self.history.divergence_epoch = True, epoch
                self.history.divergence_reason = "non-finite validation loss"
                logger.warning("training diverged at epoch %d (non-finite validation loss)",
                               epoch)
                break
            self.history.add(**row)
            last_good = (epoch, copy.deepcopy(self.net.state_dict()))
            bar.set_postfix(acc=f"{row['val_acc']:.3f}", lg=f"{row.get('gen_loss', 0):.2f}")
            eligible = epoch >= min(cfg.min_epochs, cfg.max_epochs)
            if eligible and self._better(row, best_row):
                best_row, best_state, since_best = row, copy.deepcopy(self.net.state_dict()), 0
                self.history.best_epoch = epoch
            elif eligible:
                since_best += 1
                if since_best >= cfg.patience:
                    self.history.stopped_early = True
                    break
        if best_state is None:
            # stopped (diverged) before min_epochs: keep the last epoch that validated
            self.history.best_epoch, best_state = last_good
        self.net.load_state_dict(best_state)
        self.net.eval()
        return self.history


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` is ``"tf32"`` on CUDA and ``"fp32"`` elsewhere; other values pass."""
    if precision == "auto":
        return "tf32" if torch.device(device).type == "cuda" else "fp32"
    return precision


def _mean_stats(steps: list[dict]) -> dict:
    keys = ["ce", "acc", "gen_loss", "gen_passed", "lse_real", "lse_fake"]
    # the objectives' statistics only when some step reported them
    keys += [k for k in dict.fromkeys(k for s in steps for k in s) if k not in keys]
    out = {}
    for k in keys:
        vals = [s[k] for s in steps if k in s]
        out[f"train_{k}" if k in ("ce", "acc") else k] = float(np.mean(vals)) if vals else \
            float("nan")
    return out
