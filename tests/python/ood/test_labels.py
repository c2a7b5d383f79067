import numpy as np

from pyclams.ood import labels as lb


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
    np.testing.assert_allclose(conf[minority], 0.95)
    # type 0's confident cells have neighbours called type 1: the graph mixes them
    assert info["graph_purity"][0] < lb.MIN_PURITY <= info["graph_purity"][1]


def test_graph_purity_needs_enough_confident_cells():
    probs, idx = _two_types()
    probs[20:] = [0.4, 0.6]  # type 1 never called confidently
    purity = lb.graph_purity(probs.argmax(1), probs.max(1), idx, 2)
    assert purity[0] == 1.0 and np.isnan(purity[1])


def _purity_per_type(own, own_conf, neighbours, n_classes):
    """graph_purity written out type by type, as its definition reads."""
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
    got = lb.graph_purity(own, conf, neighbours, n_classes)
    want = _purity_per_type(own, conf, neighbours, n_classes)
    np.testing.assert_array_equal(got, want)  # the same numbers, NaN where NaN
    assert np.isnan(got[6]) and np.isnan(got[4]) and np.isfinite(got[:4]).all()
    assert len(np.unique(got[:4])) == 4
