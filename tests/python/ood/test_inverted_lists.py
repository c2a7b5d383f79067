import numpy as np
import pytest

from pyclams.ood import inverted_lists as il


def _points(n=3000, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=8.0, size=(5, dim))
    return (centres[rng.integers(0, 5, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def _exact_distances(x, k):
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.sort(d, 1)[:, :k]


def _distances(x, idx):
    return ((x[idx] - x[:, None, :]) ** 2).sum(-1)


def test_probing_every_list_is_the_exact_search():
    x = _points(n=800)
    idx = il.inverted_list_neighbours(x, 7, list_size=50, n_probe=16)  # 16 lists, all probed
    np.testing.assert_allclose(_distances(x, idx), _exact_distances(x, 7), atol=1e-3)
    assert all(len(set(row)) == 7 for row in idx.tolist())


def test_few_probes_find_most_exact_neighbours_nearest_first():
    x = _points()
    k = 10
    idx = il.inverted_list_neighbours(x, k, list_size=100, n_probe=3)
    d = _distances(x, idx)
    assert np.all(np.diff(d, axis=1) >= -1e-4)  # nearest first
    np.testing.assert_allclose(d[:, 0], 0.0, atol=1e-3)  # each cell finds itself
    exact = _exact_distances(x, k)
    recall = np.mean(d <= exact[:, -1:] + 1e-4)
    assert 0.9 < recall < 1.0  # approximate, but close
    assert all(len(set(row)) == k for row in idx.tolist())


def test_same_seed_same_graph_and_lists_too_small_for_k_fall_back_to_all_cells():
    x = _points(n=400)
    a = il.inverted_list_neighbours(x, 5, list_size=40, n_probe=2, seed=3)
    np.testing.assert_array_equal(a, il.inverted_list_neighbours(x, 5, list_size=40,
                                                                 n_probe=2, seed=3))
    # lists of about 4 cells, one probed: no cell has 12 candidates in its own list
    small = il.inverted_list_neighbours(x[:40], 12, list_size=4, n_probe=1)
    np.testing.assert_allclose(_distances(x[:40], small), _exact_distances(x[:40], 12),
                               atol=1e-3)


def test_kmeans_finds_separated_groups_and_k_is_checked():
    x = _points(n=1000, dim=3)
    import torch

    centres = il.kmeans(torch.from_numpy(x), 5, generator=torch.Generator().manual_seed(0))
    owner = il.nearest_centres(torch.from_numpy(x), centres, 1)[:, 0].numpy()
    assert len(np.unique(owner)) >= 4
    with pytest.raises(ValueError, match="k must be"):
        il.inverted_list_neighbours(x, 0)
    with pytest.raises(ValueError, match="k must be"):
        il.inverted_list_neighbours(x[:3], 4)
