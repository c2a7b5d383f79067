"""Baselines and the method registry on a small synthetic reference/query pair.

Three well-separated classes of Poisson counts in the reference; the query holds the same three
plus a fourth class the reference never saw. Every baseline must beat chance (1/3) by a wide
margin on the known classes and score known cells above the unseen class (AUROC > 0.8).
"""

from __future__ import annotations

import hashlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from clams_benchmark import registry
from clams_benchmark.baselines import UNKNOWN, is_raw_counts, log_normalized
from clams_benchmark.baselines._common import validate_predictions
from pyclams.metrics import accuracy, auroc

LABELS_KEY = "cell_type"
N_REF, N_QUERY, N_GENES = 100, 60, 200


def _synthetic(seed: int = 0) -> tuple[ad.AnnData, ad.AnnData, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.gamma(1.0, 1.0, N_GENES)
    profiles = []
    for _ in range(4):
        p = base.copy()
        p[rng.choice(N_GENES, 20, replace=False)] *= 8
        profiles.append(p)

    def sample(classes: list[int], n: int) -> tuple[sp.csr_matrix, list[str]]:
        xs, ys = [], []
        for c in classes:
            lib = rng.uniform(0.5, 1.5, n)[:, None]
            xs.append(rng.poisson(2 * profiles[c] * lib))
            ys += [f"type{c}"] * n
        return sp.csr_matrix(np.vstack(xs).astype(np.float32)), ys

    genes = pd.Index([f"GENE_{i}" for i in range(N_GENES)])  # "_" is rewritten by Seurat
    x_ref, y_ref = sample([0, 1, 2], N_REF)
    x_q, y_q = sample([0, 1, 2, 3], N_QUERY)
    ref = ad.AnnData(x_ref, obs=pd.DataFrame({LABELS_KEY: pd.Categorical(y_ref)},
                                             index=[f"ref-{i}" for i in range(len(y_ref))]),
                     var=pd.DataFrame(index=genes))
    # the query carries no labels at all: a method that reads them fails loudly
    query = ad.AnnData(x_q, obs=pd.DataFrame({"batch": "q"},
                                             index=[f"query_{i}" for i in range(len(y_q))]),
                       var=pd.DataFrame(index=genes))
    return ref, query, np.asarray(y_q)


@pytest.fixture(scope="module")
def data() -> tuple[ad.AnnData, ad.AnnData, np.ndarray]:
    return _synthetic()


def _fingerprint(a: ad.AnnData) -> str:
    h = hashlib.sha1()
    x = a.X.tocsr() if sp.issparse(a.X) else sp.csr_matrix(a.X)
    for arr in (x.data, x.indices, x.indptr):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(pd.util.hash_pandas_object(a.obs.astype(str), index=True).to_numpy().tobytes())
    h.update("|".join(a.var_names).encode())
    return h.hexdigest()


def _check_schema(pred: pd.DataFrame, query: ad.AnnData) -> None:
    assert list(pred.columns[:4]) == ["label", "confidence", "ood_score", "rejected"]
    assert pred.index.equals(query.obs_names)
    assert pred["rejected"].dtype == bool
    assert pred["confidence"].dtype == np.float64 and pred["ood_score"].dtype == np.float64
    assert all(isinstance(v, str) for v in pred["label"])
    conf = pred["confidence"].dropna()
    assert ((conf >= 0) & (conf <= 1)).all()
    validate_predictions(pred, query)


def _check_quality(pred: pd.DataFrame, truth: np.ndarray, name: str) -> None:
    is_id = truth != "type3"
    acc = accuracy(truth[is_id], pred["label"].to_numpy()[is_id])
    score = pred["ood_score"].to_numpy()
    roc = auroc(score, is_id)
    assert acc > 0.8, f"{name}: ID accuracy {acc:.3f} is not far above chance (1/3)"
    assert np.nanmean(score[is_id]) > np.nanmean(score[~is_id]), f"{name}: OOD scored higher"
    assert roc > 0.8, f"{name}: OOD AUROC {roc:.3f} <= 0.8"


PYTHON_METHODS = {
    "svm_reject": {},
    "celltypist": {},
    "knn_ingest": {},
    "scanvi": {"scvi_epochs": 30, "scanvi_epochs": 10, "query_epochs": 10, "n_threads": 1},
}
R_METHODS = {"seurat": {}, "singler": {}}


def _run(name: str, data, options: dict) -> pd.DataFrame:
    ok, why = registry.available(name)
    if not ok:
        pytest.skip(f"{name} not installed: {why}")
    ref, query, _ = data
    before = (_fingerprint(ref), _fingerprint(query))
    res = registry.run_method(name, ref, query, labels_key=LABELS_KEY, seed=0, **options)
    assert res.status == "ok", res.reason
    assert res.wall_time_s > 0
    assert (_fingerprint(ref), _fingerprint(query)) == before, f"{name} modified its input"
    return res.predictions


@pytest.mark.parametrize("name", list(PYTHON_METHODS))
def test_python_baseline(name: str, data) -> None:
    pred = _run(name, data, PYTHON_METHODS[name])
    _check_schema(pred, data[1])
    _check_quality(pred, data[2], name)


@pytest.mark.r
@pytest.mark.parametrize("name", list(R_METHODS))
def test_r_baseline(name: str, data) -> None:
    pytest.importorskip("rpy2")
    from clams_benchmark.baselines._r import r_available

    if not r_available()[0]:
        pytest.skip(r_available()[1])
    pred = _run(name, data, R_METHODS[name])
    _check_schema(pred, data[1])
    _check_quality(pred, data[2], name)
    if name == "singler":
        assert pred["confidence"].isna().all()


def test_svm_rejects_unseen_class(data) -> None:
    ref, query, truth = data
    pred = registry.get("svm_reject").func(ref, query, labels_key=LABELS_KEY)
    assert not (pred["label"] == UNKNOWN).any()  # the best class stays in "label"
    assert (pred["rejected"] == (pred["confidence"] < 0.7)).all()
    assert pred["rejected"].to_numpy()[truth == "type3"].mean() > 0.5
    assert pred["rejected"].to_numpy()[truth != "type3"].mean() < 0.1


def test_log_normalised_input_gives_same_svm(data) -> None:
    ref, query, truth = data
    ref_log, query_log = ref.copy(), query.copy()
    ref_log.X, query_log.X = log_normalized(ref), log_normalized(query)
    fn = registry.get("svm_reject").func
    a = fn(ref, query, labels_key=LABELS_KEY)
    b = fn(ref_log, query_log, labels_key=LABELS_KEY)
    np.testing.assert_allclose(a["confidence"], b["confidence"], atol=1e-5)


def test_celltypist_on_highly_variable_genes(data) -> None:
    ok, why = registry.available("celltypist")
    assert ok, why  # scripts/setup.sh installs the bench extra
    ref, query, truth = data
    pred = registry.get("celltypist").func(ref, query, labels_key=LABELS_KEY, n_top_genes=100)
    _check_schema(pred, query)
    _check_quality(pred, truth, "celltypist[hvg100]")


def test_scanvi_refuses_log_data(data) -> None:
    ok, why = registry.available("scanvi")
    assert ok, why  # scripts/setup.sh installs the bench extra
    ref, query, _ = data
    ref_log = ref.copy()
    ref_log.X = log_normalized(ref)
    res = registry.run_method("scanvi", ref_log, query, labels_key=LABELS_KEY)
    assert res.status == "failed" and "needs raw counts" in res.reason
    assert res.predictions is None


# ---------------------------------------------------------------- helpers


def test_raw_count_detection_and_log_normalisation() -> None:
    x = sp.csr_matrix(np.array([[0, 3, 1], [2, 0, 0], [5, 5, 0]], dtype=np.float32))
    assert is_raw_counts(x)
    assert is_raw_counts(x.toarray())
    assert not is_raw_counts(x * 0.5)
    assert not is_raw_counts(sp.csr_matrix((3, 3)))
    a = ad.AnnData(x.copy())
    out = log_normalized(a)
    assert sp.issparse(out)
    np.testing.assert_allclose(np.expm1(out.toarray()).sum(axis=1), 1e4, rtol=1e-5)
    np.testing.assert_array_equal(a.X.toarray(), x.toarray())  # caller untouched
    again = log_normalized(ad.AnnData(out))  # log data passes through unchanged
    np.testing.assert_allclose(again.toarray(), out.toarray())


# ---------------------------------------------------------------- registry


@pytest.fixture
def temp_methods():
    added: list[str] = []
    yield added
    for name in added:
        registry.unregister(name)


def test_registry_lists_builtin_baselines() -> None:
    names = registry.names()
    for name in ("svm_reject", "celltypist", "knn_ingest", "scanvi", "seurat", "singler",
                 "scpred"):
        assert name in names
        assert registry.get(name).family in registry.FAMILIES
    assert "svm_reject" in registry.names("classifier")
    with pytest.raises(ValueError):
        registry.register("x", "not a family")


def test_registry_records_failure_without_raising(data, temp_methods) -> None:
    @registry.register("_test_raises", "classifier")
    def boom(ref, query, *, labels_key, seed=0):
        raise RuntimeError("deliberate failure 42")

    @registry.register("_test_bad_frame", "classifier")
    def bad(ref, query, *, labels_key, seed=0):
        return pd.DataFrame({"label": ["a"]})

    temp_methods += ["_test_raises", "_test_bad_frame"]
    ref, query, _ = data
    res = registry.run_method("_test_raises", ref, query, labels_key=LABELS_KEY)
    assert res.status == "failed" and res.predictions is None
    assert "RuntimeError: deliberate failure 42" in res.reason
    res = registry.run_method("_test_bad_frame", ref, query, labels_key=LABELS_KEY)
    assert res.status == "failed" and "lack the columns" in res.reason
    res = registry.run_method("no such method", ref, query, labels_key=LABELS_KEY)
    assert res.status == "failed" and "no method" in res.reason


def test_registry_records_missing_python_dependency(data, temp_methods) -> None:
    called = []

    @registry.register("_test_missing", "bio tool", requires=("pyclams_no_such_module",),
                       install_hints={"pyclams_no_such_module": "pip install it-somehow"})
    def never(ref, query, *, labels_key, seed=0):
        called.append(1)

    temp_methods.append("_test_missing")
    ok, why = registry.available("_test_missing")
    assert not ok and "pyclams_no_such_module" in why and "pip install it-somehow" in why
    ref, query, _ = data
    res = registry.run_method("_test_missing", ref, query, labels_key=LABELS_KEY)
    assert res.status == "not installed" and res.reason == why and not called


@pytest.mark.r
def test_registry_records_missing_r_package(data, temp_methods) -> None:
    pytest.importorskip("rpy2")

    @registry.register("_test_missing_r", "bio tool", requires_r=("pyclamsNoSuchPkg",),
                       install_hints={"pyclamsNoSuchPkg": "install it from nowhere"})
    def never(ref, query, *, labels_key, seed=0):
        raise AssertionError("must not run")

    temp_methods.append("_test_missing_r")
    ok, why = registry.available("_test_missing_r")
    assert not ok and "pyclamsNoSuchPkg is not installed; install it from nowhere" in why
    ref, query, _ = data
    res = registry.run_method("_test_missing_r", ref, query, labels_key=LABELS_KEY)
    assert res.status == "not installed"


@pytest.mark.r
def test_scpred_detection() -> None:
    pytest.importorskip("rpy2")
    from clams_benchmark.baselines._r import r_available, r_packages_missing
    from clams_benchmark.baselines.scpred import SCPRED_INSTALL

    if not r_available()[0]:
        pytest.skip(r_available()[1])
    ok, why = registry.available("scpred")
    if r_packages_missing(["scPred", "Seurat"]):
        assert not ok
        assert SCPRED_INSTALL in why
        assert 'remotes::install_github("powellgenomicslab/scPred")' in why
    else:
        assert ok and why == ""


@pytest.mark.r
def test_r_error_is_readable(tmp_path) -> None:
    pytest.importorskip("rpy2")
    from clams_benchmark.baselines._r import RCallError, r_available, r_call

    if not r_available()[0]:
        pytest.skip(r_available()[1])
    script = tmp_path / "fail.R"
    script.write_text('test_fail <- function() stop("deliberate R failure")\n')
    with pytest.raises(RCallError, match="deliberate R failure"):
        r_call(script, "test_fail")


def test_r_code_lives_in_r_files() -> None:
    """The R baselines source ``baselines/R/*.R``; no R function is defined in a string."""
    from clams_benchmark.baselines import _r

    scripts = {p.name for p in _r.R_DIR.glob("*.R")}
    assert {"common.R", "seurat.R", "singler.R", "scpred.R"} <= scripts
    for module in ("seurat", "singler", "scpred", "_r"):
        source = (_r.R_DIR.parent / f"{module}.py").read_text()
        assert "<- function(" not in source, module
