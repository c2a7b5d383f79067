import numpy as np
import pytest

from pyclams import metrics


def test_accuracy_and_macro_f1_by_hand():
    t = ["a", "a", "b", "b", "c"]
    p = ["a", "b", "b", "b", "a"]
    assert metrics.accuracy(t, p) == pytest.approx(3 / 5)
    # F1 a: tp1 fp1 fn1 -> 2/4; b: tp2 fp1 fn0 -> 4/5; c: tp0 -> 0
    assert metrics.macro_f1(t, p) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_ece_by_hand():
    conf = [0.96, 0.97, 0.51, 0.52]
    correct = [True, False, True, True]
    # bin (0.95,1]: conf .965 acc .5 -> 2/4*.465 ; bin (0.5,.55]: conf .515 acc 1 -> 2/4*.485
    assert metrics.ece(conf, correct) == pytest.approx(0.5 * 0.465 + 0.5 * 0.485)
    assert metrics.ece([1.0, 1.0], [True, True]) == pytest.approx(0.0)
    assert np.isnan(metrics.ece([0.9, float("nan")], [True, True]))


def test_auroc_by_hand_with_ties():
    score = [0.9, 0.8, 0.8, 0.1]
    pos = [True, True, False, False]
    # pairs: (0.9>0.8)=1, (0.9>0.1)=1, (0.8=0.8)=0.5, (0.8>0.1)=1 -> 3.5/4
    assert metrics.auroc(score, pos) == pytest.approx(3.5 / 4)
    assert metrics.auroc([1, 2], [True, True]) != metrics.auroc([1, 2], [True, True])  # nan


def test_ood_recall_at_id_rate():
    # ID scores 1..10: the 10% quantile is 1.9; OOD cells at 0.5 and 1.5 fall below, 5 does not
    score = np.r_[np.arange(1, 11), [0.5, 1.5, 5.0]]
    is_id = np.r_[np.ones(10, bool), np.zeros(3, bool)]
    assert metrics.ood_recall_at_id_rate(score, is_id, id_rate=0.1) == pytest.approx(2 / 3)
    assert metrics.ood_recall_at_id_rate(score, is_id, id_rate=0.5) == pytest.approx(3 / 3)
    assert np.isnan(metrics.ood_recall_at_id_rate([1, 2], [True, True]))


def test_rejected_shares_and_report():
    s = metrics.rejected_shares([True, False, True, False], [True, True, False, False])
    # rejected: one OOD and one ID cell -> half of the rejected are ID cells
    assert s == {"ood_rejected": 0.5, "id_rejected": 0.5, "realised_fdr": 0.5}
    s = metrics.rejected_shares([True, True, True, False], [True, True, False, False])
    assert s["realised_fdr"] == pytest.approx(1 / 3)
    assert np.isnan(metrics.rejected_shares([False, False], [True, False])["realised_fdr"])
    rep = metrics.annotation_report(["a", "b", "x"], ["a", "a", "a"], [0.9, 0.6, 0.7],
                                    known_labels=["a", "b"], ood_scores={"s": [3, 2, 1]},
                                    rejected=[False, False, True])
    assert rep["accuracy"] == 0.5 and rep["n_ood"] == 1
    assert rep["ood_recall_at_id10_s"] == 1.0
    assert rep["auroc_s"] == 1.0 and rep["ood_rejected"] == 1.0 and rep["id_rejected"] == 0.0
    assert np.isfinite(rep["ece"])
