import numpy as np
import pytest
import torch

from pyclams.ood.calibration import fit_temperature
from pyclams.ood.conformal import benjamini_hochberg, classwise_pvalues, conformal_pvalues


def test_conformal_pvalue_by_hand():
    cal = np.array([1.0, 2.0, 3.0, 4.0])
    p = conformal_pvalues(np.array([0.5, 2.0, 10.0]), cal, tail=False)
    np.testing.assert_allclose(p, [1 / 5, 3 / 5, 5 / 5])


def test_tail_extrapolation_only_below_every_calibration_score():
    from scipy.stats import norm
    cal = np.array([1.0, 2.0, 3.0, 4.0])
    s = np.array([-5.0, 0.5, 1.0, 2.0, 10.0])
    p = conformal_pvalues(s, cal)
    np.testing.assert_allclose(p[2:], [2 / 5, 3 / 5, 5 / 5])  # rank p-values kept
    m, sd = cal.mean(), cal.std(ddof=1)
    expected = norm.cdf((s[:2] - m) / sd) / norm.cdf((1.0 - m) / sd) / 5
    np.testing.assert_allclose(p[:2], expected, rtol=1e-6)
    assert p[0] < p[1] < 1 / 5  # decreasing with the score, below the rank floor


def test_conformal_pvalues_uniform_on_exchangeable_id_cells():
    rng = np.random.default_rng(0)
    hits = {0.05: [], 0.2: [], 0.5: []}
    for _ in range(200):
        cal = rng.normal(size=300)
        test = rng.normal(size=300)
        p = conformal_pvalues(test, cal)
        for a in hits:
            hits[a].append(np.mean(p <= a))
    for a, h in hits.items():
        assert abs(np.mean(h) - a) < 0.01, (a, np.mean(h))


def test_classwise_uses_each_class_and_falls_back_to_pooled():
    cal = np.concatenate([np.arange(100.0), np.arange(100.0) + 1000, [5.0, 6.0]])
    cal_pred = np.array([0] * 100 + [1] * 100 + [2, 2])
    p = classwise_pvalues(np.array([50.0, 50.0, 50.0]), np.array([0, 1, 2]), cal, cal_pred,
                          tail=False)
    assert p[0] == pytest.approx(52 / 101)  # 51 of class 0 are <= 50
    assert p[1] == pytest.approx(1 / 101)   # below every class-1 score
    assert p[2] == pytest.approx((1 + 53) / 203)  # class 2 too small: pooled
    pooled = classwise_pvalues(np.array([50.0]), np.array([1]), cal, cal_pred, mode="pooled")
    assert pooled[0] == pytest.approx(54 / 203)
    with_tail = classwise_pvalues(np.array([50.0]), np.array([1]), cal, cal_pred)
    assert with_tail[0] < 1e-10  # far below every class-1 score


def test_benjamini_hochberg_by_hand():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # thresholds 0.05*k/10: k=2 -> 0.01 passes, k=3 -> 0.015 fails ... k=5 -> .025 fails
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), [True, True] + [False] * 8)
    np.testing.assert_array_equal(benjamini_hochberg(p[::-1], 0.05),
                                  ([True, True] + [False] * 8)[::-1])
    assert benjamini_hochberg(np.array([0.9, 0.8]), 0.05).sum() == 0


def test_temperature_recovers_known_temperature():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 4, generator=gen) * 3
    y = torch.multinomial(torch.softmax(z / 2.5, 1), 1, generator=gen).squeeze(1)
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.05)
