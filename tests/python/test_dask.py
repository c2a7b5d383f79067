"""Dask-backed queries (issue 13, item 3): ``X`` as a Dask array, dense or with sparse chunks
(anndata's lazy reader), is annotated chunk by chunk with exactly the in-memory results, the
AnnData's Dask ``X`` is left as it was, and no chunk larger than a block is computed."""

from __future__ import annotations

import anndata as ad
import h5py
import numpy as np
import pytest

import pyclams.data.blocks as blocks

from .conftest import make_counts

da = pytest.importorskip("dask.array")

FIELDS = ("label", "label_raw", "confidence", "log_px", "ood_pvalue", "is_ood",
          "probabilities", "embedding")


def _dask_query(q: ad.AnnData, kind: str, path) -> ad.AnnData:
    if kind == "dense":
        x = da.from_array(q.X.toarray(), chunks=(37, q.n_vars))
    else:  # sparse chunks, as anndata's lazy reader gives them
        q.write_h5ad(path)
        x = ad.experimental.read_elem_lazy(h5py.File(path, "r")["X"], chunks=(37, q.n_vars))
    return ad.AnnData(X=x, obs=q.obs.copy(), var=q.var.copy())


@pytest.mark.parametrize("kind", ["dense", "sparse_chunks"])
def test_dask_query_gives_the_in_memory_results(trained_model, tmp_path, small_blocks, kind,
                                                block_rows, monkeypatch):
    q = make_counts(40, n_classes=4, seed=1, prefix="q")
    lazy = _dask_query(q, kind, tmp_path / "q.h5ad")
    assert isinstance(lazy.X, da.Array) and not blocks.in_memory(lazy.X)
    real_compute = da.Array.compute

    def compute(self, *args, **kwargs):
        if self.shape[0] == q.n_obs:
            pytest.fail("the Dask X was computed whole")
        return real_compute(self, *args, **kwargs)
    monkeypatch.setattr(da.Array, "compute", compute)
    monkeypatch.setattr(da.Array, "__array__",
                        lambda self, *a, **k: pytest.fail("the Dask X was turned into an array"))
    a = trained_model.infer(q, ood_fdr=0.2)
    b = trained_model.infer(lazy, ood_fdr=0.2)
    for f in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)),
                                      err_msg=f)
    assert block_rows and max(block_rows) < q.n_obs // 4
    # annotate writes the fields and leaves the Dask X alone
    trained_model.annotate(lazy, ood_fdr=0.2)
    assert isinstance(lazy.X, da.Array)
    np.testing.assert_array_equal(lazy.obs["clams_label"].astype(str), a.label.astype(str))
