import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import pyclams
from pyclams import CLAMS
from pyclams.errors import PyClamsInputError
from pyclams.metrics import auroc

from .conftest import FAST, FAST_SGLD, assert_unchanged, make_counts, snapshot

SMALL_NET = {"widths": (64, 32), "blocks_per_stage": 1}


def test_trained_model_beats_chance_and_scores_unseen_type_lower(trained_model, query):
    df = trained_model.predict(query)
    truth = query.obs["cell_type"].astype(str).to_numpy()
    known = np.isin(truth, trained_model.classes)
    acc = np.mean(df["label_raw"].to_numpy()[known] == truth[known])
    assert acc > 0.9  # chance is 1/3
    assert auroc(df["log_px"], known) > 0.8
    assert list(df.columns[:6]) == ["label", "label_raw", "confidence", "log_px", "ood_pvalue",
                                    "is_ood"]
    np.testing.assert_allclose(df.filter(like="p_").sum(1), 1.0, rtol=1e-5)


def test_annotate_writes_documented_fields(trained_model, query):
    out = trained_model.annotate(query, copy=True)
    assert "clams_label" not in query.obs  # copy=True leaves the input alone
    for col in ("label", "label_raw", "confidence", "log_px", "ood_pvalue", "is_ood"):
        assert f"clams_{col}" in out.obs
    assert out.obs["clams_label"].dtype == "category"
    assert "unknown" in out.obs["clams_label"].cat.categories
    assert (out.obs["clams_label"].astype(str)[out.obs["clams_is_ood"]] == "unknown").all()
    assert out.obsm["clams_probabilities"].shape == (query.n_obs, 3)
    assert out.obsm["clams_embedding"].shape == (query.n_obs, 32)
    assert out.uns["clams"]["classes"] == trained_model.classes
    assert out.uns["clams"]["model_id"] == trained_model.model_id
    assert trained_model.annotate(query, key_added="run2") is None
    assert "run2_label" in query.obs and "run2" in query.uns


def test_failed_annotate_leaves_query_unchanged(trained_model, query):
    snap = snapshot(query)
    with pytest.raises(PyClamsInputError, match="genes"):
        trained_model.annotate(query[:, :20].copy(), min_gene_overlap=0.5)
    bad = query.copy()
    snap_bad = snapshot(bad)
    with pytest.raises(PyClamsInputError):
        trained_model.annotate(bad, ood_fdr=2.0)
    assert_unchanged(bad, snap_bad)
    assert_unchanged(query, snap)


def test_too_few_held_out_cells_for_the_fdr_warns(trained_model, query, caplog):
    n_cal = trained_model.calibrator.n_scores
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        df = trained_model.predict(query, ood_fdr=0.5 / (n_cal + 1), calibration="class",
                                   n_neighbors=0)
    assert "normal-tail extrapolation" in caplog.text
    # only cells below every calibration score can reach such a p-value
    flagged = df["is_ood"].to_numpy()
    assert (df["log_px"].to_numpy()[flagged] < trained_model.calibrator.scores.min()).all()


def test_max_prob_rejection_option(trained_model, query):
    df = trained_model.predict(query, ood_method="max_prob", min_confidence=0.99)
    np.testing.assert_array_equal(df["is_ood"], df["confidence"] < 0.99)


def test_same_seed_same_model_on_cpu(ref):
    kw = {"train": FAST, "sgld": FAST_SGLD, "network": SMALL_NET, "n_top_genes": 80}
    a = CLAMS(**kw).fit(ref, labels_key="cell_type", seed=3, verbose=False, device="cpu")
    b = CLAMS(**kw).fit(ref, labels_key="cell_type", seed=3, verbose=False, device="cpu")
    assert a.model_id == b.model_id
    pd.testing.assert_frame_equal(a.history.drop(columns="seconds"),
                                  b.history.drop(columns="seconds"))


@pytest.mark.parametrize("preset", ["jem", "classifier"])
def test_presets_train(ref, preset):
    m = pyclams.train(ref, labels_key="cell_type", preset=preset, train=FAST, sgld=FAST_SGLD,
                      network=SMALL_NET, verbose=False, device="cpu")
    hist = m.history
    assert len(hist) >= 2 and {"train_ce", "val_acc"} <= set(hist.columns)
    assert hist["gen_loss"].isna().all() == (preset == "classifier")
    assert m.metrics_["test_accuracy"] > 0.8


def test_divergence_is_detected_recorded_and_best_weights_kept(ref, caplog):
    m = CLAMS(preset="jem", train={**FAST, "max_abs_energy": 1e-3, "min_epochs": 1},
              sgld=FAST_SGLD, network=SMALL_NET)
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        m.fit(ref, labels_key="cell_type", verbose=False, device="cpu")
    assert m.history_.diverged and m.history_.divergence_epoch == 1
    assert "energy exploded" in m.history_.divergence_reason
    assert "DIVERGED" in caplog.text
    assert m.metrics_["diverged"] is True
    out = m.annotate(make_counts(10, n_classes=3, seed=5), copy=True)
    assert out.uns["clams"]["diverged"] is True


def test_unlabelled_cells_are_left_out(ref, caplog):
    a = ref.copy()
    a.obs["cell_type"] = a.obs["cell_type"].astype(object)
    a.obs.iloc[:5, 0] = None
    with caplog.at_level(logging.WARNING, logger="pyclams"):
        m = CLAMS(train=FAST, sgld=FAST_SGLD, network=SMALL_NET).fit(
            a, labels_key="cell_type", verbose=False, device="cpu")
    assert "no label" in caplog.text
    assert m.fit_params["n_cells"] == a.n_obs - 5


