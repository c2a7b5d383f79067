"""The R bridge: reticulate helpers (always) and rpy2 / .rds conversion (when R is there)."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pyclams import r_bridge
from pyclams.errors import PyClamsInputError

TINY = {"preset": "clams", "n_top_genes": 200.0,
        "network": {"widths": 32.0, "blocks_per_stage": 1.0},
        "train": {"max_epochs": 3.0, "min_epochs": 1.0, "min_steps_per_epoch": 5.0},
        "sgld": {"buffer_size": 200.0, "n_steps": 5.0}, "generative": []}


def _has_r() -> bool:
    if importlib.util.find_spec("rpy2") is None or shutil.which("R") is None:
        return False
    try:
        r_bridge._r()
    except Exception:  # noqa: BLE001 - any failure to start R means: skip
        return False
    return True


needs_r = pytest.mark.skipif(not _has_r(), reason="rpy2, R or SeuratObject not available")


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


def test_fit_and_infer_for_r(tmp_path, ref, query):
    model = r_bridge.fit_for_r(ref, labels_key="cell_type", options=TINY,
                               path=str(tmp_path / "m"), seed=0.0, device="cpu", verbose=False)
    assert (tmp_path / "m" / "config.json").exists()
    res = r_bridge.infer_for_r(model, query, ood_fdr=0.1, verbose=False)
    expected = model.predict(query, ood_fdr=0.1)
    table = res["table"]
    assert list(table.columns) == list(expected.columns)
    assert (table["label"] == expected["label"].astype(str)).all()
    np.testing.assert_allclose(table["log_px"], expected["log_px"], rtol=0, atol=1e-6)
    assert res["embedding"].shape == (query.n_obs, 32)
    assert res["classes"] == model.classes and res["n_calibration"] > 0
    plain = r_bridge.infer_for_r(model, query, ood_fdr=0.1, verbose=False, as_frame=False)
    assert isinstance(plain["table"]["label"], list) and plain["cells"] == list(query.obs_names)


def test_anndata_parts_round_trip(ref):
    parts = r_bridge.anndata_parts(ref)
    n_genes, n_cells = parts["shape"]
    back = r_bridge.anndata_from_csc(parts["data"], parts["indices"], parts["indptr"],
                                     n_genes, n_cells, parts["genes"], parts["cells"])
    assert (back.X != ref.X).nnz == 0
    assert parts["obs"]["cell_type"][0] == str(ref.obs["cell_type"].iloc[0])


# ----------------------------------------------------------------------------- rpy2 side
@pytest.fixture(scope="module")
def pbmc_rds(tmp_path_factory):
    path = tmp_path_factory.mktemp("rds") / "pbmc_small.rds"
    ro, _ = r_bridge._r()
    ro.r(f'saveRDS(SeuratObject::pbmc_small, "{path}")')
    return path


@pytest.fixture(scope="module")
def pbmc_model(pbmc_rds, tmp_path_factory):
    adata = r_bridge.seurat_to_anndata(r_bridge.read_rds(pbmc_rds))
    ref = adata[adata.obs["RNA_snn_res.1"].isin(["0", "1"])].copy()
    ref.obs["labels"] = ref.obs["RNA_snn_res.1"].astype(str)
    return r_bridge.fit_for_r(ref, labels_key="labels", options=TINY,
                              path=str(tmp_path_factory.mktemp("m") / "model"), device="cpu",
                              verbose=False)


def _r_eval(code: str, **objects):
    ro, _ = r_bridge._r()
    for name, value in objects.items():
        ro.globalenv[name] = value
    return ro.r(code)


@needs_r
@pytest.mark.r
def test_rds_round_trip_keeps_counts_names_and_metadata(pbmc_rds, tmp_path):
    obj = r_bridge.read_rds(pbmc_rds)
    adata = r_bridge.seurat_to_anndata(obj)
    assert adata.shape == (80, 230)
    assert adata.X.dtype == np.float64 and "data" in adata.layers
    assert {"X_pca", "X_tsne"} <= set(adata.obsm)
    assert list(adata.obs.columns)[:3] == ["orig.ident", "nCount_RNA", "nFeature_RNA"]
    assert isinstance(adata.obs["RNA_snn_res.1"].dtype, pd.CategoricalDtype)
    back = r_bridge.anndata_to_seurat(adata)
    out = r_bridge.save_rds(back, tmp_path / "back.rds")
    same = _r_eval(
        'o <- SeuratObject::pbmc_small; b <- readRDS(path)\n'
        'c(counts = identical(SeuratObject::GetAssayData(o, slot = "counts"),\n'
        '                     SeuratObject::GetAssayData(b, slot = "counts")),\n'
        '  cells = identical(colnames(o), colnames(b)),\n'
        '  genes = identical(rownames(o), rownames(b)),\n'
        '  meta = isTRUE(all.equal(o[[]], b[[]][, colnames(o[[]])], check.attributes = TRUE)))',
        path=str(out))
    assert dict(zip(same.names, list(same), strict=True)) == {
        "counts": True, "cells": True, "genes": True, "meta": True}
    again = r_bridge.seurat_to_anndata(r_bridge.read_rds(out))
    assert (again.X != adata.X).nnz == 0
    pd.testing.assert_frame_equal(again.obs[adata.obs.columns], adata.obs, check_dtype=False)


@needs_r
@pytest.mark.r
def test_annotate_rds_writes_columns_reduction_and_misc(pbmc_rds, pbmc_model, tmp_path):
    out = tmp_path / "annotated.rds"
    df = r_bridge.annotate_rds(pbmc_rds, out, pbmc_model, ood_fdr=0.3)
    adata = r_bridge.seurat_to_anndata(r_bridge.read_rds(pbmc_rds))
    expected = pbmc_model.predict(adata, ood_fdr=0.3)
    np.testing.assert_allclose(df["log_px"], expected["log_px"], rtol=0, atol=1e-6)
    res = _r_eval(
        'o <- readRDS(path); m <- o[[]]\n'
        'list(cols = colnames(m), levels = levels(m$clams_label),\n'
        '     ood = m$clams_is_ood, logpx = m$clams_log_px, label = as.character(m$clams_label),\n'
        '     red = SeuratObject::Reductions(o), model = o@misc$clams$model_id,\n'
        '     counts = identical(SeuratObject::GetAssayData(o, slot = "counts"),\n'
        '                        SeuratObject::GetAssayData(SeuratObject::pbmc_small,\n'
        '                                                   slot = "counts")))',
        path=str(out))
    get = dict(zip(res.names, res, strict=True))
    cols = [f"clams_{c}" for c in r_bridge.RESULT_COLUMNS]
    assert set(cols) <= set(get["cols"])
    assert list(get["levels"]) == ["0", "1", "unknown"]
    assert list(get["red"]) == ["pca", "tsne", "clams"]
    assert get["model"][0] == pbmc_model.model_id
    assert bool(get["counts"][0])
    np.testing.assert_allclose(np.asarray(get["logpx"]), df["log_px"].to_numpy(), atol=1e-6)
    assert list(get["label"]) == df["label"].tolist()
    assert [bool(v) for v in get["ood"]] == df["is_ood"].tolist()


@needs_r
@pytest.mark.r
def test_overwrite_protection(pbmc_rds, pbmc_model, tmp_path):
    out = tmp_path / "a.rds"
    r_bridge.annotate_rds(pbmc_rds, out, pbmc_model)
    before = out.read_bytes()
    with pytest.raises(PyClamsInputError, match="exist already"):
        r_bridge.annotate_rds(out, out, pbmc_model)
    assert out.read_bytes() == before                       # nothing written on error
    r_bridge.annotate_rds(out, out, pbmc_model, overwrite=True, ood_fdr=0.2)
    obj = r_bridge.read_rds(out)
    with pytest.raises(PyClamsInputError, match="one row per cell"):
        r_bridge.write_annotations_to_seurat(obj, pd.DataFrame(
            {c: [0] for c in r_bridge.RESULT_COLUMNS}, index=["x"]), "other")
    adata = r_bridge.seurat_to_anndata(obj)
    df = pbmc_model.predict(adata)
    annotated = r_bridge.write_annotations_to_seurat(obj, df.iloc[::-1], "other")
    res = _r_eval('identical(o2$other_label_raw, factor(o2$clams_label_raw, levels = c("0", "1")))',
                  o2=annotated)
    assert bool(res[0])


def test_import_pyclams_does_not_need_rpy2():
    import subprocess
    import sys
    code = ("import sys; import pyclams, pyclams.r_bridge; "
            "assert 'rpy2' not in sys.modules, 'rpy2 imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_r
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
    adata = r_bridge.seurat_to_anndata(r_bridge.read_rds(out))
    assert {f"clams_{c}" for c in r_bridge.RESULT_COLUMNS} <= set(adata.obs.columns)
