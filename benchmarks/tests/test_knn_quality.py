"""``benchmarks/knn_quality.py``: its measures of a neighbour graph (no timing asserted)."""

from __future__ import annotations

import numpy as np
import torch

import knn_quality as kq


def _points(n=400, dim=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_exact_rows_are_the_brute_force_neighbours():
    x = _points()
    rows = np.array([0, 7, 399])
    got = kq.exact_rows(torch.from_numpy(x), rows, 6, block=2)
    d = ((x[rows][:, None] - x[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(got, np.argsort(d, 1)[:, :6])


def test_recall_and_distance_ratio_of_a_worse_graph():
    x = _points()
    rows = np.arange(50)
    exact = kq.exact_rows(torch.from_numpy(x), rows, 5)
    assert kq.recall(exact, exact) == 1.0 and kq.distance_ratio(x, rows, exact, exact) == 1.0
    worse = exact.copy()
    worse[:, -1] = kq.exact_rows(torch.from_numpy(x), rows, 40)[:, -1]  # 40th, not 5th
    assert abs(kq.recall(worse, exact) - 0.8) < 1e-12
    assert kq.distance_ratio(x, rows, worse, exact) > 1.0


def test_table_lists_every_record():
    recs = [{"cells": 10, "method": "exact (brute force)", "seconds": 1.0, "recall": 1.0},
            {"cells": 10, "method": "inverted lists", "seconds": 0.5, "recall": 0.9,
             "same_is_ood": 0.99}]
    lines = kq.table(recs).splitlines()
    assert len(lines) == 4 and "| 0.9000 |" in lines[3] and "| 0.5 |" in lines[3]
