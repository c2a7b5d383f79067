"""Measure CLAMS with the command line alone on the shared protocols (issue 3's table).

For each protocol, preset and seed: ``pyclams train`` on the reference, ``pyclams annotate`` on
the query, ``pyclams evaluate --json``; prints one row per run and a mean / worst-seed summary.

    .venv/bin/python benchmarks/cli_protocols.py --data ../shared/data --protocols P1 P2 \
        --presets clams jem classifier --seeds 0 1 2 -o benchmarks/results/cli
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from clams_benchmark.protocols import load_protocol, write_protocol

PYCLAMS = [sys.executable, "-m", "pyclams"]


def run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--protocols", nargs="+", default=["P1", "P2"])
    ap.add_argument("--presets", nargs="+", default=["clams", "jem", "classifier"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--ood-fdr", type=float, default=0.05)
    ap.add_argument("-o", "--out", default="benchmarks/results/cli")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for proto in args.protocols:
        ref_path, query_path = write_protocol(proto, args.data, out / "data")
        ood = load_protocol(proto, args.data).ood_classes
        for preset in args.presets:
            for seed in args.seeds:
                tag = f"{proto}_{preset}_s{seed}"
                model_dir, annotated = out / "models" / tag, out / "annotated" / f"{tag}.h5ad"
                t0 = time.perf_counter()
                run([*PYCLAMS, "train", str(ref_path), "--labels-key", "cell_type", "-o",
                     str(model_dir), "--preset", preset, "--seed", str(seed), "--device", "cpu",
                     "--quiet", "--overwrite"])
                t_train = time.perf_counter() - t0
                run([*PYCLAMS, "annotate", str(query_path), "--model", str(model_dir), "-o",
                     str(annotated), "--ood-fdr", str(args.ood_fdr), "--quiet"])
                rep = json.loads(run([*PYCLAMS, "evaluate", str(annotated), "--truth-key",
                                      "cell_type", "--ood-classes", ",".join(ood), "--json"]))
                info = json.loads(run([*PYCLAMS, "info", str(model_dir)]))
                row = {"protocol": proto, "preset": preset, "seed": seed, **rep,
                       "diverged": info["diverged"], "best_epoch": info["best_epoch"],
                       "train_s": round(t_train, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
    df = pd.DataFrame(rows)
    cols = ["accuracy", "macro_f1", "ece", "auroc_log_px", "auroc_max_p",
            "ood_recall_at_id10_log_px", "ood_rejected",
            "id_rejected", "train_s"]
    summary = df.groupby(["protocol", "preset"])[cols].agg(["mean", "min", "max"])
    summary["diverged_runs"] = df.groupby(["protocol", "preset"])["diverged"].sum()
    summary.to_csv(out / "summary.csv")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
