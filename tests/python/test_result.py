import anndata as ad
import numpy as np
import pandas as pd
import pytest

from pyclams.errors import PyClamsInputError
from pyclams.result import RESULT_FIELDS, UNKNOWN, AnnotationResult, result_columns


def _result(n=4):
    classes = ["A", "B"]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], np.float32)[:n]
    raw = np.array(classes, dtype=object)[probs.argmax(1)]
    is_ood = np.array([False, False, True, False])[:n]
    return AnnotationResult(pd.Index([f"c{i}" for i in range(n)]), classes,
                            np.where(is_ood, UNKNOWN, raw).astype(object), raw, probs.max(1),
                            np.arange(n, dtype=np.float32), np.linspace(0.01, 1, n), is_ood,
                            probs, np.ones((n, 3), np.float32), {"model_id": "x"})


def test_one_schema_for_anndata_frame_and_r():
    r = _result()
    a = ad.AnnData(np.zeros((4, 2), np.float32), obs=pd.DataFrame(index=r.obs_names))
    r.write(a, key_added="k")
    assert list(a.obs.columns) == result_columns("k") == [f"k_{f}" for f in RESULT_FIELDS]
    assert list(a.obs["k_label"].cat.categories) == ["A", "B", UNKNOWN]
    assert a.obs["k_label"].tolist() == ["A", "B", UNKNOWN, "A"]
    assert a.obsm["k_probabilities"].shape == (4, 2) and a.uns["k"]["classes"] == ["A", "B"]
    df = r.to_frame()
    assert list(df.columns) == [*RESULT_FIELDS, "p_A", "p_B"]
    plain = r.to_plain()
    assert plain["label"] == ["A", "B", UNKNOWN, "A"] and plain["cells"] == list(r.obs_names)
    assert plain["embedding"].dtype == np.float64 and plain["embedding"].flags.c_contiguous


def test_write_refuses_bad_keys_other_cells_and_clashes():
    r = _result()
    a = ad.AnnData(np.zeros((4, 2), np.float32), obs=pd.DataFrame(index=r.obs_names))
    for bad in ("", None, "a/b", 3):
        with pytest.raises(PyClamsInputError, match="key_added"):
            r.write(a, key_added=bad)
    other = ad.AnnData(np.zeros((4, 2), np.float32))
    with pytest.raises(PyClamsInputError, match="other cells"):
        r.write(other)
    r.write(a, key_added="k")
    with pytest.raises(PyClamsInputError, match="already has k_label"):
        r.write(a, key_added="k", overwrite=False)
