import logging

import numpy as np
import pytest
import scipy.sparse as sp

import pyclams
from pyclams.data.checks import detect_input_kind
from pyclams.data.genes import align_genes
from pyclams.errors import PyClamsInputError

from ..conftest import FAST, FAST_SGLD, assert_unchanged, make_counts, snapshot


def _fit(adata, **kw):
    return pyclams.train(adata, labels_key=kw.pop("labels_key", "cell_type"), train=FAST,
                         sgld=FAST_SGLD, network={"widths": (32,), "blocks_per_stage": 1},
                         verbose=False, device="cpu", **kw)


def _set(a, i, j, value):
    x = a.X.toarray()
    x[i, j] = value
    a.X = sp.csr_matrix(x)


def _corrupt(kind):
    a = make_counts(20, n_classes=3)
    if kind == "nan":
        _set(a, 0, 0, np.nan)
    elif kind == "inf":
        _set(a, 1, 1, np.inf)
    elif kind == "negative":
        _set(a, 2, 2, -1)
    elif kind == "dup_genes":
        names = list(a.var_names)
        names[1] = names[0]
        a.var_names = names
    elif kind == "dup_cells":
        names = list(a.obs_names)
        names[1] = names[0]
        a.obs_names = names
    elif kind == "empty":
        _set(a, 3, slice(None), 0)
    elif kind == "one_class":
        a = a[a.obs["cell_type"] == "type0"].copy()
    elif kind == "singleton":
        keep = np.r_[np.arange(40), [40]]
        a = a[keep].copy()
    return a


@pytest.mark.parametrize("kind,message", [
    ("nan", "NaN or infinite"), ("inf", "NaN or infinite"), ("negative", "negative values"),
    ("dup_genes", "duplicated gene names"), ("dup_cells", "duplicated cell names"),
    ("empty", "no expression"), ("one_class", "at least 2"), ("singleton", "single cell")])
def test_bad_reference_gives_clear_error_and_is_unchanged(kind, message):
    a = _corrupt(kind)
    snap = snapshot(a)
    with pytest.raises(PyClamsInputError, match=message):
        _fit(a)
    assert_unchanged(a, snap)


def test_missing_labels_key_and_layer(ref):
    snap = snapshot(ref)
    with pytest.raises(PyClamsInputError, match="not a column of adata.obs"):
        _fit(ref, labels_key="celltype")
    with pytest.raises(PyClamsInputError, match="layer 'counts' not found"):
        _fit(ref, layer="counts")
    assert_unchanged(ref, snap)


def test_small_class_warns(caplog):
    a = make_counts(30, n_classes=3)
    keep = np.r_[np.arange(60), np.arange(60, 65)]
    a = a[keep].copy()
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        _fit(a)
    assert "fewer than 10 cells" in caplog.text


def test_detect_counts_and_log_and_never_log_twice(ref):
    assert detect_input_kind(ref.X) == "counts"
    logx = ref.X.copy()
    logx.data = np.log1p(logx.data)
    assert detect_input_kind(logx) == "log"
    assert detect_input_kind(logx, is_log=False) == "counts"
    big = ref.X.copy()
    big.data = big.data * 1.5 + 0.1
    with pytest.raises(PyClamsInputError, match="neither integer counts nor log"):
        detect_input_kind(big)


def test_log_input_is_used_as_is(ref):
    from pyclams.data.preprocess import Preprocessor
    logged = ref.copy()
    sums = np.asarray(logged.X.sum(1)).ravel()
    logged.X = sp.diags(1e4 / sums) @ logged.X
    logged.X.data = np.log1p(logged.X.data)
    pre_counts = Preprocessor.fit(ref, n_top_genes=50)
    pre_log = Preprocessor.fit(logged, n_top_genes=50)
    assert pre_log.input_kind == "log" and pre_counts.input_kind == "counts"
    a, _, _ = pre_counts.log_normalised(ref)
    b, _, _ = pre_counts.log_normalised(logged)
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-5, atol=1e-5)


def test_align_genes_positions_and_errors(caplog):
    pos, overlap = align_genes(["B", "A", "C"], ["A", "B", "Z"])
    assert pos.tolist() == [1, 0, -1] and overlap == pytest.approx(2 / 3)
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        align_genes([f"G{i}" for i in range(7)], [f"G{i}" for i in range(10)])
    assert "missing" in caplog.text
    ens = [f"ENSG{i:011d}" for i in range(100)]
    sym = [f"GENE{i}" for i in range(100)]
    with pytest.raises(PyClamsInputError, match="Ensembl"):
        align_genes(ens, sym)
    with pytest.raises(PyClamsInputError, match="species"):
        align_genes([f"Cd{i}a" for i in range(100)], [f"CD{i}B" for i in range(100)])


def test_missing_query_genes_filled_with_reference_mean(trained_model, query):
    pre = trained_model.preprocessor
    drop = pre.genes[:10]
    q = query[:, [g for g in query.var_names if g not in drop]].copy()
    logx, missing, overlap = pre.log_normalised(q)
    assert missing.sum() == 10 and overlap == pytest.approx(1 - 10 / len(pre.genes))
    z = pre.standardise(logx[:5].toarray(), missing)
    assert np.all(z[:, missing] == 0.0)


def test_library_size_uses_reference_genes_only(trained_model, query):
    """Extra query genes (absent from the reference) do not change the normalisation."""
    import anndata as ad
    pre = trained_model.preprocessor
    extra = sp.csr_matrix(np.full((query.n_obs, 50), 100.0, dtype=np.float32))
    wide = ad.AnnData(sp.hstack([query.X, extra]).tocsr(), obs=query.obs.copy())
    wide.var_names = list(query.var_names) + [f"EXTRA{i}" for i in range(50)]
    a, _, _ = pre.log_normalised(query)
    b, _, _ = pre.log_normalised(wide)
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-5)


def test_fit_transform_matches_the_query_path(ref):
    from pyclams.data.preprocess import Preprocessor
    pre, picked = Preprocessor.fit_transform(ref, n_top_genes=50)
    again, missing, overlap = pre.log_normalised(ref)
    assert overlap == 1.0 and not missing.any()
    assert (picked != again).nnz == 0
