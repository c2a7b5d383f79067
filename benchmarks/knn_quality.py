"""How close the query neighbour graph of a large query is to the exact one, and what it costs.

    python benchmarks/knn_quality.py --model M --query Q.h5ad [--downstream]

The graph of :func:`pyclams.ood.neighbours.nearest_neighbours` (each cell and its
``--n-neighbors`` nearest cells on the feature PCs) is built by each method on the same PCs:

* ``inverted lists``: :mod:`pyclams.ood.inverted_lists` (pyclams' method above
  ``EXACT_MAX_CELLS`` cells), timed in this process;
* ``pynndescent``: ``NNDescent(..., low_memory=True)`` as pyclams called it before, timed in
  a fresh process (import and numba compilation included, as in each ``pyclams annotate``), and
  again within that process once compiled (one numba thread, as torch's one thread here);
  skipped when pynndescent is not installed.

For ``--sample`` random cells the exact neighbours are found by brute force: ``recall`` is the
share of the exact ``k`` nearest cells a method found, ``distance ratio`` the mean distance to
the neighbours found over the mean exact one. With ``--downstream`` the exact graph of all
cells is built too (quadratic: meant for about 100k cells) and the query is annotated with
each graph (``CLAMS.infer`` with the graph substituted): the table then gives the share of
cells whose label, raw label and OOD call agree with those of the exact graph.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def exact_rows(x: torch.Tensor, rows: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    """Exact ``k`` nearest cells (self included) of ``rows`` among all of ``x``."""
    sq = (x * x).sum(1)
    out = np.empty((rows.size, k), dtype=np.int64)
    for s in range(0, rows.size, block):
        r = torch.from_numpy(rows[s:s + block])
        d = torch.addmm(sq[None], x[r], x.T, alpha=-2)
        out[s:s + block] = torch.topk(d, k, 1, largest=False).indices.numpy()
    return out


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row of ``exact`` that the same row of ``found`` holds."""
    return float(np.mean([len(set(f) & set(e)) / len(e)
                          for f, e in zip(found.tolist(), exact.tolist(), strict=True)]))


def distance_ratio(x: np.ndarray, rows: np.ndarray, found: np.ndarray,
                   exact: np.ndarray) -> float:
    """Mean distance of ``rows`` to the neighbours found over that to the exact ones."""
    def mean_dist(idx: np.ndarray) -> float:
        return float(np.sqrt(((x[idx] - x[rows][:, None]) ** 2).sum(-1)).mean())
    return mean_dist(found) / mean_dist(exact)


def _pynndescent_worker(points: str, k: int, out: str) -> None:
    t0 = time.perf_counter()
    from pynndescent import NNDescent
    x = np.load(points)
    t1 = time.perf_counter()
    idx = NNDescent(x, n_neighbors=k, random_state=0, low_memory=True).neighbor_graph[0]
    t2 = time.perf_counter()
    NNDescent(x, n_neighbors=k, random_state=0, low_memory=True)
    t3 = time.perf_counter()
    np.save(out, idx)
    Path(out + ".json").write_text(json.dumps({"import": t1 - t0, "first": t2 - t1,
                                               "compiled": t3 - t2}))


def pynndescent_graph(x: np.ndarray, k: int, tmp: Path) -> tuple[np.ndarray, dict] | None:
    """pynndescent's graph and its times in a fresh process; None when it is not installed."""
    try:
        import pynndescent  # noqa: F401
    except ImportError:
        return None
    pts, out = tmp / "points.npy", str(tmp / "pynnd.npy")
    np.save(pts, x)
    subprocess.run([sys.executable, __file__, "--pynndescent-worker", str(pts), str(k), out],
                   check=True, env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    return np.load(out), json.loads(Path(out + ".json").read_text())


def answers(model, query, graph: np.ndarray) -> dict[str, np.ndarray]:
    """Label, raw label and OOD call of each cell, with ``graph`` as the query's graph."""
    import pyclams.model as model_module

    original = model_module.nearest_neighbours
    model_module.nearest_neighbours = lambda points, n_neighbors, **kw: graph
    try:
        res = model.infer(query)
    finally:
        model_module.nearest_neighbours = original
    return {"label": np.asarray(res.label), "label_raw": np.asarray(res.label_raw),
            "is_ood": np.asarray(res.is_ood)}


def measure(args: argparse.Namespace) -> list[dict]:
    import anndata as ad

    from pyclams import CLAMS
    from pyclams.ood.inverted_lists import inverted_list_neighbours
    from pyclams.ood.neighbours import _self_first, feature_pcs

    model = CLAMS.load(args.model)
    query = ad.read_h5ad(args.query)
    features, _ = model.space.transform(query)
    pcs = feature_pcs(features)
    x = torch.from_numpy(pcs)
    k = args.n_neighbors + 1
    rows = np.sort(np.random.default_rng(args.seed).choice(len(pcs), min(args.sample, len(pcs)),
                                                           replace=False))
    exact_sample = exact_rows(x, rows, k)
    graphs, records = {}, []
    t0 = time.perf_counter()
    graphs["inverted lists"] = inverted_list_neighbours(pcs, k, n_probe=args.n_probe)
    records.append({"method": f"inverted lists (n_probe {args.n_probe})",
                    "seconds": time.perf_counter() - t0})
    with tempfile.TemporaryDirectory() as tmp:
        got = pynndescent_graph(pcs, k, Path(tmp))
    if got is not None:
        graphs["pynndescent"], times = got
        records.append({"method": "pynndescent", "seconds": times["import"] + times["first"],
                        "seconds_compiled": times["compiled"]})
    for rec, graph in zip(records, graphs.values(), strict=True):
        rec["recall"] = recall(graph[rows], exact_sample)
        rec["distance_ratio"] = distance_ratio(pcs, rows, graph[rows], exact_sample)
    if args.downstream:
        t0 = time.perf_counter()
        exact = exact_rows(x, np.arange(len(pcs)), k)
        records.insert(0, {"method": "exact (brute force)", "seconds":
                           time.perf_counter() - t0, "recall": 1.0, "distance_ratio": 1.0})
        base = answers(model, query, _self_first(exact))
        for rec, graph in zip(records[1:], graphs.values(), strict=True):
            got = answers(model, query, _self_first(graph.astype(np.int64)))
            for key in base:
                rec[f"same_{key}"] = float(np.mean(got[key] == base[key]))
    for rec in records:
        rec["cells"] = len(pcs)
    return records


def table(records: list[dict]) -> str:
    cols = ["cells", "method", "seconds", "seconds_compiled", "recall", "distance_ratio",
            "same_label", "same_label_raw", "same_is_ood"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("" if v is None else f"{v:.4f}" if isinstance(v, float) and c not in
                         ("seconds", "seconds_compiled") else f"{v:.1f}" if isinstance(v, float)
                         else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--query", required=True, help="query .h5ad")
    p.add_argument("--n-neighbors", type=int, default=10)
    p.add_argument("--n-probe", type=int, default=None,
                   help="lists each cell probes (default: pyclams' N_PROBE)")
    p.add_argument("--sample", type=int, default=2000, help="cells with exact neighbours")
    p.add_argument("--downstream", action="store_true",
                   help="exact graph of all cells (quadratic) and the answers of each graph")
    p.add_argument("--seed", type=int, default=5)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from pyclams.ood.inverted_lists import N_PROBE

    args = parse_args(argv)
    if args.n_probe is None:
        args.n_probe = N_PROBE
    torch.set_num_threads(1)
    print(table(measure(args)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--pynndescent-worker":
        _pynndescent_worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main())
