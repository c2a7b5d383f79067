"""The other EBMs of the comparison: VERA, HDGE and HDGE + JEM, objectives of the trainer."""

from __future__ import annotations

import json
import logging
import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import FAST, FAST_SGLD, TwoWells, make_counts
from torch import nn

from clams_benchmark.ebm_methods import PRESET_METHODS, build_model
from clams_benchmark.hdge import HDGEObjective, LogitQueue, hdge_loss
from clams_benchmark.vera import VERA, VERAConfig, VERAGenerator, VERAObjective
from pyclams import CLAMS
from pyclams.ebm.losses import PRESETS
from pyclams.training.objectives import Diverged, Objective

SMALL_NET = {"widths": (64, 32), "blocks_per_stage": 1}
METHODS = ("vera", "hdge", "hdge_jem")


def gaussian_cells(n_per_class: int = 200, *, n_classes: int = 3, n_genes: int = 50,
                   seed: int = 0, prefix: str = "c") -> ad.AnnData:
    """Log-scale values: Gaussian classes, class k shifted up on its own 5 marker genes."""
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for k in range(n_classes):
        mu = np.full(n_genes, 2.0)
        mu[5 * k:5 * (k + 1)] += 1.5
        xs.append(np.clip(mu + 0.7 * rng.standard_normal((n_per_class, n_genes)), 0, None))
        labels += [f"type{k}"] * n_per_class
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)},
                       index=[f"{prefix}{i}" for i in range(len(labels))])
    return ad.AnnData(X=np.vstack(xs).astype(np.float32), obs=obs,
                      var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)]))


def fit(method: str, ref: ad.AnnData, *, seed: int = 0, options: dict | None = None,
        train: dict | None = None, is_log: bool | None = None, n_top_genes: int = 50) -> CLAMS:
    m = build_model(method, objective_options=options, n_top_genes=n_top_genes,
                    train={**FAST, **(train or {})}, sgld=FAST_SGLD, network=SMALL_NET)
    return m.fit(ref, labels_key="cell_type", seed=seed, verbose=False, device="cpu",
                 is_log=is_log)


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("preset,options", [
    ("vera", None), ("hdge", None), ("hdge_jem", None),
    ("hdge", {"queue_size": 256, "normalize": True, "temperature": 0.1}),
])
def test_methods_train_and_beat_chance(preset, options):
    ref = gaussian_cells(200, seed=0)
    query = gaussian_cells(50, seed=1, prefix="q")
    m = fit(preset, ref, options=options, is_log=True)
    core, objective = PRESET_METHODS[preset][:2]
    assert m.preset == core and m.gen_config.enabled == (core == "jem")
    assert [type(o) for o in m.objectives] == [{"vera": VERAObjective,
                                                "hdge": HDGEObjective}[objective]]
    assert all(isinstance(o, Objective) for o in m.objectives)
    df = m.predict(query)
    truth = query.obs["cell_type"].astype(str).to_numpy()
    assert np.mean(df["label_raw"].to_numpy() == truth) > 0.85  # chance is 1/3
    assert m.metrics_["test_accuracy"] > 0.85
    assert not m.history_.diverged
    hist = m.history
    assert np.isfinite(hist["val_lse"]).all()
    if preset in ("hdge", "hdge_jem"):
        assert hist["hdge_loss"].notna().all()
    if preset in ("vera", "hdge_jem"):
        assert hist["gen_loss"].notna().all() and hist["lse_fake"].notna().all()
    else:
        assert hist["gen_loss"].isna().all()  # HDGE alone draws no fake cells
    if preset == "vera":
        assert {"vera_sigma", "grad_penalty"} <= set(hist.columns)
        assert (hist["vera_sigma"].between(0.01 - 1e-6, 0.3 + 1e-6)).all()


def test_methods_annotate_and_flag_an_unseen_type():
    ref = make_counts(60, n_classes=3, seed=0)
    query = make_counts(40, n_classes=4, seed=1, prefix="q")
    for preset in ("vera", "hdge"):
        m = fit(preset, ref, n_top_genes=80)
        out = m.annotate(query, copy=True)
        assert out.uns["clams"]["preset"] == "classifier"  # + the objective, not saved
        p = out.obs["clams_ood_pvalue"].to_numpy()
        assert np.all((p > 0) & (p <= 1))
        unseen = out.obs["cell_type"].astype(str).to_numpy() == "type3"
        # the unseen type sits in the low-density tail of log p(x)
        assert np.median(p[unseen]) < np.median(p[~unseen])


@pytest.mark.parametrize("preset", ["vera", "hdge"])
def test_divergence_guard_covers_the_objectives(preset, caplog):
    ref = make_counts(60, n_classes=3, seed=0)
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        m = fit(preset, ref, n_top_genes=80, train={"max_abs_energy": 1e-3, "min_epochs": 1})
    assert m.history_.diverged and m.history_.divergence_epoch == 1
    assert "energy exploded" in m.history_.divergence_reason
    assert "DIVERGED" in caplog.text


