"""The benchmark harness on a tiny synthetic protocol: rows, failures, cache, report, CLI."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic import make_counts

from clams_benchmark import protocols, registry
from clams_benchmark.baselines import prediction_frame
from clams_benchmark.cli import main
from clams_benchmark.ebm_methods import ABLATIONS, fit_predict_ebm, is_ebm_method
from clams_benchmark.harness import run_benchmark
from clams_benchmark.protocols import Protocol, loco_split
from clams_benchmark.scoring import score_table

RUN = Path(__file__).resolve().parents[1] / "run.py"

TINY = "TINY"
FAST_EBM = {"min_steps_per_epoch": 5, "min_epochs": 1}


def _tiny(data_dir) -> Protocol:
    ref = make_counts(40, n_classes=3, seed=0)
    query = make_counts(20, n_classes=4, seed=1, prefix="q")
    return Protocol(TINY, ref, query, ["type3"], "synthetic")


@pytest.fixture
def tiny_protocol(monkeypatch):
    monkeypatch.setitem(protocols.PROTOCOLS, TINY, _tiny)
    return TINY


@pytest.fixture
def counted(monkeypatch):
    """Two temporary methods that count their calls: one works, one always raises."""
    calls = {"ok": 0, "boom": 0}

    def works(ref, query, *, labels_key, seed=0):
        calls["ok"] += 1
        lab = np.where(np.arange(query.n_obs) % 2 == 0, "type0", "type1")
        return prediction_frame(query.obs_names, lab, confidence=np.full(query.n_obs, 0.6),
                                ood_score=np.linspace(0, 1, query.n_obs))

    def boom(ref, query, *, labels_key, seed=0):
        calls["boom"] += 1
        raise RuntimeError("deliberate harness failure 17")

    registry.register("_count_ok", "classifier")(works)
    registry.register("_count_boom", "classifier")(boom)
    yield calls
    registry.unregister("_count_ok")
    registry.unregister("_count_boom")


def _run(tmp_path, methods, **kw):
    return run_benchmark(tmp_path, tmp_path / "out", protocols=[TINY],
                         experiments=["annotation"], methods=methods, verbose=False, **kw)


def test_harness_writes_rows_tables_and_figures(tmp_path, tiny_protocol, counted):
    results, md = _run(tmp_path, ["_count_boom", "svm_reject", "resnet"], ebm_seeds=2,
                       epochs=2)
    out = tmp_path / "out"
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == 1 + 1 + 2  # boom, svm (1 baseline seed), resnet x 2 seeds
    assert list(csv[csv["method"] == "resnet"]["seed"]) == [0, 1]
    ok = csv[csv["status"] == "ok"]
    assert set(ok["method"]) == {"svm_reject", "resnet"}  # the failure did not stop the run
    assert ((ok["accuracy"] > 0.8) & (ok["auroc_score"].between(0, 1))).all()
    resnet = csv[csv["method"] == "resnet"]
    assert (resnet["family"] == "classifier").all() and (resnet["epochs"] == 2).all()
    assert resnet["diverged"].notna().all() and resnet["auroc_max_p"].notna().all()
    bad = csv[csv["method"] == "_count_boom"].iloc[0]
    assert bad["status"] == "failed" and "deliberate harness failure 17" in bad["reason"]
    text = md.read_text()
    assert "| method | family | seeds | TINY |" in text
    assert "deliberate harness failure 17" in text and "_count_boom" in text
    resnet_acc = [line for line in text.splitlines() if line.startswith("| resnet |")][0]
    assert "±" in resnet_acc  # mean ± sd over the two seeds
    for name in ("heatmap", "ood_hist", "reliability", "roc"):
        assert (out / "figures" / f"{name}_{TINY}.png").stat().st_size > 0


def test_cache_skips_finished_runs_and_retries_failures(tmp_path, tiny_protocol, counted):
    first, _ = _run(tmp_path, ["_count_ok", "_count_boom"], baseline_seeds=2)
    assert counted == {"ok": 2, "boom": 2}
    assert not first["cached"].any()
    second, md = _run(tmp_path, ["_count_ok", "_count_boom"], baseline_seeds=2)
    assert counted == {"ok": 2, "boom": 4}  # finished runs skipped, failures retried
    assert second.set_index(["method", "seed"])["cached"].to_dict() == {
        ("_count_ok", 0): True, ("_count_ok", 1): True,
        ("_count_boom", 0): False, ("_count_boom", 1): False}
    pd.testing.assert_series_equal(first.loc[first["status"] == "ok", "accuracy"],
                                   second.loc[second["status"] == "ok", "accuracy"])
    assert "2 taken from the cache" in md.read_text()
    third, _ = _run(tmp_path, ["_count_ok"], baseline_seeds=3)  # one new seed only
    assert counted["ok"] == 3 and int(third["cached"].sum()) == 2


def test_missing_preset_is_recorded_not_raised(tmp_path):
    ref, query = make_counts(30, seed=0), make_counts(10, seed=1, prefix="q")
    registry.register("_no_preset", "ebm")(functools.partial(fit_predict_ebm,
                                                             preset="no_such_preset"))
    try:
        res = registry.run_method("_no_preset", ref, query, labels_key="cell_type")
    finally:
        registry.unregister("_no_preset")
    assert res.status == "failed" and "no_such_preset" in res.reason


def test_ebm_methods_registered_with_extra_columns_and_divergence():
    names = registry.names()
    for m in ("clams", "jem", "resnet", "vera", "hdge", "hdge_jem"):
        assert m in names and is_ebm_method(m)
    assert registry.get("resnet").family == "classifier"
    assert registry.get("clams").family == "ebm"
    assert len(ABLATIONS) == 16 and all(a in names for a in ABLATIONS)
    assert ABLATIONS["abl_relu_p0.1_t-1"] == {"clip": "relu", "p_on": 0.1, "threshold": -1.0}
    ref, query = make_counts(30, seed=0), make_counts(10, n_classes=4, seed=1, prefix="q")
    res = registry.run_method("resnet", ref, query, labels_key="cell_type", seed=0,
                              max_epochs=1, device="cpu", train=FAST_EBM, n_top_genes=50)
    assert res.ok, res.reason
    assert {"label_raw", "max_prob"} <= set(res.predictions.columns)
    assert res.extra["diverged"] is False and res.extra["n_epochs"] == 1
    assert not (res.predictions["label_raw"] == "unknown").any()


def test_loco_split_holds_out_one_class():
    adata = make_counts(20, n_classes=4, seed=0)
    fold = loco_split(adata, "type2", seed=3, train_fraction=0.8)
    ref_lab = fold.ref.obs["cell_type"].astype(str)
    q_lab = fold.query.obs["cell_type"].astype(str)
    assert "type2" not in set(ref_lab) and (q_lab == "type2").sum() == 20
    assert ref_lab.value_counts().to_dict() == {"type0": 16, "type1": 16, "type3": 16}
    assert (q_lab != "type2").sum() == 12 and fold.is_ood.sum() == 20
    assert not set(fold.ref.obs_names) & set(fold.query.obs_names)
    other = loco_split(adata, "type2", seed=4)
    assert set(other.ref.obs_names) != set(fold.ref.obs_names)


def test_scoring_uses_best_class_and_counts_rejections():
    table = pd.DataFrame({
        "label": ["a", "unknown", "b", "unknown"], "label_raw": ["a", "a", "a", "b"],
        "confidence": [0.9, 0.8, 0.6, 0.7], "ood_score": [3.0, 2.0, 1.0, 0.0],
        "rejected": [False, True, False, True], "truth": ["a", "a", "b", "x"],
        "is_ood": [False, False, False, True]})
    s = score_table(table)
    assert s["accuracy"] == pytest.approx(2 / 3)  # label_raw, not the "unknown" label
    assert s["acc_w_rej"] == pytest.approx(1 / 3)
    assert s["auroc_score"] == 1.0 and s["ood_rejected"] == 1.0
    assert s["id_rejected"] == pytest.approx(1 / 3)
    assert s["auroc_max_p"] == pytest.approx(2 / 3)  # no max_prob: confidence is used


@pytest.mark.parametrize("extra,message", [
    (["--protocols", "P9"], "unknown protocol"),
    (["--experiments", "nonsense"], "unknown experiment"),
    (["--methods", "no_such_method"], "unknown method"),
    (["--seeds", "0"], "seeds must be at least 1"),
])
def test_cli_rejects_bad_arguments_with_exit_2(tmp_path, capsys, extra, message):
    code = main(["--data", str(tmp_path), "-o", str(tmp_path / "o"), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_run_script_and_package_hold_no_benchmark(tmp_path):
    """``python benchmarks/run.py`` finds its package from anywhere; pyclams ships none of it."""
    out = subprocess.run([sys.executable, str(RUN), "--data", str(tmp_path), "-o",
                          str(tmp_path / "o"), "--protocols", "P9"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 2 and "run.py: error: unknown protocol" in out.stderr
    for module in ("pyclams.benchmark", "pyclams.ebm.vera", "pyclams.ebm.hdge"):
        assert importlib.util.find_spec(module) is None
    from pyclams.cli import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args(["benchmark", "--data", "x", "-o", "y"])
