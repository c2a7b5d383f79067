"""Smoke test of ``benchmarks/bench_speed.py`` at tiny sizes (no timing asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import bench_speed

ARGS = ["--sizes", "600", "900", "--annotate-only-above", "600", "--max-epochs", "1",
        "--floor-steps", "2", "--profiles", "reference", "--ood-class", "CD8 T",
        "--device", "cpu"]


def _in_process(task: str, spec: dict, workdir: Path) -> dict:
    """The workers without the subprocess (imports once: keeps the test fast)."""
    spec = {**spec, "result": str(workdir / f"{task}.json")}
    return bench_speed.WORKERS[task](spec)


def test_table_has_every_measurement_with_its_floor(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_speed, "run_worker", _in_process)
    args = bench_speed.parse_args(ARGS)
    records = bench_speed.measure(args, tmp_path, log=lambda s: None)
    kinds = [(r["size"], r["what"]) for r in records]
    assert kinds == [(600, "train"), (600, "annotate"), (600, "annotate e2e"),
                     (900, "annotate"), (900, "annotate e2e")]
    for r in records:
        assert r["cells_per_s"] > 0 and r["floor_cells_per_s"] > 0, r
        assert r["peak_rss_mb"] > 0
    annotate = [r for r in records if r["what"] == "annotate"]
    for r in annotate:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["auroc"] <= 1
        assert r["query_cells"] == r["size"]
    assert records[3]["trained_on"] == 600
    train = records[0]
    assert train["epochs"] == 1 and train["steps"] >= 50  # min_steps_per_epoch
    text = bench_speed.table(records)
    lines = text.splitlines()
    assert len(lines) == 2 + len(records)
    assert "(model of 600)" in lines[5] and "| 900 |" in lines[5]
    # the simulated files are removed once measured
    assert not list(tmp_path.glob("*.h5ad"))


def test_a_measurement_runs_in_its_own_process(tmp_path):
    spec = {"threads": 1, "device": "cpu", "batch_size": 16, "n_classes": 3, "steps": 2}
    rec = bench_speed.run_worker("floor_train", spec, tmp_path)
    assert rec["cells_per_s"] > 0 and rec["p_on"] == pytest.approx(0.25)
    # ru_maxrss of the worker, which imported torch: tens of MB at least
    assert rec["peak_rss_mb"] > 50
    assert json.loads((tmp_path / "floor_train.result.json").read_text()) == rec


def test_a_failing_worker_says_why(tmp_path):
    with pytest.raises(RuntimeError, match="floor_train failed"):
        bench_speed.run_worker("floor_train", {"threads": 1, "device": "nodevice",
                                               "batch_size": 4, "n_classes": 2, "steps": 1},
                               tmp_path)


def test_table_leaves_missing_figures_blank():
    rec = {"size": 10, "device": "cpu", "what": "annotate", "cells_per_s": 5.0,
           "floor_cells_per_s": 10.0, "peak_rss_mb": 1.0, "accuracy": math.nan,
           "trained_on": 10}
    row = bench_speed.table([rec]).splitlines()[-1]
    assert "| 0.50 |" in row and "nan" not in row
