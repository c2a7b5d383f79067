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
        p, flagged, info = cal.flag(scores, np.zeros(3, np.int64), conf,
                                    OODOptions(fdr=0.01, calibration="class"))
    assert "normal-tail extrapolation" in caplog.text
    assert info == {"calibration_used": "class"}
    assert flagged.tolist() == [True, False, False] and p[0] < 0.01
    _, by_conf, _ = cal.flag(scores, np.zeros(3, np.int64), conf,
                             OODOptions(method="max_prob", min_confidence=0.5))
    assert by_conf.tolist() == [False, True, False]


def _shifted_query(seed=0, n_known=400, n_novel=60, shift=-8.0, scale=0.5):
    """Held-out reference scores of 2 classes, and a query whose known cells score ``shift``
    lower with ``scale`` times the spread, plus a novel group far below its class."""
    rng = np.random.default_rng(seed)
    ref_pred = np.repeat([0, 1], 300)
    ref = np.where(ref_pred == 0, -20.0, -30.0) - rng.gumbel(size=600)  # a long lower tail
    known_pred = rng.integers(0, 2, n_known)
    known = shift + np.where(known_pred == 0, -20.0, -30.0) - scale * rng.gumbel(size=n_known)
    novel = shift - 20.0 - 6.0 + 0.3 * rng.normal(size=n_novel)
    scores = np.concatenate([known, novel])
    pred = np.concatenate([known_pred, np.zeros(n_novel, np.int64)])
    is_novel = np.r_[np.zeros(n_known, bool), np.ones(n_novel, bool)]
    return ref.astype(np.float32), ref_pred, scores, pred, is_novel


def test_query_calibration_follows_a_shifted_query_and_records_it(caplog):
    ref, ref_pred, scores, pred, is_novel = _shifted_query()
    cal = Calibrator(1.0, ref, ref_pred)
    conf = np.ones(scores.size)
    with caplog.at_level(logging.INFO, logger="pyclams"):
        _, by_ref, _ = cal.flag(scores, pred, conf, OODOptions(calibration="class"))
        p, by_query, info = cal.flag(scores, pred, conf, OODOptions())
    # the reference-calibrated test flags most known cells of the shifted query
    assert by_ref[~is_novel].mean() > 0.5
    # the query-aware one flags the novel group and few known cells
    assert by_query[is_novel].mean() > 0.9
    assert by_query[~is_novel].mean() < 0.02
    assert info["calibration_used"] == "query" and info["score_neighbors"] == 0
    assert info["query_shift"] < 0.05 and "scores lower in log p(x)" in caplog.text
    assert set(info["class_maps"]) == {0, 1}
    assert info["class_maps"][0]["scale"] > 1  # the query's spread is narrower
    assert p.shape == scores.shape and np.all((p > 0) & (p <= 1))


def test_neighbour_averages_on_both_sides_and_the_small_query_fallback(caplog):
    ref, ref_pred, scores, pred, is_novel = _shifted_query()
    rng = np.random.default_rng(0)
    # neighbourhoods within each class (reference) and within known / novel cells (query)
    ref_nb = np.stack([np.r_[i, rng.choice(np.flatnonzero(ref_pred == ref_pred[i]), 30)]
                       for i in range(ref.size)])
    group = pred + 2 * is_novel
    q_nb = np.stack([np.r_[i, rng.choice(np.flatnonzero(group == group[i]), 15)]
                     for i in range(scores.size)])
    cal = Calibrator(1.0, ref, ref_pred, ref_nb)
    _, flagged, info = cal.flag(scores, pred, np.ones(scores.size), OODOptions(), q_nb)
    assert info["score_neighbors"] == 15
    assert flagged[is_novel].all() and flagged[~is_novel].mean() < 0.02
    # the reference side is averaged with the query's k, not with all stored neighbours
    np.testing.assert_allclose(cal.reference_scores(15), ref[ref_nb[:, :16]].mean(1), rtol=1e-5)
    old = Calibrator(1.0, ref, ref_pred)  # saved before held-out neighbourhoods were stored
    _, _, info = old.flag(scores, pred, np.ones(scores.size), OODOptions(), q_nb)
    assert info["score_neighbors"] == 0
    few = slice(0, 20)
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        _, _, info = cal.flag(scores[few], pred[few], np.ones(20), OODOptions())
    assert info["calibration_used"] == "class" and "too few" in caplog.text


def test_fit_stores_held_out_neighbourhoods_that_round_trip():
    (lv, yv), (lt, yt) = _held_out(0), _held_out(1)
    points = torch.cat([lv, lt]).numpy()
    cal, _ = Calibrator.fit(lv, yv, lt, yt, held_points=points)
    assert cal.neighbours.shape == (400, 31)
    np.testing.assert_array_equal(cal.neighbours[:, 0], np.arange(400))
    back = Calibrator.from_config(cal.to_config(), cal.tensors())
    np.testing.assert_array_equal(back.neighbours, cal.neighbours)
    assert Calibrator.fit(lv, yv, lt, yt)[0].neighbours is None
