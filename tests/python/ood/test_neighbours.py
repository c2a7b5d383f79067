import numpy as np

from pyclams.data.loader import FeatureMatrix
from pyclams.ood import neighbours as nb


def _two_groups(seed=0, n=60, dim=8):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim))
    b = rng.normal(size=(n, dim)) + 20.0
    return np.vstack([a, b]).astype(np.float32)


def test_neighbours_start_with_the_cell_and_stay_in_its_group():
    idx = nb.nearest_neighbours(_two_groups(), 10)
    assert idx.shape == (120, 11)
    np.testing.assert_array_equal(idx[:, 0], np.arange(120))
    group = np.arange(120) >= 60
    assert np.all(group[idx] == group[:, None])


def test_duplicate_cells_still_list_themselves_first():
    idx = nb.nearest_neighbours(np.zeros((12, 4), np.float32), 3)  # every distance ties
    np.testing.assert_array_equal(idx[:, 0], np.arange(12))
    assert all(len(set(row)) == 4 for row in idx.tolist())


def test_small_sets_and_k_zero():
    assert nb.nearest_neighbours(_two_groups(n=3), 15).shape == (6, 6)
    assert nb.nearest_neighbours(np.zeros((0, 4)), 15).shape == (0, 1)
    np.testing.assert_array_equal(nb.nearest_neighbours(_two_groups(), 0)[:, 0], np.arange(120))


def test_approximate_search_agrees_with_exact_on_separated_groups(monkeypatch):
    emb = _two_groups(n=200)
    monkeypatch.setattr(nb, "EXACT_MAX_CELLS", 10)
    idx = nb.nearest_neighbours(emb, 10)
    np.testing.assert_array_equal(idx[:, 0], np.arange(400))
    group = np.arange(400) >= 200
    assert np.mean(group[idx] == group[:, None]) > 0.99


def test_feature_pcs_match_a_dense_pca_and_read_in_batches(monkeypatch):
    # distinct variances along the axes: the leading components are unique up to sign
    x = (np.random.default_rng(3).normal(size=(200, 12))
         * np.array([10, 6, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1])).astype(np.float32)
    features = FeatureMatrix(x, lambda block: np.asarray(block, dtype=np.float32))
    pcs = nb.feature_pcs(features, n_pcs=3, batch_size=7)
    centred = x - x.mean(0)
    ref = centred @ np.linalg.svd(centred, full_matrices=False)[2][:3].T
    # the same subspace: each PC equals the dense one up to sign
    for j in range(3):
        assert abs(abs(np.corrcoef(pcs[:, j], ref[:, j])[0, 1]) - 1) < 1e-3
    monkeypatch.setattr(nb, "PCA_MAX_CELLS", 50)  # axes from a sample, all cells projected
    sub = nb.feature_pcs(features, np.arange(150), n_pcs=2)
    assert sub.shape == (150, 2)
    assert abs(np.corrcoef(sub[:, 0], ref[:150, 0])[0, 1]) > 0.99


def test_neighbour_mean_of_values_columns_and_fewer_neighbours():
    idx = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1]])
    np.testing.assert_allclose(nb.neighbour_mean(np.array([1.0, 3.0, 5.0]), idx[:, :2]),
                               [2, 4, 3])
    np.testing.assert_allclose(nb.neighbour_mean(np.array([1.0, 3.0, 5.0]), idx, 1), [2, 4, 3])
    cols = nb.neighbour_mean(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), idx[:, :2])
    np.testing.assert_allclose(cols, [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])


def test_consensus_label_and_agreement():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    idx = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [3, 2, 1]])
    label, agreement = nb.consensus(probs, idx)
    # cell 2 leans to type 1 alone but its neighbourhood says type 0
    np.testing.assert_array_equal(label, [0, 0, 0, 1])
    np.testing.assert_allclose(agreement, [1, 1, 1, 1 / 3])
