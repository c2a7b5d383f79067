import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pyclams import CLAMS
from pyclams.ebm.buffer import ReplayBuffer, slot_classes
from pyclams.ebm.losses import (
    LEGACY_KEYS,
    GenerativeLossConfig,
    clip_loss,
    generative_loss,
    regularise,
)
from pyclams.ebm.sgld import sgld_sample
from pyclams.training import trainer as trainer_mod
from pyclams.training.objectives import Diverged, Objective, TrainingContext

from .conftest import FAST, FAST_SGLD, TwoWells, make_counts


def test_generative_loss_is_fake_minus_real():
    real = torch.tensor([1.0, 3.0])
    fake = torch.tensor([0.5, 0.5, 2.0])
    assert generative_loss(real, fake).item() == pytest.approx(1.0 - 2.0)


@pytest.mark.parametrize("clip,value,expected", [
    ("none", -2.0, -2.0), ("elu", -2.0, math.exp(-2.0) - 1), ("elu", 1.5, 1.5),
    ("relu", -2.0, 0.0), ("relu", 0.7, 0.7), ("leakyrelu", -2.0, -0.02)])
def test_clip_functions(clip, value, expected):
    assert clip_loss(torch.tensor(value), clip).item() == pytest.approx(expected, rel=1e-6)


def test_stochastic_unit_and_threshold():
    cfg = GenerativeLossConfig(clip="elu", p_on=0.25)
    lg = torch.tensor(-3.0)
    out, passed = regularise(lg, cfg, draw=0.1)
    assert passed and out.item() == pytest.approx(math.exp(-3.0) - 1)
    out, passed = regularise(lg, cfg, draw=0.3)
    assert not passed and out.item() == 0.0
    thr = GenerativeLossConfig(clip="none", p_on=1.0, threshold=-1.0)
    assert regularise(torch.tensor(-2.0), thr, draw=0.0) == (torch.tensor(0.0), False)
    out, passed = regularise(torch.tensor(-0.5), thr, draw=0.0)
    assert passed and out.item() == pytest.approx(-0.5)
    # the threshold is tested on the unclipped loss
    both = GenerativeLossConfig(clip="elu", p_on=1.0, threshold=-1.0)
    assert not regularise(torch.tensor(-1.5), both, draw=0.0)[1]


def test_presets():
    assert GenerativeLossConfig.preset("clams").clip == "elu"
    assert GenerativeLossConfig.preset("clams").p_on == 0.25
    assert GenerativeLossConfig.preset("jem").clip == "none"
    assert not GenerativeLossConfig.preset("classifier").enabled
    with pytest.raises(ValueError):
        GenerativeLossConfig(clip="tanh")


def test_from_dict_reads_older_model_files():
    cfg = GenerativeLossConfig.preset("clams")
    assert GenerativeLossConfig.from_dict(cfg.to_dict()) == cfg
    # before the tilt penalty: no energy_reg (off); before VERA / HDGE left: their settings
    assert GenerativeLossConfig.from_dict({"clip": "elu", "p_on": 0.25}).energy_reg == 0.0
    legacy = dict.fromkeys(LEGACY_KEYS, 0)
    for method, enabled in [("sgld", True), ("hdge_jem", True), ("vera", False),
                            ("hdge", False)]:
        d = {**cfg.to_dict(), **legacy, "method": method}
        assert GenerativeLossConfig.from_dict(d).enabled is enabled  # vera, hdge: no SGLD
    with pytest.raises(ValueError, match="no_such_key"):
        GenerativeLossConfig.from_dict({"no_such_key": 1})


def test_sgld_lowers_energy_of_noise_and_leaves_model_alone():
    net = TwoWells().train()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(256, 2, generator=gen) * 4
    e0 = -torch.logsumexp(net(x0), 1)
    x = sgld_sample(net, x0, step_size=0.05, noise=0.01, n_steps=100, generator=gen)
    e1 = -torch.logsumexp(net(x), 1)
    assert e1.mean() < e0.mean() - 5
    assert net.training and net.mu.grad is None and net.mu.requires_grad
    # class-conditional: chains climb towards the requested well
    y = torch.zeros(256, dtype=torch.long)
    xc = sgld_sample(net, x0, step_size=0.05, noise=0.01, n_steps=200, y=y, generator=gen)
    assert (xc.sum(1) > 0).float().mean() > 0.95


def test_buffer_follows_training_proportions():
    rng = np.random.default_rng(0)
    y = np.array([0] * 700 + [1] * 200 + [2] * 100)
    slots = slot_classes(y, 3, 1000, mode="proportional", rng=rng)
    assert np.bincount(slots).tolist() == [700, 200, 100]
    slots = slot_classes(y, 3, 999, mode="balanced", rng=rng)
    assert np.bincount(slots).tolist() == [333, 333, 333]
    slots = slot_classes(y, 3, 7, mode="proportional", rng=rng)
    assert np.bincount(slots, minlength=3).sum() == 7