# ---------------------------------------------------------------------------- save / load
def _legacy_config(method: str, cfg: dict) -> dict:
    """``config.json`` as pyclams wrote it while VERA and HDGE were presets of the package."""
    legacy = {"method": method, "vera_noise_dim": 32, "vera_hidden": [256, 256],
              "vera_lr": 0.002, "vera_post_lr": 0.001, "vera_entropy_weight": 1e-4,
              "vera_grad_penalty": 0.1, "vera_n_posterior": 20, "vera_max_sigma": 0.3,
              "hdge_weight": 1.0, "hdge_mode": "class", "hdge_temperature": 1.0,
              "hdge_normalize": False, "hdge_queue_size": 0}
    gen = cfg["training"]["generative"]
    cfg["training"]["generative"] = {**gen, **legacy, "enabled": True,
                                     **({"weight": 0.01} if method == "vera" else {})}
    cfg["preset"] = method
    return cfg


@pytest.mark.parametrize("method", METHODS)
def test_models_round_trip_and_old_files_still_load(method, tmp_path):
    ref = make_counts(60, n_classes=3, seed=0)
    options = {"hidden": [16, 8], "noise_dim": 4} if method == "vera" else {"queue_size": 64}
    m = fit(method, ref, n_top_genes=80, options=options, train={"max_epochs": 2})
    m.save(tmp_path / "m")
    back = CLAMS.load(tmp_path / "m", device="cpu")
    assert back.preset == m.preset and back.gen_config == m.gen_config
    assert back.model_id == m.model_id and back.objectives == []  # objectives are not saved
    query = make_counts(20, n_classes=3, seed=4, prefix="q")
    expected = m.predict(query)
    pd.testing.assert_frame_equal(back.predict(query), expected)
    # the same model in the layout of an older pyclams (preset "vera", vera_* / hdge_* keys)
    path = tmp_path / "m" / "config.json"
    path.write_text(json.dumps(_legacy_config(method, json.loads(path.read_text()))))
    old = CLAMS.load(tmp_path / "m", device="cpu")
    assert old.preset == method and old.model_id == m.model_id
    assert old.gen_config.enabled == (method == "hdge_jem")  # only hdge_jem drew SGLD cells
    pd.testing.assert_frame_equal(old.predict(query), expected)


def test_configs_and_validation():
    assert set(PRESETS) == {"clams", "jem", "classifier"}
    assert set(METHODS) <= set(PRESET_METHODS)
    vera = VERAConfig()
    assert vera.clip == "none" and vera.p_on == 1.0 and vera.weight == pytest.approx(0.01)
    assert vera.entropy_weight == pytest.approx(1e-4) and vera.grad_penalty == 0.1
    assert VERAConfig(hidden=[8, 4]).hidden == (8, 4)  # JSON gives lists back
    obj = VERAObjective(noise_dim=4)
    assert obj.config.noise_dim == 4 and obj.needs_input_grad
    assert not VERAObjective(grad_penalty=0.0).needs_input_grad
    with pytest.raises(ValueError, match="clip"):
        VERAConfig(clip="tanh")
    with pytest.raises(ValueError, match="positive"):
        VERAConfig(noise_dim=0)
    with pytest.raises(ValueError, match="mode"):
        HDGEObjective(mode="both")
    with pytest.raises(ValueError, match="without an objective"):
        build_model("clams", objective_options={"noise_dim": 4})


# ---------------------------------------------------------------------------- HDGE loss
LOGITS = [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]
LABELS = [1, 0, 0]


def _lse(values) -> float:
    return math.log(sum(math.exp(v) for v in values))


def test_hdge_class_loss_equals_hand_computation():
    logits, y = torch.tensor(LOGITS), torch.tensor(LABELS)
    col0, col1 = [1.0, 0.5, 3.0], [2.0, -1.0, 0.0]
    expected = ((_lse(col1) - 2.0) + (_lse(col0) - 0.5) + (_lse(col0) - 3.0)) / 3
    assert hdge_loss(logits, y).item() == pytest.approx(expected, rel=1e-6)


def test_hdge_joint_loss_equals_hand_computation():
    logits, y = torch.tensor(LOGITS), torch.tensor(LABELS)
    log_z = _lse([v for row in LOGITS for v in row])
    expected = ((log_z - 2.0) + (log_z - 0.5) + (log_z - 3.0)) / 3
    assert hdge_loss(logits, y, mode="joint").item() == pytest.approx(expected, rel=1e-6)


def test_hdge_queue_and_temperature_equal_hand_computation():
    logits = torch.tensor(LOGITS, requires_grad=True)
    y = torch.tensor(LABELS)
    queue = torch.tensor([[0.0, 1.0], [4.0, -2.0]], requires_grad=True)
    t = 2.0
    col0 = [v / t for v in (1.0, 0.5, 3.0, 0.0, 4.0)]
    col1 = [v / t for v in (2.0, -1.0, 0.0, 1.0, -2.0)]
    expected = ((_lse(col1) - 1.0) + (_lse(col0) - 0.25) + (_lse(col0) - 1.5)) / 3
    loss = hdge_loss(logits, y, queue=queue, temperature=t)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert queue.grad is None  # the queue is a constant
    # L2-normalised logits: [3, 4] -> [0.6, 0.8]
    one = hdge_loss(torch.tensor([[3.0, 4.0], [0.0, -2.0]]), torch.tensor([1, 1]),
                    normalize=True, temperature=0.1)
    col = [8.0, -10.0]
    assert one.item() == pytest.approx(((_lse(col) - 8.0) + (_lse(col) + 10.0)) / 2, rel=1e-6)


