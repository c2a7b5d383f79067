"""The negative-binomial simulator: fitted to the bundled demo reference, drawn sparse."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from pyclams.data.demo import LABELS_KEY, demo_reference
from pyclams.errors import PyClamsInputError
from pyclams.simulate import NBProfiles


@pytest.fixture(scope="module")
def real():
    return demo_reference()


@pytest.fixture(scope="module")
def profiles(real):
    return NBProfiles.fit(real, labels_key=LABELS_KEY, n_genes=500)


def _class_log_means(x: sp.csr_matrix, labels: np.ndarray, cls: str) -> np.ndarray:
    """log1p of the mean CP10k-normalised expression of one class."""
    xk = x[labels == cls]
    lib = np.asarray(xk.sum(1)).ravel()
    norm = sp.diags(1e4 / lib) @ xk
    return np.log1p(np.asarray(norm.mean(0)).ravel())


def test_fit_shapes_and_ranges(profiles, real):
    assert profiles.classes == ["B", "CD4 T", "CD8 T"]
    assert profiles.profiles.shape == (3, 500) and profiles.dispersion.shape == (500,)
    np.testing.assert_allclose(profiles.profiles.sum(1), 1.0, rtol=1e-6)
    assert set(profiles.genes) <= set(real.var_names)
    counts = real.obs[LABELS_KEY].value_counts(normalize=True)
    np.testing.assert_allclose(profiles.proportions, counts[profiles.classes].to_numpy())
    assert (profiles.dispersion > 0).all() and (profiles.log_lib_sd > 0).all()


def test_simulated_cells_are_sparse_counts_in_the_reference_proportions(profiles, real):
    sim = profiles.simulate(6000, seed=1)
    assert sim.shape == (6000, 500) and list(sim.var_names) == profiles.genes
    assert sp.isspmatrix_csr(sim.X) and sim.X.dtype == np.float32
    assert np.array_equal(sim.X.data, np.round(sim.X.data)) and sim.X.data.min() > 0
    # as sparse as the real cells at the same genes (within 20%)
    real_x = real[:, profiles.genes].X
    density_real = real_x.nnz / np.prod(real_x.shape)
    density_sim = sim.X.nnz / np.prod(sim.shape)
    assert density_sim == pytest.approx(density_real, rel=0.2)
    share = sim.obs[LABELS_KEY].value_counts(normalize=True)[profiles.classes].to_numpy()
    # binomial sd at n=6000 is below 0.007
    np.testing.assert_allclose(share, profiles.proportions, atol=0.025)
    lib_real = np.median(np.asarray(real_x.sum(1)))
    assert np.median(np.asarray(sim.X.sum(1))) == pytest.approx(lib_real, rel=0.15)


def test_class_means_correlate_with_the_real_ones_and_tell_classes_apart(profiles, real):
    sim = profiles.simulate(6000, seed=2)
    real_x = real[:, profiles.genes].X.tocsr()
    real_lab = real.obs[LABELS_KEY].astype(str).to_numpy()
    sim_lab = sim.obs[LABELS_KEY].astype(str).to_numpy()
    for cls in profiles.classes:
        r = _class_log_means(real_x, real_lab, cls)
        s = _class_log_means(sim.X, sim_lab, cls)
        assert np.corrcoef(r, s)[0, 1] > 0.95, cls
    # a class's simulated mean is closer to its own real mean than to other classes'
    for cls in profiles.classes:
        s = _class_log_means(sim.X, sim_lab, cls)
        dist = {c: np.abs(s - _class_log_means(real_x, real_lab, c)).sum()
                for c in profiles.classes}
        assert min(dist, key=dist.get) == cls


def test_seeded_subset_of_classes_and_given_proportions(profiles):
    a = profiles.simulate(500, seed=3, classes=["CD4 T", "B"], proportions=[0.8, 0.2])
    b = profiles.simulate(500, seed=3, classes=["CD4 T", "B"], proportions=[0.8, 0.2])
    assert (a.X != b.X).nnz == 0
    assert set(a.obs[LABELS_KEY]) == {"CD4 T", "B"}
    assert (a.obs[LABELS_KEY] == "CD4 T").mean() > 0.7
    c = profiles.simulate(500, seed=4, classes=["CD4 T", "B"], proportions=[0.8, 0.2])
    assert (a.X != c.X).nnz > 0
    with pytest.raises(PyClamsInputError, match="subset"):
        profiles.simulate(10, classes=["NK"])
    with pytest.raises(PyClamsInputError, match="proportions"):
        profiles.simulate(10, classes=["B"], proportions=[0.5, 0.5])


def test_drawing_never_holds_a_dense_matrix_of_all_cells(real):
    profiles = NBProfiles.fit(real, labels_key=LABELS_KEY, n_genes=2000)
    n = 30_000
    dense_bytes = n * profiles.n_genes * 4
    tracemalloc.start()
    try:
        sim = profiles.simulate(n, seed=5, chunk_size=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    sparse_bytes = sim.X.data.nbytes + sim.X.indices.nbytes + sim.X.indptr.nbytes
    assert sparse_bytes < dense_bytes / 3
    # the chunks and the result they are copied into (allocated at once, filled while the
    # chunks are freed), one chunk being drawn, the labels: a dense matrix of all cells next
    # to its sparse form (dense + sparse > 2 sparse + dense / 4) would break this bound
    assert peak < 2 * sparse_bytes + dense_bytes / 4


def test_fit_rejects_non_counts(real):
    bad = real.copy()
    bad.X = bad.X.astype(np.float32) * 0.5
    with pytest.raises(PyClamsInputError, match="raw counts"):
        NBProfiles.fit(bad, labels_key=LABELS_KEY)
