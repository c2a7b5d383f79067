"""Minibatches densified and standardised on the device equal the host path exactly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pyclams.data.loader import FeatureMatrix, Standardiser
from pyclams.data.space import GeneSpace

from ..conftest import make_counts


@pytest.fixture(scope="module")
def space_and_features():
    ref = make_counts(50, n_classes=3, seed=0)
    return GeneSpace.fit(ref, layer=None, is_log=None, n_top_genes=60, batch_key=None)


def test_reference_features_cross_sparse_and_match_the_host_path(space_and_features):
    space, features = space_and_features
    assert features.densifies_on_device
    rows = np.random.default_rng(0).choice(features.n_cells, 40, replace=True)
    host = features.rows(rows)
    dev = features.to_device(rows, "cpu")
    assert dev.dtype == torch.float32
    np.testing.assert_array_equal(dev.numpy(), host)
    # and the Standardiser is the preprocessor's standardisation
    block = features.source[rows].toarray()
    np.testing.assert_array_equal(host, space.preprocessor.standardise(block))


def test_query_with_missing_genes_and_batches_on_a_device(space_and_features):
    space, _ = space_and_features
    query = make_counts(20, n_classes=4, seed=3)
    query = query[:, query.var_names[5:]].copy()  # some model genes are missing
    features, overlap = space.transform(query, min_gene_overlap=0.1)
    assert overlap < 1
    pre = space.preprocessor
    missing = ~np.isin(pre.genes, query.var_names)
    assert missing.any()
    host = np.concatenate([x.numpy() for _, x in features.batches(7)])
    dev = torch.cat([x for _, x in features.batches(7, device="cpu")])
    np.testing.assert_array_equal(dev.numpy(), host)
    assert (host[:, missing] == 0).all()


def test_dense_sources_and_other_transforms_densify_on_the_host():
    x = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float32)
    fm = FeatureMatrix(x, lambda b: np.asarray(b, dtype=np.float32) * 2)
    assert not fm.densifies_on_device
    np.testing.assert_array_equal(fm.to_device(np.arange(5), "cpu").numpy(), x[:5] * 2)


def test_standardiser_clips_duplicates_and_empty_rows():
    mean = np.array([1.0, 0.0, 2.0], dtype=np.float32)
    sd = np.array([0.5, 1.0, 0.1], dtype=np.float32)
    st = Standardiser(mean, sd, clip=3.0)
    src = sp.csr_matrix(np.array([[0, 0, 0], [4, 0, 9], [1, 2, 0]], dtype=np.float32))
    fm = FeatureMatrix(src, st)
    out = fm.to_device(np.array([0, 1, 2, 1]), "cpu").numpy()
    np.testing.assert_array_equal(out, fm.rows(np.array([0, 1, 2, 1])))
    assert out.max() == 3.0 and out.min() == -3.0


def test_standardising_in_place_gives_the_same_values_and_leaves_other_inputs_alone():
    rng = np.random.default_rng(4)
    x = rng.normal(2.0, 3.0, size=(50, 6)).astype(np.float32)
    mean, sd = x.mean(0), x.std(0) + 0.1
    missing = np.array([False, True, False, False, False, False])
    st = Standardiser(mean, sd, clip=1.5, missing=missing)
    want = st(x.copy())
    block = x.copy()
    got = st(block, overwrite=True)
    assert got is block  # standardised in place
    np.testing.assert_array_equal(got, want)
    # float64 statistics: numpy's promotion as before, and the input is not touched
    st64 = Standardiser(mean.astype(np.float64), sd.astype(np.float64), clip=1.5)
    kept = x.copy()
    np.testing.assert_array_equal(st64(kept, overwrite=True), st64(x.copy()))
    np.testing.assert_array_equal(kept, x)
    # rows() of a sparse source densify a fresh block and standardise it in place
    fm = FeatureMatrix(sp.csr_matrix(x), st)
    np.testing.assert_array_equal(fm.rows(np.arange(50)), want)
    np.testing.assert_array_equal(fm.rows(np.arange(50)), fm.to_device(np.arange(50),
                                                                        "cpu").numpy())