def test_sample_generates_cells_the_model_recognises(trained_model):
    gen = trained_model.sample(40, label="type1", seed=0)
    assert gen.shape == (40, len(trained_model.preprocessor.genes))
    assert list(gen.var_names) == trained_model.preprocessor.genes
    assert (gen.obs["label"] == "type1").all() and gen.X.min() >= 0
    # classify the generated (scaled) features with the model itself
    import torch
    with torch.no_grad():
        pred = trained_model.net(torch.from_numpy(gen.layers["scaled"])).argmax(1).numpy()
    assert np.mean(pred == trained_model.classes.index("type1")) > 0.9
    mixed = trained_model.sample(30, seed=1)
    assert set(mixed.obs["label"].astype(str)) <= set(trained_model.classes)
    with pytest.raises(PyClamsInputError, match="not a class"):
        trained_model.sample(5, label="nope")


def test_harmony_mode_is_tied_to_its_query(ref, query):
    ref = ref.copy()
    ref.obs["batch"] = "r"
    m = CLAMS(train=FAST, sgld=FAST_SGLD, network=SMALL_NET).fit(
        ref, labels_key="cell_type", integrate="harmony", query=query, n_pcs=10,
        verbose=False, device="cpu")
    df = m.predict(query)
    truth = query.obs["cell_type"].astype(str).to_numpy()
    known = np.isin(truth, m.classes)
    assert np.mean(df["label_raw"].to_numpy()[known] == truth[known]) > 0.8
    with pytest.raises(PyClamsInputError, match="integrate='harmony'"):
        m.predict(query[:10].copy())
    with pytest.raises(PyClamsInputError, match="needs the query"):
        CLAMS().fit(ref, labels_key="cell_type", integrate="harmony")


def test_unknown_settings_are_rejected():
    with pytest.raises(PyClamsInputError, match="unknown train setting"):
        CLAMS(train={"epochs": 3})
    with pytest.raises(PyClamsInputError, match="preset"):
        CLAMS(preset="nope")


def test_default_annotation_is_query_aware_and_recorded(trained_model, query, tmp_path):
    q = query.copy()
    trained_model.annotate(q)
    info = q.uns["clams"]
    assert info["calibration_used"] == "query" and info["label_mode_used"] == "auto"
    assert info["score_neighbors"] == 10 and 0 <= info["query_shift"] <= 1
    n_types = len(trained_model.classes)
    assert all(len(v) == n_types for v in info["class_maps"].values())
    assert {"shift", "scale", "n_query", "suspect"} <= set(info["class_maps"])
    novel = (q.obs["cell_type"] == "type3").to_numpy()
    flagged = q.obs["clams_is_ood"].to_numpy()
    assert flagged[novel].mean() > 0.5 and flagged[~novel].mean() < 0.1
    assert len(info["graph_purity"]) == n_types
    # cells labelled by their neighbourhood: the confidence is the share that agrees (k/11)
    whole = trained_model.predict(query, label_mode="neighbourhood")["confidence"].to_numpy()
    np.testing.assert_allclose(whole * 11, np.round(whole * 11), atol=1e-4)
    q.write_h5ad(tmp_path / "q.h5ad")  # everything recorded can be written, and read back
    back = ad.read_h5ad(tmp_path / "q.h5ad").uns["clams"]
    np.testing.assert_allclose(back["graph_purity"], info["graph_purity"])
    np.testing.assert_allclose(back["class_maps"]["shift"], info["class_maps"]["shift"])
    per_cell = trained_model.predict(query, n_neighbors=0)
    probs = per_cell[[f"p_{c}" for c in trained_model.classes]].to_numpy()
    np.testing.assert_allclose(per_cell["confidence"], probs.max(1), rtol=1e-6)



def _graphs(monkeypatch) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (points, neighbour indices) of each query graph ``CLAMS.infer`` builds."""
    import pyclams.model as model_module

    graphs = []
    real = model_module.nearest_neighbours

    def spy(points, n_neighbors):
        graphs.append((np.array(points), real(points, n_neighbors)))
        return graphs[-1][1]
    monkeypatch.setattr(model_module, "nearest_neighbours", spy)
    return graphs


def _assert_same_info(a, b, path="info"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same_info(a[k], b[k], f"{path}/{k}")
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)


@pytest.mark.parametrize("max_cells", [None, 70])  # all cells in memory / axes from a sample
def test_graph_pcs_taken_in_the_forward_give_the_same_annotation(trained_model, query,
                                                                  monkeypatch, max_cells):
    from pyclams.ood import neighbours as nb

    if max_cells is not None:
        monkeypatch.setattr(nb, "PCA_MAX_CELLS", max_cells)
    graphs = _graphs(monkeypatch)
    collected = []
    real_result = nb.BlockPCs.result
    monkeypatch.setattr(nb.BlockPCs, "result",
                        lambda self: collected.append(self) or real_result(self))
    fused = trained_model.infer(query, batch_size=17)
    assert len(collected) == 1  # the graph's PCs did come from the forward's blocks
    monkeypatch.setattr(CLAMS, "_block_pcs", lambda self, features: None)
    apart = trained_model.infer(query, batch_size=17)  # feature_pcs reading the cells again
    assert len(collected) == 1
    (points_fused, idx_fused), (points_apart, idx_apart) = graphs
    np.testing.assert_array_equal(idx_fused, idx_apart)
    np.testing.assert_array_equal(points_fused, points_apart)
    pd.testing.assert_frame_equal(fused.to_frame(), apart.to_frame(), check_exact=True)
    np.testing.assert_array_equal(fused.embedding, apart.embedding)
    _assert_same_info(fused.info, apart.info)
