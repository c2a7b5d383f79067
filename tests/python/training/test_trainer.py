
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pyclams import CLAMS
from pyclams.ebm.losses import (
    generative_loss,
    regularise,
)
from pyclams.training import trainer as trainer_mod
from pyclams.training.objectives import Diverged, Objective, TrainingContext

from ..conftest import FAST, FAST_SGLD, make_counts


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
