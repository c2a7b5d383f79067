"""Seconds per training epoch on pbmc3k under CPU contention, by torch thread count.

Each setting runs in a fresh process (``OMP_WAIT_POLICY`` is read when torch's OpenMP runtime
loads; ``default`` is libgomp's own policy, which pyclams replaces by ``PASSIVE`` unless the
user set one). A ``yes > /dev/null`` busy loop runs beside it when ``--busy`` is given (one per
requested busy core). Prints one row per setting: threads, wait policy, busy loops, seconds of
each epoch, and the process's CPU seconds per wall second.

    OMP_NUM_THREADS= python benchmarks/thread_contention.py --data ../shared/data --busy 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import anndata as ad, torch
import pyclams
threads, epochs, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ref = ad.read_h5ad(path)
t0, c0 = time.perf_counter(), time.process_time()
model = pyclams.CLAMS(train={"max_epochs": epochs, "min_epochs": 1, "patience": 99})
model.fit(ref, labels_key="cell_type", seed=0, device="cpu", verbose=False, n_threads=threads)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"epochs": [round(s, 2) for s in model.history["seconds"]],
                  "cpu_per_wall": round(cpu / wall, 2), "torch_threads": torch.get_num_threads()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--busy", type=int, default=1, help="busy loops beside training")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--policies", nargs="+", default=["default", "PASSIVE"])
    parser.add_argument("--env-threads", action="store_true",
                        help="also set OMP_NUM_THREADS to the thread count in the child's "
                             "environment (else it is unset and torch starts with all cores)")
    args = parser.parse_args()
    path = os.path.join(args.data, "pbmc3k_10x_v1.h5ad")
    loops = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(args.busy)]
    try:
        time.sleep(0.5)
        for policy in args.policies:
            for threads in args.threads:
                env = {k: v for k, v in os.environ.items()
                       if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
                # "default": libgomp's own (spin a while, then sleep); an empty value is read
                # as unset by libgomp and kept by pyclams (which otherwise sets PASSIVE)
                env["OMP_WAIT_POLICY"] = "" if policy == "default" else policy
                if args.env_threads:
                    env["OMP_NUM_THREADS"] = str(threads)
                done = subprocess.run([sys.executable, "-c", CHILD, str(threads),
                                       str(args.epochs), path], env=env,
                                      capture_output=True, text=True)
                if done.returncode:
                    sys.exit(done.stderr)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                omp = env.get("OMP_NUM_THREADS", "unset")
                print(f"threads {threads}  OMP_NUM_THREADS {omp:5s}  wait {policy:8s}  "
                      f"busy loops {args.busy}  "
                      f"epoch s {row['epochs']}  cpu/wall {row['cpu_per_wall']}", flush=True)
    finally:
        for p in loops:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