def test_buffer_restarts_from_real_cells_of_the_slot_class():
    rng = np.random.default_rng(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 100.0]])

    def draw_real(c, n):
        return centres[c].repeat(n, 1)

    slots = slot_classes(np.array([0, 0, 0, 1]), 2, 400, mode="proportional", rng=rng)
    buf = ReplayBuffer(draw_real, slots, init_noise=0.1, rng=rng, device=torch.device("cpu"))
    assert (buf.slot_y == 1).sum() == 100
    # states sit next to the centre of their class
    assert torch.allclose(buf.x.mean(1), centres[buf.slot_y].mean(1), atol=1.0)
    idx, x, y = buf.sample(64, reinit_freq=1.0)
    assert torch.allclose(x.mean(1), centres[y].mean(1), atol=1.0)
    buf.update(idx, torch.full_like(x, 5.0))
    assert torch.all(buf.x[torch.as_tensor(idx)] == 5.0)


# ---------------------------------------------------------------------------- the trainer
def _fit_small(preset: str, generative: dict | None = None, objectives=()) -> CLAMS:
    # the legacy step below predates the tilt energy penalty of the clams preset
    generative = {**(generative or {}), "energy_reg": 0.0}
    train = {**FAST, "max_epochs": 3, "min_epochs": 1, "min_steps_per_epoch": 6}
    return CLAMS(preset=preset, n_top_genes=80, train=train, sgld=FAST_SGLD,
                 network={"widths": (64, 32), "blocks_per_stage": 1}, generative=generative,
                 objectives=objectives).fit(make_counts(60, n_classes=3, seed=0),
                                            labels_key="cell_type", seed=3, verbose=False,
                                            device="cpu")


def _legacy_step(self, x, y, opt):
    """``Trainer._step`` as it was before other EBMs and objectives were added."""
    self.net.train()
    logits = self.net(x)
    ce = F.cross_entropy(logits, y)
    loss, stats = ce, {"ce": ce.item(),
                       "acc": (logits.argmax(1) == y).float().mean().item()}
    if self.gen.enabled:
        draw = float(self.rng.random())
        if self.gen.threshold is not None or draw < self.gen.p_on:
            x_fake = self._fake_cells(x.shape[0])
            lse_real = torch.logsumexp(logits, dim=1)
            lse_fake = torch.logsumexp(self.net(x_fake), dim=1)
            lg = generative_loss(lse_real, lse_fake)
            reg, passed = regularise(lg, self.gen, draw=draw)
            loss = loss + reg
            stats.update(gen_loss=lg.item(), gen_passed=float(passed),
                         lse_real=lse_real.mean().item(), lse_fake=lse_fake.mean().item())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return stats


@pytest.mark.parametrize("preset,generative", [
    ("clams", None), ("clams", {"threshold": -1.0}), ("jem", None)])
def test_presets_train_exactly_as_the_first_step(preset, generative, monkeypatch):
    """Same seed, same model id and history as the original training step: the CLAMS / JEM
    paths make the same random draws in the same order."""
    new = _fit_small(preset, generative)
    monkeypatch.setattr(trainer_mod.Trainer, "_step", _legacy_step)
    old = _fit_small(preset, generative)
    assert new.model_id == old.model_id
    pd.testing.assert_frame_equal(new.history.drop(columns="seconds"),
                                  old.history.drop(columns="seconds"))


class Probe:
    """An objective that adds zero and records how the trainer called it."""

    needs_input_grad = True

    def __init__(self, fail_at: int | None = None):
        self.ctx, self.steps, self.input_grad, self.fail_at = None, 0, [], fail_at

    def setup(self, ctx: TrainingContext) -> None:
        self.ctx = ctx

    def loss(self, net, x, y, logits):
        self.steps += 1
        self.input_grad.append(x.requires_grad)
        if self.steps == self.fail_at:
            raise Diverged("probe gave up")
        return logits.sum() * 0.0, {"probe_loss": 0.0}

    def after_step(self, net) -> dict:
        return {"probe_after": float(self.steps)}


def test_objectives_are_called_and_a_zero_objective_changes_nothing():
    probe = Probe()
    assert isinstance(probe, Objective)
    plain, probed = _fit_small("clams"), _fit_small("clams", objectives=[probe])
    assert probed.model_id == plain.model_id  # it draws nothing and adds 0
    assert probe.ctx.n_classes == 3 and probe.ctx.n_features == 80
    assert probe.steps > 0 and all(probe.input_grad)
    hist = probed.history
    assert (hist["probe_loss"] == 0).all() and (hist["probe_after"] > 0).all()
    failing = _fit_small("classifier", objectives=[Probe(fail_at=1)])
    assert failing.history_.diverged and failing.history_.divergence_reason == "probe gave up"
