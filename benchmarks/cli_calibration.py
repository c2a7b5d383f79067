"""Trustworthy answers (issue 12) measured with the command line alone, before and after.

For each protocol and seed: ``pyclams train`` on the reference, ``pyclams annotate`` on the
query with the defaults, ``pyclams evaluate --json``. With ``--before-src`` (a checkout of an
earlier pyclams) the same is run with that code, so both sides come from one run on one
machine. Models are cached in ``<out>/models`` (``<out>/models_before``): rerun to resume.

    .venv/bin/python benchmarks/cli_calibration.py --data ../shared/data \
        --protocols P1 P2 P3 P5 P2_logref P2_logquery --seeds 0 1 2 \
        --before-src /tmp/pyclams-old -o benchmarks/results/calibration

Protocols ``P2_logref`` / ``P2_logquery`` (and ``P1_...``) are P2 (P1) with the reference /
the query given as log2(CPM + 1) instead of counts (cross-kind pairs: issue 12's input
harmonisation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clams_benchmark.protocols import load_protocol

CROSS_KIND = {f"{p}_log{side}": (p, side) for p in ("P1", "P2") for side in ("ref", "query")}
SUMMARY_COLS = ["accuracy", "macro_f1", "ece", "auroc_log_px", "realised_fdr", "ood_rejected",
                "id_rejected", "train_s"]


def log2_cpm(adata):
    """The same cells as log2(counts per million + 1), sparse."""
    x = sp.csr_matrix(adata.X, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    out = (sp.diags(1e6 / totals) @ x).tocsr()
    out.data = np.log2(out.data + 1.0)
    new = adata.copy()
    new.X = out.astype(np.float32)
    return new


def write_data(name: str, data_dir: str, out: Path) -> tuple[Path, Path, list[str]]:
    """Reference and query files of a protocol (or a cross-kind variant of one)."""
    base, logged = CROSS_KIND.get(name, (name, None))
    ref_path, query_path = out / f"{name}_ref.h5ad", out / f"{name}_query.h5ad"
    proto = load_protocol(base, data_dir)
    if not (ref_path.exists() and query_path.exists()):
        out.mkdir(parents=True, exist_ok=True)
        ref = log2_cpm(proto.ref) if logged == "ref" else proto.ref
        query = log2_cpm(proto.query) if logged == "query" else proto.query
        ref.write_h5ad(ref_path, compression="gzip")
        query.write_h5ad(query_path, compression="gzip")
    return ref_path, query_path, list(proto.ood_classes)


def pyclams(args: list[str], src: str | None) -> str:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    # run the earlier code from its own checkout: from here the current package would shadow it
    out = subprocess.run([sys.executable, "-m", "pyclams", *args], capture_output=True,
                         text=True, env=env, cwd=src or None)
    if out.returncode != 0:
        raise RuntimeError(f"pyclams {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def one_run(name: str, seed: int, ref: Path, query: Path, ood: list[str], out: Path,
            src: str | None, label: str, share_model: bool) -> dict:
    models = out / ("models" if label == "after" or share_model else "models_before")
    model_dir = models / f"{name}_s{seed}"
    annotated = out / "annotated" / f"{name}_s{seed}_{label}.h5ad"
    annotated.parent.mkdir(parents=True, exist_ok=True)
    train_s = float("nan")
    if not (model_dir / "config.json").exists():
        t0 = time.perf_counter()
        pyclams(["train", str(ref), "--labels-key", "cell_type", "-o", str(model_dir),
                 "--preset", "clams", "--seed", str(seed), "--device", "cpu", "--quiet",
                 "--overwrite"], src)
        train_s = time.perf_counter() - t0
    pyclams(["annotate", str(query), "--model", str(model_dir), "-o", str(annotated),
             "--quiet", "--overwrite"], src)
    rep = json.loads(pyclams(["evaluate", str(annotated), "--truth-key", "cell_type",
                              "--ood-classes", ",".join(ood), "--json"], None))
    info = json.loads(pyclams(["info", str(model_dir)], None))
    return {"protocol": name, "code": label, "seed": seed, **rep, "model_id": info.get("model_id"),
            "diverged": info["diverged"], "train_s": round(train_s, 1)}


def markdown_table(df: pd.DataFrame) -> str:
    """One row per protocol and code: mean over seeds and the worst seed of each metric."""
    metrics = [("accuracy", "ID accuracy", min), ("ece", "ECE", max),
               ("realised_fdr", "realised FDR", max), ("ood_rejected", "OOD flagged", min),
               ("id_rejected", "ID flagged", max), ("auroc_log_px", "AUROC log p(x)", min),
               ("auroc_ood_pvalue", "AUROC OOD p-value", min)]
    head = "| protocol | code | seeds | " + " | ".join(m[1] for m in metrics) + " |"
    lines = [head, "|" + "---|" * (3 + len(metrics))]
    for (proto, code), g in df.groupby(["protocol", "code"], sort=True):
        cells = []
        for col, _, worst in metrics:
            v = g[col].dropna() if col in g else pd.Series(dtype=float)
            if v.empty:
                cells.append("n/a (none flagged)" if col == "realised_fdr" else "n/a")
                continue
            note = ""
            if col == "realised_fdr" and len(v) < len(g):
                note = f" ({len(g) - len(v)} seed(s) flagged none)"
            cells.append(f"{v.mean():.3f} ({worst(v):.3f}){note}")
        lines.append(f"| {proto} | {code} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--protocols", nargs="+", default=["P1", "P2", "P3", "P5"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--before-src", default=None,
                    help="a checkout of the earlier pyclams to measure 'before' with")
    ap.add_argument("--share-models", nargs="*", default=[],
                    help="protocols whose 'before' annotation reuses the model trained by the "
                         "current code (where training did not change, e.g. counts on both "
                         "sides: check that the model ids agree)")
    ap.add_argument("-o", "--out", default="benchmarks/results/calibration")
    ap.add_argument("--table", nargs="+", default=None, metavar="RUNS_CSV",
                    help="only print the markdown table (mean, worst seed) of these runs.csv")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(pd.concat([pd.read_csv(p) for p in args.table])))
        return
    out = Path(args.out).resolve()
    runs_csv = out / "runs.csv"
    rows = pd.read_csv(runs_csv).to_dict("records") if runs_csv.exists() else []
    done = {(r["protocol"], r["code"], int(r["seed"])) for r in rows}
    codes = [("after", None)] + ([("before", args.before_src)] if args.before_src else [])
    for name in args.protocols:
        ref, query, ood = write_data(name, args.data, out / "data")
        for seed in args.seeds:
            for label, src in codes:
                if (name, label, seed) in done:
                    continue
                row = one_run(name, seed, ref, query, ood, out, src, label,
                              share_model=name in args.share_models)
                rows.append(row)
                print(json.dumps(row), flush=True)
                pd.DataFrame(rows).to_csv(runs_csv, index=False)
    df = pd.DataFrame(rows)
    summary = df.groupby(["protocol", "code"])[SUMMARY_COLS].agg(["mean", "min", "max"])
    summary.to_csv(out / "summary.csv")
    print(markdown_table(df))


if __name__ == "__main__":
    main()
