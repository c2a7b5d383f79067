"""Run every registered baseline once (seed 0) on the benchmark protocols and print a table.

Usage::

    python benchmarks/run_baselines_seed0.py [--data /work/shared/data] [--protocols P1 P2]
        [--methods svm_reject seurat ...] [--seed 0] [--out results.csv]

Metrics are those of ``pyclams.metrics.annotation_report``: accuracy, macro-F1 and ECE of the
best-class label on query cells whose type the reference knows, AUROC of the method's own OOD
score (ID = positive), the shares of OOD / ID cells the method rejects, and the wall time of
fit + predict. ECE is left empty for a method without probabilities. ``acc_w_rej`` is the ID accuracy when a rejected cell counts as wrong.
Rows named ``method[variant]`` rerun a method with other options (see ``VARIANTS``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

# one thread per library: the machine is shared, and oversubscribed BLAS/torch threads are slow
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from clams_benchmark.ebm_methods import is_ebm_method  # noqa: E402
from clams_benchmark.protocols import load_protocol  # noqa: E402
from clams_benchmark.registry import names, run_method  # noqa: E402
from pyclams.metrics import annotation_report  # noqa: E402

ANCHORS = {  # earlier CPU runs, seed 0: (accuracy, OOD AUROC)
    ("P1", "seurat"): (0.816, 0.649),
    ("P1", "singler"): (0.767, 0.924),
    ("P1", "celltypist"): (0.848, 0.792),
    ("P1", "celltypist[hvg2000]"): (0.848, 0.792),
    ("P2", "seurat"): (0.954, 0.465),
    ("P2", "svm_reject"): (0.957, 0.617),
    ("P2", "knn_ingest"): (np.nan, 0.907),
}
OPTIONS = {"scanvi": {"n_threads": 1, "scvi_epochs": 50, "scanvi_epochs": 20,
                      "query_epochs": 20}}
VARIANTS = {  # extra rows: row name -> (method, options)
    "celltypist[hvg2000]": ("celltypist", {"n_top_genes": 2000}),
}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data")
    parser.add_argument("--protocols", nargs="+", default=["P1", "P2", "P3", "P5"])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the table as CSV here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("pyclams").setLevel(logging.WARNING)
    methods = args.methods or [n for n in names() if not is_ebm_method(n)]
    runs = [(m, m, OPTIONS.get(m, {})) for m in methods]
    runs += [(row, m, opts) for row, (m, opts) in VARIANTS.items() if m in methods]

    rows = []
    for proto_name in args.protocols:
        proto = load_protocol(proto_name, args.data)
        truth = proto.query.obs[proto.labels_key].astype(str).to_numpy()
        known = sorted(set(proto.ref.obs[proto.labels_key].astype(str)))
        for row_name, method, options in runs:
            res = run_method(method, proto.ref, proto.query, labels_key=proto.labels_key,
                             seed=args.seed, **options)
            row = {"protocol": proto_name, "method": row_name, "status": res.status,
                   "wall_s": round(res.wall_time_s, 1)}
            if res.ok:
                p = res.predictions
                row.update(annotation_report(
                    truth, p["label"].to_numpy(), p["confidence"].to_numpy(),
                    known_labels=known, ood_scores={"own": p["ood_score"].to_numpy()},
                    rejected=p["rejected"].to_numpy()))
                if p["confidence"].isna().all():  # no probability (SingleR): no calibration
                    row["ece"] = np.nan
                is_id = np.isin(truth, known)
                hit = (p["label"].to_numpy() == truth) & ~p["rejected"].to_numpy()
                row["acc_w_rej"] = float(hit[is_id].mean())
            else:
                row["reason"] = res.reason
            anchor = ANCHORS.get((proto_name, row_name))
            if anchor is not None:
                row["anchor_acc"], row["anchor_auroc"] = anchor
            rows.append(row)
            print(f"{proto_name} {row_name}: {res.status} in {res.wall_time_s:.1f}s "
                  f"{res.reason[:200]}", file=sys.stderr, flush=True)

    table = pd.DataFrame(rows)
    cols = ["protocol", "method", "status", "n_id", "n_ood", "accuracy", "macro_f1", "ece",
            "auroc_own", "acc_w_rej", "ood_rejected", "id_rejected", "wall_s", "anchor_acc", "anchor_auroc"]
    shown = table.reindex(columns=cols)
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.3f}".format):
        print(shown.to_string(index=False))
    failed = table[table["status"] != "ok"] if "reason" in table else table.iloc[:0]
    for _, r in failed.iterrows():
        print(f"{r['protocol']} {r['method']} {r['status']}: {r['reason']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return table


if __name__ == "__main__":
    main()
