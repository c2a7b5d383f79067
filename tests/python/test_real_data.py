"""Small real-data training runs: the bundled demo data (always) and a shared protocol (when
``../shared/data`` is present)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from pyclams import CLAMS
from pyclams.data.demo import demo_query, demo_reference
from pyclams.metrics import auroc, ece

from .conftest import SHARED_DATA

QUICK = {"train": {"max_epochs": 10, "min_epochs": 3, "patience": 5, "min_steps_per_epoch": 20},
         "sgld": {"buffer_size": 2000, "n_steps": 10}}


def _id_accuracy_and_auroc(model, query):
    df = model.predict(query)
    truth = query.obs["cell_type"].astype(str).to_numpy()
    known = np.isin(truth, model.classes)
    acc = float(np.mean(df["label_raw"].to_numpy()[known] == truth[known]))
    return acc, auroc(df["log_px"], known), df


def test_bundled_pbmc_reference_annotates_pbmc3k():
    ref, query = demo_reference(), demo_query()
    model = CLAMS(**QUICK).fit(ref, labels_key="cell_type", seed=0, verbose=False,
                               device="cpu")
    acc, au, df = _id_accuracy_and_auroc(model, query)
    # chance is 1/3 for B / CD4 T / CD8 T; monocytes, NK, DC, platelets are unseen
    assert acc > 0.7, acc
    assert au > 0.7, au
    assert df.loc[query.obs["cell_type"] == "B", "label_raw"].eq("B").mean() > 0.9


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="shared data folder not present")
def test_shared_protocol_p5_log_data(monkeypatch):
    # the shared protocols belong to the paper's benchmark (benchmarks/, not installed)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from clams_benchmark.protocols import load_protocol
    from pyclams.ood import labels
    proto = load_protocol("P5", SHARED_DATA)
    model = CLAMS(**QUICK).fit(proto.ref, labels_key="cell_type", seed=0, verbose=False,
                               device="cpu")
    assert model.preprocessor.input_kind == "log"
    acc, au, _ = _id_accuracy_and_auroc(model, proto.query)
    assert acc > 0.75, acc  # 8 reference types
    assert au > 0.6, au
    # cross-chemistry: the query's graph folds CD8 T cells into CD4 T, so CD4 T absorbs them
    # and its cells keep their type with a neighbourhood confidence, which is better calibrated
    # than the consensus agreement the type would get otherwise
    truth = proto.query.obs["cell_type"].astype(str).to_numpy()
    known = np.isin(truth, model.classes)
    result = model.infer(proto.query)
    assert "T_CD4" in result.info["graph_absorbing"]
    monkeypatch.setattr(labels, "MAX_ABSORBED", np.inf)
    before = model.infer(proto.query)
    assert before.info["graph_absorbing"] == []
    eces = [ece(r.confidence[known], r.label_raw[known] == truth[known])
            for r in (result, before)]
    assert eces[0] < eces[1] - 0.01, eces


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="shared data folder not present")
def test_shared_protocol_p3_novel_cells_in_a_small_type_are_flagged(monkeypatch):
    # Xin -> Wang pancreas: the novel ductal, stellate and acinar cells are mostly predicted as
    # the small delta type. The query-aware call finds delta's few known cells and flags the
    # rest; taking the class's bulk as known (the rule switched off) flags almost none.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from clams_benchmark.protocols import load_protocol
    from pyclams.ood import query_null
    proto = load_protocol("P3", SHARED_DATA)
    model = CLAMS(**QUICK).fit(proto.ref, labels_key="cell_type", seed=0, verbose=False,
                               device="cpu")
    novel = ~np.isin(proto.query.obs["cell_type"].astype(str).to_numpy(), model.classes)
    result = model.infer(proto.query)
    flagged = result.is_ood
    assert "delta" in result.info["known_mode_classes"]
    assert flagged[novel].mean() > 0.6, flagged[novel].mean()
    assert (flagged & ~novel).sum() / max(flagged.sum(), 1) < 0.25
    monkeypatch.setattr(query_null, "SEPARATION", np.inf)
    assert model.infer(proto.query).is_ood[novel].mean() < 0.3
