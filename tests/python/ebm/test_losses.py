import math

import pytest
import torch

from pyclams.ebm.losses import (
    LEGACY_KEYS,
    GenerativeLossConfig,
    clip_loss,
    generative_loss,
    regularise,
)


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