def test_hdge_loss_is_minimised_by_the_own_class_logit():
    logits = torch.zeros(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    hdge_loss(logits, y).backward()
    # the positive logit goes up (negative gradient), other cells' logits for that class down
    assert logits.grad[1, 1] < 0 and logits.grad[2, 2] < 0
    assert logits.grad[1, 0] > 0 and logits.grad[0, 1] > 0
    # without a queue the gradient of each class column sums to zero (no global drift)
    torch.testing.assert_close(logits.grad.sum(0), torch.zeros(3), atol=1e-7, rtol=0)


def test_logit_queue_is_fifo_and_bounded():
    q = LogitQueue(3, 2)
    assert q.get() is None
    q.push(torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    q.push(torch.tensor([[3.0, 3.0], [4.0, 4.0]]))
    assert len(q) == 3
    assert q.get()[:, 0].tolist() == [3.0, 4.0, 1.0]  # newest first, oldest dropped
    empty = LogitQueue(0, 2)
    empty.push(torch.ones(5, 2))
    assert empty.get() is None


# ---------------------------------------------------------------------------- VERA
def test_vera_generator_climbs_a_fixed_energy_and_leaves_it_alone():
    torch.manual_seed(0)
    net = TwoWells().train()
    cfg = VERAConfig(noise_dim=2, hidden=(32,), lr=1e-2)
    vera = VERA(2, cfg, generator=torch.Generator().manual_seed(0))

    def mean_lse() -> float:
        with torch.no_grad():
            x, _ = vera.sample(512)
            return torch.logsumexp(net(x), 1).mean().item()

    before = mean_lse()
    for _ in range(60):
        stats = vera.generator_step(net, *vera.sample(64))
    after = mean_lse()
    assert after > before + 2.0
    assert math.isfinite(stats["vera_loss"])
    assert 0.01 - 1e-6 <= stats["vera_sigma"] <= 0.3 + 1e-6
    assert net.mu.grad is None and net.mu.requires_grad and net.training


def test_vera_entropy_score_matches_the_exact_gaussian_score():
    """Linear generator: q(x) = N(b, a a^T + s^2 I), -grad log q(x) = Sigma^-1 (x - b)."""
    torch.manual_seed(0)
    g = VERAGenerator(2, noise_dim=1, hidden=())
    a, b, s = torch.tensor([1.0, 0.5]), torch.tensor([0.2, -0.1]), 0.5
    with torch.no_grad():
        g.mu[0].weight.copy_(a.view(2, 1))
        g.mu[0].bias.copy_(b)
        g.log_sigma.fill_(math.log(s))
        post_sd = 1.0 / math.sqrt(1.0 + float(a @ a) / s**2)
        g.post_log_sigma.fill_(math.log(post_sd))
    gen = torch.Generator().manual_seed(1)
    x, z = g.sample(6, generator=gen)
    c = g.score_estimate(x.detach(), z, n_posterior=4000, generator=gen)
    sigma = torch.outer(a, a) + s**2 * torch.eye(2)
    exact = (x.detach() - b) @ torch.linalg.inv(sigma)
    torch.testing.assert_close(c, exact, rtol=0.05, atol=0.05)


def test_vera_posterior_scale_moves_toward_the_true_posterior():
    torch.manual_seed(0)
    cfg = VERAConfig(noise_dim=1, post_lr=0.05)
    vera = VERA(2, cfg, generator=torch.Generator().manual_seed(0))
    g = vera.g
    g.mu = nn.Sequential(nn.Linear(1, 2))
    with torch.no_grad():
        g.mu[0].weight.copy_(torch.tensor([[1.0], [0.5]]))
        g.mu[0].bias.zero_()
        g.log_sigma.fill_(math.log(0.3))
    target = 1.0 / math.sqrt(1.0 + 1.25 / 0.09)  # sd of p(z|x)
    for _ in range(300):
        x, z = vera.sample(256)
        vera._posterior_step(x, z)
    assert g.post_log_sigma.exp().item() == pytest.approx(target, rel=0.15)


def test_vera_step_raises_on_a_nonfinite_generator(monkeypatch):
    ref = make_counts(60, n_classes=3, seed=0)
    real_step = VERA.generator_step

    def broken(self, net, x, z):
        stats = real_step(self, net, x, z)
        stats["vera_loss"] = float("nan")
        return stats

    monkeypatch.setattr(VERA, "generator_step", broken)
    m = fit("vera", ref, n_top_genes=80, train={"min_epochs": 1})
    assert m.history_.diverged and "VERA generator" in m.history_.divergence_reason
    assert issubclass(Diverged, RuntimeError)
