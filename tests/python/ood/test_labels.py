import logging

import numpy as np
import pytest

from pyclams.ood import labels as lb
from pyclams.ood.record import name_records


def _two_types(n=20):
    """Cells 0..n-1 of type 0 and n..2n-1 of type 1; each cell's 5 neighbours are the next
    cells of its own kind (on a ring)."""
    idx = np.array([[i] + [(i // n) * n + (i + d) % n for d in range(1, 6)]
                    for i in range(2 * n)])
    probs = np.zeros((2 * n, 2))
    probs[:n] = [0.96, 0.04]
    probs[n:] = [0.05, 0.95]
    return probs, idx


def test_cell_mode_and_no_graph_give_the_cells_own_answer():
    probs, idx = _two_types()
    probs[3] = [0.3, 0.7]  # a lone mistake among type 0
    for neighbours, mode in ((idx, "cell"), (None, "auto"), (None, "neighbourhood")):
        label, conf, info = lb.cell_labels(probs, neighbours, mode)
        np.testing.assert_array_equal(label, probs.argmax(1))
        np.testing.assert_allclose(conf, probs.max(1))
        assert info["label_mode_used"] == "cell"


def test_auto_corrects_a_lone_mistake_where_the_graph_keeps_types_apart():
    probs, idx = _two_types()
    probs[3] = [0.3, 0.7]
    label, conf, info = lb.cell_labels(probs, idx, "auto")
    assert label[3] == 0 and conf[3] == 1.0  # consensus of its type-0 neighbourhood
    # 5 of type 0's 95 neighbour slots hold the mistaken cell
    assert info["graph_purity"] == {0: 90 / 95, 1: 1.0}
    assert info["neighbourhood_labelled"] == 1.0


def test_auto_keeps_own_calls_where_the_graph_mixes_two_types():
    # a minority type (1) whose cells sit among type-0 cells in the query's graph: the
    # consensus would absorb them, "auto" keeps the network's own calls
    probs, idx = _two_types()
    n = probs.shape[0] // 2
    minority = np.arange(0, n, 2)
    probs[minority] = [0.05, 0.95]
    label, conf, info = lb.cell_labels(probs, idx, "auto")
    whole, _, _ = lb.cell_labels(probs, idx, "neighbourhood")
    assert (whole[minority] == 0).all()  # absorbed by the neighbourhood
    np.testing.assert_array_equal(label[minority], 1)  # kept
    # type 0's confident cells have neighbours called type 1: the graph mixes them, and type 1
    # (pure over its own ring) absorbs type 0: its cells' confidence is their type's p
    # averaged over their neighbourhood (half type 0 here), no longer their own 0.95
    assert info["graph_purity"][0] < lb.MIN_PURITY <= info["graph_purity"][1]
    assert info["graph_absorbing"] == [1]
    mean_p1 = probs[idx[minority], 1].mean(1)
    np.testing.assert_allclose(conf[minority], mean_p1)
    assert (mean_p1 < 0.6).all()


def test_graph_purity_needs_enough_confident_cells():
    probs, idx = _two_types()
    probs[20:] = [0.4, 0.6]  # type 1 never called confidently
    purity = np.diagonal(lb.graph_mixing(probs.argmax(1), probs.max(1), idx, 2))
    assert purity[0] == 1.0 and np.isnan(purity[1])


def _purity_per_type(own, own_conf, neighbours, n_classes):
    """Each type's purity written out type by type, as its definition reads."""
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        rows = (own_conf >= lb.CONFIDENT) & (own == c)
        if rows.sum() >= lb.MIN_CONFIDENT_CELLS:
            out[c] = (own[neighbours[rows, 1:]] == c).mean()
    return out


def test_graph_purity_equals_the_per_type_computation():
    rng = np.random.default_rng(0)
    n, k, n_classes = 3000, 10, 7
    own = rng.integers(0, n_classes, n)
    own[own == 6] = 5  # a type nobody is called
    conf = rng.uniform(0.5, 1.0, n)
    conf[(own == 4) & (np.arange(n) > 60)] = 0.5  # a type with too few confident cells
    neighbours = np.c_[np.arange(n), rng.integers(0, n, (n, k))]
    # neighbours that agree more often than chance, so that purities differ by type
    agree = rng.random((n, k)) < 0.5
    same_type = np.array([rng.choice(np.flatnonzero(own == t)) for t in own])
    neighbours[:, 1:][agree] = np.repeat(same_type[:, None], k, 1)[agree]
    got = np.diagonal(lb.graph_mixing(own, conf, neighbours, n_classes))
    want = _purity_per_type(own, conf, neighbours, n_classes)
    np.testing.assert_array_equal(got, want)  # the same numbers, NaN where NaN
    assert np.isnan(got[6]) and np.isnan(got[4]) and np.isfinite(got[:4]).all()
    assert len(np.unique(got[:4])) == 4


def _absorbed_minority():
    """Type 0 (40 cells on a ring, every 4th of them called type 1 by the network) and type 2
    (20 cells on its own ring); each cell's 5 neighbours are the next cells of its ring."""
    ring0 = [[i] + [(i + d) % 40 for d in range(1, 6)] for i in range(40)]
    ring2 = [[i] + [40 + (i - 40 + d) % 20 for d in range(1, 6)] for i in range(40, 60)]
    idx = np.array(ring0 + ring2)
    probs = np.zeros((60, 3))
    probs[:40] = [0.94, 0.05, 0.01]
    probs[:40:4] = [0.04, 0.95, 0.01]
    probs[40:] = [0.02, 0.01, 0.97]
    return probs, idx


def test_a_type_that_absorbs_a_mixed_in_type_keeps_its_calls_with_neighbourhood_confidences():
    # type 1's cells sit among type 0's in the graph: type 1 fails the purity test, and type 0,
    # pure enough itself, holds 80% of type 1's neighbours; the consensus of type-0 regions
    # would count type 1's cells as type 0, so type 0 is not graph-consistent either: its cells
    # keep their own type, with p(type 0) averaged over their neighbourhood as confidence
    probs, idx = _absorbed_minority()
    mixing = lb.graph_mixing(probs.argmax(1), probs.max(1), idx, 3)
    np.testing.assert_allclose(mixing.sum(1), 1.0)
    assert mixing[1, 1] < lb.MIN_PURITY <= mixing[0, 0] and mixing[1, 0] >= lb.MAX_ABSORBED
    label, conf, info = lb.cell_labels(probs, idx, "auto")
    assert info["graph_absorbing"] == [0]
    np.testing.assert_array_equal(label, probs.argmax(1))
    type0 = np.flatnonzero(label[:40] == 0)
    np.testing.assert_allclose(conf[type0], probs[idx[type0], 0].mean(1))
    assert (conf[type0] < probs[type0, 0]).all()  # type-1 neighbours lower it
    np.testing.assert_allclose(conf[:40:4], 0.95)  # the absorbed type keeps its own p
    np.testing.assert_allclose(conf[40:], 1.0)  # type 2: its consensus and agreement
    assert info["neighbourhood_labelled"] == 20 / 60
    # the same query without the mixed-in type: type 0 takes its consensus again
    probs[:40:4] = [0.94, 0.05, 0.01]
    _, conf, info = lb.cell_labels(probs, idx, "auto")
    assert info["graph_absorbing"] == [] and info["neighbourhood_labelled"] == 1.0
    np.testing.assert_allclose(conf, 1.0)


def test_a_cells_own_call_is_overruled_only_by_a_clear_majority():
    probs, idx = _two_types()
    # cell 3 (on type 0's ring) is called type 0 by the network, and k of its 5 neighbours are
    # made type-1 cells: with 3 or 4 the consensus is type 1, agreed by 4 or 5 of the 6 cells;
    # it overrules the cell's own call only from MIN_AGREEMENT (5 of 6) on
    probs[3] = [0.55, 0.45]
    for k, overruled in ((3, False), (4, True)):
        nb = idx.copy()
        nb[3, 1:] = [4, 5, 6, 7, 8]
        nb[3, 1:k + 1] = np.arange(20, 20 + k)
        whole, agreement, _ = lb.cell_labels(probs, nb, "neighbourhood")
        assert whole[3] == 1 and agreement[3] == (k + 1) / 6
        assert (agreement[3] >= lb.MIN_AGREEMENT) == overruled
        label, conf, _ = lb.cell_labels(probs, nb, "auto")
        if overruled:
            assert label[3] == 1 and conf[3] == (k + 1) / 6
        else:  # kept, with its type's p averaged over the neighbourhood (between two types)
            assert label[3] == 0
            assert conf[3] == pytest.approx(probs[nb[3], 0].mean())
            assert conf[3] < 0.55


def test_absorbing_types_are_named_in_the_record_and_logged(caplog):
    probs, idx = _absorbed_minority()
    _, _, info = lb.cell_labels(probs, idx, "auto")
    with caplog.at_level(logging.INFO, logger="pyclams"):
        name_records({}, info, ["T", "CD8", "B"])
    assert info["graph_absorbing"] == ["T"]
    np.testing.assert_allclose(info["graph_purity"],
                               np.diagonal(lb.graph_mixing(probs.argmax(1), probs.max(1), idx, 3)))
    assert "['T']" in caplog.text and "graph_absorbing" in caplog.text
    caplog.clear()
    _, _, info = lb.cell_labels(*_two_types(), "auto")
    with caplog.at_level(logging.INFO, logger="pyclams"):
        name_records({}, info, ["T", "B"])
    assert info["graph_absorbing"] == [] and "graph_absorbing" not in caplog.text
