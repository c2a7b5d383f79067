"""One input scale whatever the data kind: log-base detection and harmonised features."""

import logging
import math

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from pyclams.data.checks import check_matrix_values, detect_input_kind
from pyclams.data.preprocess import Preprocessor
from pyclams.data.scale import detect_log_base, integer_errors, parse_log_base
from pyclams.data.space import GeneSpace
from pyclams.errors import PyClamsInputError

ATOL = 1e-3


def nb_counts(n_cells: int = 150, n_genes: int = 200, *, seed: int = 0) -> ad.AnnData:
    """Negative-binomial counts (gamma-Poisson), two groups of cells with distinct markers."""
    rng = np.random.default_rng(seed)
    mu = rng.gamma(1.0, 2.0, size=n_genes)
    mu = np.tile(mu, (n_cells, 1))
    mu[: n_cells // 2, :15] *= 6.0
    mu[n_cells // 2:, 15:30] *= 6.0
    mu *= rng.uniform(0.5, 2.0, size=(n_cells, 1))
    x = rng.poisson(rng.gamma(2.0, mu / 2.0)).astype(np.float32)
    x[:, 0] += 1.0  # no empty cell
    a = ad.AnnData(sp.csr_matrix(x))
    a.obs_names = [f"c{i}" for i in range(n_cells)]
    a.var_names = [f"G{j}" for j in range(n_genes)]
    return a


def logged(a: ad.AnnData, base: float, target_sum: float, *,
           size_genes: list[str] | None = None) -> ad.AnnData:
    """``log_base(1 + target_sum * counts / total)``; the total is over ``size_genes``."""
    x = sp.csr_matrix(a.X, dtype=np.float64)
    mask = np.ones(a.n_vars, bool) if size_genes is None else a.var_names.isin(size_genes)
    totals = np.asarray(x[:, mask].sum(1)).ravel()
    y = (sp.diags(target_sum / totals) @ x).tocsr()
    y.data = (np.log1p(y.data) / math.log(base)).astype(np.float32)
    out = a.copy()
    out.X = y
    return out


def tpm_like(a: ad.AnnData, base: float) -> ad.AnnData:
    """``log_base(TPM + 1)``: counts divided by non-integer gene lengths, scaled to 1e6."""
    lengths = np.random.default_rng(5).uniform(0.37, 3.3, size=a.n_vars)
    x = sp.csr_matrix(a.X, dtype=np.float64) @ sp.diags(1.0 / lengths)
    out = a.copy()
    out.X = sp.csr_matrix(x)
    return logged(out, base, 1e6)


@pytest.fixture(scope="module")
def counts() -> ad.AnnData:
    return nb_counts()


@pytest.fixture(scope="module")
def variants(counts) -> dict[str, ad.AnnData]:
    return {"counts": counts, "log1p_cp10k": logged(counts, math.e, 1e4),
            "log2_cpm": logged(counts, 2.0, 1e6), "log10_cp10k": logged(counts, 10.0, 1e4)}


# ------------------------------------------------------------------ base detection
@pytest.mark.parametrize("name,base", [("log1p_cp10k", math.e), ("log2_cpm", 2.0),
                                       ("log10_cp10k", 10.0)])
def test_log_base_is_detected(variants, name, base, caplog):
    x = variants[name].X
    errors = integer_errors(x)
    right = {math.e: "e", 2.0: "2", 10.0: "10"}[base]
    assert errors[right] < 1e-3
    assert all(e > 0.05 for k, e in errors.items() if k != right), errors
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        assert detect_log_base(x) == (base, "detected")
    assert "could not be detected" not in caplog.text
    assert detect_input_kind(x) == "log"


def test_log10_data_are_not_taken_for_twice_logged(counts, variants):
    x = counts.X.copy()
    x.data = np.log10(1.0 + x.data)  # log10(counts + 1)
    assert x.max() < 3.0  # below the twice-logged threshold, yet integer-derived under base 10
    assert detect_input_kind(x) == "log"
    assert detect_log_base(x) == (10.0, "detected")
    twice = variants["log1p_cp10k"].X.copy()
    twice.data = np.log1p(twice.data)
    with pytest.raises(PyClamsInputError, match="log-transformed twice"):
        detect_input_kind(twice)


@pytest.mark.parametrize("base,expected", [(2.0, 2.0), (math.e, math.e)])
def test_tpm_like_data_fall_back_on_the_largest_value_and_warn(counts, base, expected, caplog):
    x = tpm_like(counts, base).X
    assert min(integer_errors(x).values()) > 0.05
    assert (x.max() > 13) == (base == 2.0)
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        assert detect_log_base(x, what="the ref") == (expected, "guessed")
    assert "log base of the ref could not be detected" in caplog.text
    assert "log_base=" in caplog.text


@pytest.mark.parametrize("given,expected", [("e", math.e), ("E", math.e), (2, 2.0),
                                            ("2", 2.0), (10, 10.0), (10.0, 10.0),
                                            (math.e, math.e), (None, None)])
def test_log_base_override_values(given, expected):
    assert parse_log_base(given) == expected


def test_log_base_override_wins_over_detection(variants, caplog):
    x = variants["log1p_cp10k"].X
    assert detect_log_base(x, log_base=2) == (2.0, "given")
    pre = Preprocessor.fit(variants["log1p_cp10k"], n_top_genes=50, log_base="10")
    assert (pre.log_base, pre.log_base_source) == (10.0, "given")
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        Preprocessor.fit(variants["counts"], n_top_genes=50, log_base=2)
    assert "holds counts: log_base=2 is ignored" in caplog.text


@pytest.mark.parametrize("bad", [3, "ln", "log2", True, 0, -2.0, [2]])
def test_invalid_log_base_is_one_clear_error(variants, bad):
    with pytest.raises(PyClamsInputError, match="log_base must be 'e', 2 or 10") as err:
        parse_log_base(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(PyClamsInputError, match="log_base must be"):
        Preprocessor.fit(variants["counts"], n_top_genes=50, log_base=bad)


def test_scaled_input_says_what_to_pass_instead():
    x = sp.csr_matrix(np.array([[1.0, -0.5], [0.2, 0.3]], dtype=np.float32))
    with pytest.raises(PyClamsInputError, match="looks scaled or centred") as err:
        check_matrix_values(x, what="adata.X")
    assert "raw counts" in str(err.value) and "before scaling" in str(err.value)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ harmonised features
def test_references_of_every_kind_give_the_same_features(variants):
    pres = {k: Preprocessor.fit(a, n_top_genes=50) for k, a in variants.items()}
    ref = pres["counts"]
    feats = ref.log_normalised(variants["counts"])[0].toarray()
    assert ref.input_kind == "counts" and ref.log_base is None
    for name, pre in pres.items():
        assert pre.genes == ref.genes, name
        assert pre.size_genes == ref.size_genes, name
        np.testing.assert_allclose(pre.mean, ref.mean, atol=ATOL)
        np.testing.assert_allclose(pre.sd, ref.sd, atol=ATOL)
        own = pre.log_normalised(variants[name])[0].toarray()
        assert np.abs(own - feats).max() < ATOL, name
    assert pres["log2_cpm"].input_kind == "log" and pres["log2_cpm"].log_base == 2.0


def test_count_query_lands_on_the_same_scale_against_a_log_reference(variants, caplog):
    query = nb_counts(seed=3)
    by_counts = Preprocessor.fit(variants["counts"], n_top_genes=50)
    by_log2 = Preprocessor.fit(variants["log2_cpm"], n_top_genes=50)
    a = by_counts.log_normalised(query)[0].toarray()
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        b = by_log2.log_normalised(query)[0].toarray()
    assert np.abs(a - b).max() < ATOL
    np.testing.assert_allclose(by_counts.standardise(a), by_log2.standardise(b), atol=1e-2)
    assert by_log2.last_input == {"kind": "counts", "log_base": None, "log_base_source": None}
    assert "log1p of counts per 10,000" in caplog.text
    # and the reverse: a log2 query against the count reference
    c = by_counts.log_normalised(logged(query, 2.0, 1e6))[0].toarray()
    assert np.abs(a - c).max() < ATOL
    assert by_counts.last_input["log_base"] == 2.0


def test_log_query_library_size_uses_the_reference_genes(variants):
    """A log query normalised over more genes than the reference is rescaled like counts."""
    pre = Preprocessor.fit(variants["counts"], n_top_genes=50)
    query = nb_counts(seed=4)
    extra = sp.csr_matrix(np.full((query.n_obs, 30), 50.0, dtype=np.float32))
    wide = ad.AnnData(sp.hstack([query.X, extra]).tocsr())
    wide.obs_names = query.obs_names
    wide.var_names = list(query.var_names) + [f"EXTRA{i}" for i in range(30)]
    a = pre.log_normalised(query)[0].toarray()
    b = pre.log_normalised(logged(wide, math.e, 1e4))[0].toarray()
    assert np.abs(a - b).max() < ATOL


def test_gene_space_reports_the_query_input(variants):
    space, _ = GeneSpace.fit(variants["counts"], layer=None, is_log=None, n_top_genes=50,
                             batch_key=None)
    assert space.last_input is None
    space.transform(variants["log10_cp10k"])
    assert space.last_input == {"kind": "log", "log_base": 10.0, "log_base_source": "detected"}
    space.transform(variants["log1p_cp10k"], log_base="e")
    assert space.last_input["log_base_source"] == "given"


# ------------------------------------------------------------------ storage
def test_config_round_trip_keeps_what_was_detected(variants):
    pre = Preprocessor.fit(variants["log2_cpm"], n_top_genes=50)
    cfg = pre.to_config()
    assert (cfg["input_kind"], cfg["log_base"], cfg["log_base_source"], cfg["harmonise"]) == \
        ("log", 2.0, "detected", True)
    back = Preprocessor.from_config(cfg, pre.tensors())
    assert back == pre
    q = variants["counts"]
    np.testing.assert_array_equal(back.log_normalised(q)[0].toarray(),
                                  pre.log_normalised(q)[0].toarray())


def test_old_config_without_harmonise_passes_log_input_through(variants):
    pre = Preprocessor.fit(variants["counts"], n_top_genes=50)
    cfg = pre.to_config()
    for key in ("harmonise", "log_base", "log_base_source"):
        del cfg[key]
    old = Preprocessor.from_config(cfg, pre.tensors())
    assert old.harmonise is False
    log2 = variants["log2_cpm"]
    pos = log2.var_names.get_indexer(old.genes)
    got = old.log_normalised(log2)[0].toarray()
    np.testing.assert_array_equal(got, log2.X[:, pos].toarray())
    assert np.abs(got - pre.log_normalised(log2)[0].toarray()).max() > 0.5
    # counts are normalised exactly as before
    np.testing.assert_array_equal(old.log_normalised(variants["counts"])[0].toarray(),
                                  pre.log_normalised(variants["counts"])[0].toarray())


def test_counts_features_are_unchanged(ref):
    """Counts keep today's numbers: float32 log1p of counts per 10,000 over all genes."""
    pre = Preprocessor.fit(ref, n_top_genes=50)
    x = ref.X.toarray().astype(np.float32)
    expected = np.log1p(x * (np.float32(1e4) / x.sum(1, keepdims=True)))
    pos = ref.var_names.get_indexer(pre.genes)
    got = pre.log_normalised(ref)[0].toarray()
    np.testing.assert_allclose(got, expected[:, pos], rtol=1e-6, atol=1e-6)
    assert pre.to_config()["log_base"] is None
