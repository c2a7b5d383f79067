import numpy as np
import pytest
import torch

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


def _sparse_features(n=230, genes=40, seed=5):
    """Sparse log-like values with a float32 Standardiser (the query path's features)."""
    import scipy.sparse as sp

    from pyclams.data.loader import Standardiser

    rng = np.random.default_rng(seed)
    x = sp.random(n, genes, density=0.3, random_state=seed, dtype=np.float32,
                  data_rvs=lambda k: rng.gamma(2.0, 1.0, k).astype(np.float32)).tocsr()
    dense = x.toarray()
    std = Standardiser(dense.mean(0), dense.std(0) + np.float32(0.5), clip=10.0)
    return FeatureMatrix(x, std)


@pytest.mark.parametrize("max_cells", [None, 60])  # all cells in memory / axes from a sample
def test_block_pcs_from_the_forward_blocks_equal_feature_pcs(monkeypatch, max_cells):
    if max_cells is not None:
        monkeypatch.setattr(nb, "PCA_MAX_CELLS", max_cells)
    features = _sparse_features()
    assert features.batches_match_rows
    old = nb.feature_pcs(features, n_pcs=5, batch_size=13)
    fused = nb.BlockPCs(features, n_pcs=5, batch_size=13)
    # blocks as the forward sees them: densified and standardised on the "device" (the CPU)
    for _, x in features.batches(9, device="cpu"):
        fused.add(x)
    new = fused.result()
    np.testing.assert_array_equal(new, old)
    np.testing.assert_array_equal(nb.nearest_neighbours(new, 10),
                                  nb.nearest_neighbours(old, 10))


def test_block_pcs_refuse_a_partial_pass():
    features = _sparse_features()
    fused = nb.BlockPCs(features, n_pcs=5)
    fused.add(next(features.batches(50, device="cpu"))[1])
    with pytest.raises(RuntimeError, match="50 of 230"):
        fused.result()


def test_float64_standardiser_blocks_do_not_match_rows():
    from pyclams.data.loader import Standardiser

    features = _sparse_features()
    std = features.transform
    wide = FeatureMatrix(features.source, Standardiser(std.mean.astype(np.float64),
                                                       std.sd, std.clip))
    assert not wide.batches_match_rows
    assert wide.rows(np.arange(3)).dtype == np.float64
    assert next(wide.batches(3, device="cpu"))[1].dtype == torch.float32
