import logging

import numpy as np
import torch

from pyclams import OODOptions
from pyclams.ood.calibrator import Calibrator


def _held_out(seed=0, n=200):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    logits = torch.randn(n, 3, generator=g) + 3 * torch.nn.functional.one_hot(y, 3)
    return logits, y.numpy()


def test_fit_matches_its_parts_and_round_trips():
    (lv, yv), (lt, yt) = _held_out(0), _held_out(1)
    cal, metrics = Calibrator.fit(lv, yv, lt, yt)
    assert cal.n_scores == 400
    np.testing.assert_allclose(cal.scores, torch.logsumexp(torch.cat([lv, lt]), 1).numpy(),
                               rtol=1e-6)
    assert metrics["temperature"] == cal.temperature > 0
    assert 0 <= metrics["test_ece"] <= 1 and 0 <= metrics["val_accuracy"] <= 1
    back = Calibrator.from_config(cal.to_config(), cal.tensors())
    assert back.temperature == cal.temperature
    np.testing.assert_array_equal(back.predicted, cal.predicted)
    p = back.probabilities(lv)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


def test_flag_methods_and_small_calibration_warning(caplog):
    cal = Calibrator(1.0, np.linspace(0, 10, 30).astype(np.float32), np.zeros(30, np.int64))
    scores = np.array([-50.0, 5.0, 9.0])
    conf = np.array([0.9, 0.4, 0.99])
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        p, flagged = cal.flag(scores, np.zeros(3, np.int64), conf, OODOptions(fdr=0.01))
    assert "normal-tail extrapolation" in caplog.text
    assert flagged.tolist() == [True, False, False] and p[0] < 0.01
    _, by_conf = cal.flag(scores, np.zeros(3, np.int64), conf,
                          OODOptions(method="max_prob", min_confidence=0.5))
    assert by_conf.tolist() == [False, True, False]
