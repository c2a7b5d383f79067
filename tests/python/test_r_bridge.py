"""The R bridge: reticulate helpers (always) and rpy2 / .rds conversion (when R is there)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pyclams import _r_rpy2, r_bridge
from pyclams.errors import PyClamsInputError
from pyclams.result import RESULT_FIELDS, UNKNOWN

from .conftest import make_counts

TINY = {"preset": "clams", "n_top_genes": 200.0,
        "network": {"widths": 32.0, "blocks_per_stage": 1.0},
        "train": {"max_epochs": 3.0, "min_epochs": 1.0, "min_steps_per_epoch": 5.0},
        "sgld": {"buffer_size": 200.0, "n_steps": 5.0}, "generative": []}


def _has_r(*packages: str) -> bool:
    if importlib.util.find_spec("rpy2") is None or shutil.which("R") is None:
        return False
    try:
        for p in packages:
            _r_rpy2.r_namespace(p)
    except Exception:  # noqa: BLE001 - any failure to start R means: skip
        return False
    return True


needs_r = pytest.mark.skipif(not _has_r("Matrix"), reason="rpy2 or R not available")
needs_seurat = pytest.mark.skipif(
    not _has_r("Seurat", "SingleCellExperiment", "pyclams"),
    reason="rpy2, R, Seurat, SingleCellExperiment or the R package pyclams not available")


# ------------------------------------------------------------------- reticulate helpers
def test_anndata_from_csc_transposes_without_densifying():
    dense = np.array([[1, 0, 3], [0, 0, 4]], dtype=float)  # genes x cells
    m = sp.csc_matrix(dense)
    a = r_bridge.anndata_from_csc(m.data, m.indices, m.indptr, 2, 3, ["g1", "g2"],
                                  ["c1", "c2", "c3"], {"lab": ["x", None, "y"]})
    assert sp.issparse(a.X) and a.X.format == "csr"
    np.testing.assert_array_equal(a.X.toarray(), dense.T)
    assert list(a.var_names) == ["g1", "g2"] and list(a.obs_names) == ["c1", "c2", "c3"]
    assert a.obs["lab"].isna().tolist() == [False, True, False]
    # a single gene or cell name arrives from reticulate as a plain string
    one = sp.csc_matrix(np.array([[2.0]]))
    b = r_bridge.anndata_from_csc(one.data, one.indices, one.indptr, 1, 1, "g", "c")
    assert b.shape == (1, 1) and b.X[0, 0] == 2
    with pytest.raises(PyClamsInputError, match="names"):
        r_bridge.anndata_from_csc(m.data, m.indices, m.indptr, 2, 3, ["g1"], ["c1", "c2", "c3"])


def test_new_model_coerces_r_numbers():
    model = r_bridge.new_model(TINY)
    assert model.n_top_genes == 200
    assert model.network_config.widths == (32,)
    assert isinstance(model.train_config.max_epochs, int)
    assert isinstance(model.sgld_config.buffer_size, int)
    assert model.sgld_config.step_size is None  # automatic, from the base measure
    stepped = r_bridge.new_model({**TINY, "sgld": {**TINY["sgld"], "step_size": 1}})
    assert stepped.sgld_config.step_size == 1.0
    with pytest.raises(PyClamsInputError, match="whole number"):
        r_bridge.new_model({"train": {"max_epochs": 2.5}})
    with pytest.raises(PyClamsInputError, match="unknown train setting"):
        r_bridge.new_model({"train": {"epochs": 2}})
    with pytest.raises(PyClamsInputError, match="preset"):
        r_bridge.new_model({"preset": "nope"})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return r_bridge.fit_for_r(make_counts(60, n_classes=3, seed=0), labels_key="cell_type",
                              options=TINY, path=str(tmp_path_factory.mktemp("m") / "m"),
                              seed=0.0, device="cpu", verbose=False)


def test_fit_and_infer_for_r(tiny_model, query):
    res = r_bridge.infer_for_r(tiny_model, query, ood={"fdr": 0.1, "method": "conformal"},
                               verbose=False)
    expected = tiny_model.infer(query, ood_fdr=0.1)
    # the plain columns of AnnotationResult.to_plain(), plus what R needs to type them
    assert res["fields"] == list(RESULT_FIELDS) and res["unknown"] == UNKNOWN
    assert isinstance(res["label"], list) and res["label"] == [str(v) for v in expected.label]
    np.testing.assert_allclose(res["log_px"], expected.log_px, rtol=0, atol=1e-6)
    assert res["log_px"].dtype == np.float64 and res["is_ood"].dtype == bool
    assert res["levels"] == {"label": [*tiny_model.classes, UNKNOWN],
                             "label_raw": list(tiny_model.classes)}
    assert res["probability_columns"] == [f"p_{c}" for c in tiny_model.classes]
    assert res["embedding"].shape == (query.n_obs, 32)
    assert res["cells"] == list(query.obs_names) and res["n_ood"] == expected.n_ood
    assert res["info"]["n_calibration"] > 0 and res["info"]["params"]["ood_fdr"] == 0.1
    with pytest.raises(PyClamsInputError, match="unknown OOD setting"):
        r_bridge.infer_for_r(tiny_model, query, ood={"alpha": 0.1})


def test_anndata_parts_round_trip(ref):
    parts = r_bridge.anndata_parts(ref)
    n_genes, n_cells = parts["shape"]
    back = r_bridge.anndata_from_csc(parts["data"], parts["indices"], parts["indptr"],
                                     n_genes, n_cells, parts["genes"], parts["cells"])
    assert (back.X != ref.X).nnz == 0
    assert parts["obs"]["cell_type"][0] == str(ref.obs["cell_type"].iloc[0])


def test_import_pyclams_does_not_need_rpy2():
    code = ("import sys; import pyclams, pyclams.r_bridge; "
            "assert 'rpy2' not in sys.modules, 'rpy2 imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_r_code_in_python_strings():
    import inspect

    import pyclams._r_reticulate as ret
    for module in (r_bridge, ret):
        src = inspect.getsource(module)
        for token in ("<- function", "function(", ".r(", "library("):
            assert token not in src, f"{module.__name__} holds R code ({token!r})"


# ----------------------------------------------------------------------------- rpy2 side
def _r(name: str, *args, **kwargs):
    """Call an R function of base / utils / methods by name."""
    return _r_rpy2.robjects().r[name](*args, **kwargs)


@needs_r
@pytest.mark.r
def test_as_dgcmatrix_from_sparse_and_dense():
    x = sp.random(6, 4, density=0.4, format="coo", random_state=0)
    genes, cells = [f"g{j}" for j in range(4)], [f"c{i}" for i in range(6)]
    before = x.copy()
    m = r_bridge.as_dgcmatrix(x, genes, cells)
    assert list(_r("class", m)) == ["dgCMatrix"] and list(_r("dim", m)) == [4, 6]
    assert bool(_r("validObject", m)[0])
    np.testing.assert_array_equal(np.asarray(_r("as.matrix", m)), x.toarray().T)
    assert list(_r("rownames", m)) == genes and list(_r("colnames", m)) == cells
    assert (x != before).nnz == 0                                 # the input is left as is
    dense = np.array([[0.0, 1.5], [2.0, 0.0], [0.0, 0.0]])
    d = r_bridge.as_dgcmatrix(dense, ["a", "b"], ["x", "y", "z"])
    np.testing.assert_array_equal(np.asarray(_r("as.matrix", d)), dense.T)
    assert list(_r("slot", d, "x")) == [1.5, 2.0]                 # zeros are not stored
    dup = sp.csr_matrix((np.array([1.0, 2.0]), np.array([1, 1]), np.array([0, 2])),
                        shape=(1, 2))                                # a duplicate entry
    np.testing.assert_array_equal(
        np.asarray(_r("as.matrix", r_bridge.as_dgcmatrix(dup, ["a", "b"], ["x"]))), [[0], [3]])
    with pytest.raises(PyClamsInputError, match="names"):
        r_bridge.as_dgcmatrix(dense, ["a"], ["x", "y", "z"])


@pytest.fixture(scope="module")
def pbmc_rds(tmp_path_factory):
    path = tmp_path_factory.mktemp("rds") / "pbmc_small.rds"
    ro = _r_rpy2.robjects()
    _r_rpy2.r_namespace("SeuratObject")
    ro.r["saveRDS"](ro.baseenv["::"]("SeuratObject", "pbmc_small"), str(path))
    return path


@pytest.fixture(scope="module")
def pbmc_model(pbmc_rds, tmp_path_factory):
    adata = r_bridge.seurat_to_anndata(r_bridge.read_rds(pbmc_rds))
    ref = adata[adata.obs["RNA_snn_res.1"].isin(["0", "1"])].copy()
    ref.obs["labels"] = ref.obs["RNA_snn_res.1"].astype(str)
    return r_bridge.fit_for_r(ref, labels_key="labels", options=TINY,
                              path=str(tmp_path_factory.mktemp("m") / "model"), device="cpu",
                              verbose=False)


def _r_list(robj) -> dict:
    return dict(zip(robj.names, robj, strict=True))


def _meta(path) -> pd.DataFrame:
    """meta.data of the Seurat object in ``path``, through the bridge itself."""
    return r_bridge.seurat_to_anndata(r_bridge.read_rds(path)).obs


@needs_seurat
@pytest.mark.r
def test_rds_round_trip_keeps_counts_names_and_metadata(pbmc_rds, tmp_path):
    obj = r_bridge.read_rds(pbmc_rds)
    adata = r_bridge.seurat_to_anndata(obj)                  # as.SingleCellExperiment + anndata2ri
    assert adata.shape == (80, 230) and adata.uns["seurat"]["assay"] == "RNA"
    assert adata.X.dtype == np.float64 and sp.issparse(adata.X) and "data" in adata.layers
    assert {"X_pca", "X_tsne"} <= set(adata.obsm)
    assert list(adata.obs.columns)[:3] == ["orig.ident", "nCount_RNA", "nFeature_RNA"]
    assert isinstance(adata.obs["RNA_snn_res.1"].dtype, pd.CategoricalDtype)
    logdata = r_bridge.seurat_to_anndata(obj, layer="data")
    assert (logdata.X != adata.layers["data"]).nnz == 0 and "counts" in logdata.layers
    with pytest.raises(PyClamsInputError, match="ADT"):
        r_bridge.seurat_to_anndata(obj, assay="ADT")
    back = r_bridge.anndata_to_seurat(adata)
    out = r_bridge.save_rds(back, tmp_path / "back.rds")
    assert [p.name for p in tmp_path.iterdir()] == ["back.rds"]   # no temporary file left
    b = r_bridge.read_rds(out)
    so = _r_rpy2.r_namespace("SeuratObject")
    counts = [so["GetAssayData"](o, slot="counts") for o in (obj, b)]
    assert bool(_r("identical", *counts)[0])
    assert list(_r("colnames", obj)) == list(_r("colnames", b))
    assert list(_r("rownames", obj)) == list(_r("rownames", b))
    original = _r("slot", obj, "meta.data")
    same = _r("all.equal", original, _r("[", _r("slot", b, "meta.data"), True,
                                         _r("colnames", original)))
    assert list(same) == [True]
    again = r_bridge.seurat_to_anndata(b)
    assert (again.X != adata.X).nnz == 0
    meta = [c for c in adata.obs.columns if c != "ident"]  # ident: Seurat's identities
    pd.testing.assert_frame_equal(again.obs[meta], adata.obs[meta], check_dtype=False)


@needs_seurat
@pytest.mark.r
def test_logical_metadata_comes_back_as_booleans():
    # anndata2ri alone gives R logicals as int32 0 / 1 and NA as -2147483648
    x = sp.csr_matrix(np.arange(1.0, 13.0).reshape(4, 3))
    obs = pd.DataFrame({"flag": [True, False, True, False],
                        "gappy": pd.array([True, None, False, True], dtype="boolean"),
                        "n": [1, 0, 1, 0]}, index=[f"c{i}" for i in range(4)])
    so = r_bridge.anndata_to_seurat(ad.AnnData(x, obs=obs, var=pd.DataFrame(index=["a", "b", "c"])))
    assert list(_r("class", _r("slot", so, "meta.data").rx2("gappy"))) == ["logical"]
    back = r_bridge.seurat_to_anndata(so).obs
    assert back["flag"].dtype == bool and back["flag"].tolist() == [True, False, True, False]
    assert str(back["gappy"].dtype) == "boolean"
    assert back["gappy"].isna().tolist() == [False, True, False, False]
    assert back["gappy"].fillna(False).tolist() == [True, False, False, True]
    assert back["n"].dtype.kind == "i" and back["n"].tolist() == [1, 0, 1, 0]  # stays numbers


@needs_seurat
@pytest.mark.r
def test_annotate_rds_writes_what_runclams_writes(pbmc_rds, pbmc_model, tmp_path):
    out = tmp_path / "annotated.rds"
    df = r_bridge.annotate_rds(pbmc_rds, out, pbmc_model, ood_fdr=0.3)
    adata = r_bridge.seurat_to_anndata(r_bridge.read_rds(pbmc_rds))
    expected = pbmc_model.predict(adata, ood_fdr=0.3)
    pd.testing.assert_frame_equal(df, expected)
    o = r_bridge.read_rds(out)
    meta = _meta(out)
    cols = [f"clams_{f}" for f in RESULT_FIELDS]
    assert set(cols) <= set(meta.columns)
    assert list(meta["clams_label"].cat.categories) == ["0", "1", UNKNOWN]
    assert list(meta["clams_label"].astype(str)) == list(df["label"].astype(str))
    assert meta["clams_is_ood"].dtype == bool
    assert meta["clams_is_ood"].tolist() == df["is_ood"].tolist()
    np.testing.assert_allclose(meta["clams_log_px"], df["log_px"], atol=1e-6)
    assert list(_r("names", _r("slot", o, "reductions"))) == ["pca", "tsne", "clams"]
    misc = _r_list(_r("slot", o, "misc").rx2("clams"))
    assert misc["model.id"][0] == pbmc_model.model_id and misc["ood.fdr"][0] == 0.3
    assert misc["assay"][0] == "RNA" and misc["n.ood"][0] == int(df["is_ood"].sum())
    assert "RunCLAMS.RNA.clams" in list(_r("names", _r("slot", o, "commands")))
    so = _r_rpy2.r_namespace("SeuratObject")
    counts = [so["GetAssayData"](x, slot="counts") for x in (o, r_bridge.read_rds(pbmc_rds))]
    assert bool(_r("identical", *counts)[0])


@needs_seurat
@pytest.mark.r
def test_overwrite_protection(pbmc_rds, pbmc_model, tmp_path):
    out = tmp_path / "a.rds"
    r_bridge.annotate_rds(pbmc_rds, out, pbmc_model)
    before = out.read_bytes()
    with pytest.raises(PyClamsInputError, match="already has columns.*overwrite"):
        r_bridge.annotate_rds(out, out, pbmc_model)
    assert out.read_bytes() == before                       # nothing written on error
    r_bridge.annotate_rds(out, out, pbmc_model, overwrite=True, ood_fdr=0.2)
    obj = r_bridge.read_rds(out)
    with pytest.raises(PyClamsInputError, match="one row per cell"):
        r_bridge.write_annotations_to_seurat(obj, pd.DataFrame(
            {c: [0] for c in RESULT_FIELDS}, index=["x"]), "other")
    df = pbmc_model.predict(r_bridge.seurat_to_anndata(obj))
    annotated = r_bridge.write_annotations_to_seurat(obj, df.iloc[::-1], "other",
                                                     misc={"note": "x"})
    meta = _r("slot", annotated, "meta.data")
    assert bool(_r("identical", meta.rx2("other_label_raw"), meta.rx2("clams_label_raw"))[0])
    assert list(_r("levels", meta.rx2("other_label"))) == ["0", "1", UNKNOWN]
    assert _r_list(_r("slot", annotated, "misc").rx2("other"))["note"][0] == "x"
    assert "other" not in list(_r("names", _r("slot", annotated, "reductions")))
    with pytest.raises(PyClamsInputError, match="other_label"):
        r_bridge.write_annotations_to_seurat(annotated, df, "other")


@needs_seurat
@pytest.mark.r
def test_cli_annotates_rds(pbmc_rds, pbmc_model, tmp_path, capsys):
    from pyclams import cli
    model_dir = tmp_path / "model"
    pbmc_model.save(model_dir)
    out = tmp_path / "out.rds"
    assert cli.main(["annotate", str(pbmc_rds), "--model", str(model_dir), "-o", str(out),
                     "--quiet"]) == 0
    assert cli.main(["annotate", str(out), "--model", str(model_dir), "-o", str(out),
                     "--quiet"]) == 2                       # columns exist: refused
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["annotate", str(out), "--model", str(model_dir), "-o", str(out),
                     "--quiet", "--overwrite"]) == 0
    assert {f"clams_{f}" for f in RESULT_FIELDS} <= set(_meta(out).columns)
