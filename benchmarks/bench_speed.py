"""Speed and scale of pyclams against plain-PyTorch floors measured in the same run.

    python benchmarks/bench_speed.py --sizes 10000 100000 1000000

For each size (cells x 2,000 genes) and device (the CPU; CUDA too when torch sees it) it
measures, each in its own subprocess (so that ``ru_maxrss`` is that measurement's peak host
RAM):

* ``train``: pyclams training cells/s (``CLAMS.fit``; cells through the training loop per
  second of the loop), against ``floor train``: a minimal PyTorch JEM loop on a plain network
  of the model's size (cross-entropy, plus on the same share of steps as the preset's ``p_on``
  a replay buffer on the device, 20 SGLD steps and ``L_g``), same batch;
* ``annotate``: ``CLAMS.infer`` on a query already in memory, against ``floor forward``: a plain
  torch forward of that network over as many cells;
* ``annotate e2e``: ``pyclams annotate`` (the CLI, in-process) from ``.h5ad`` to ``.h5ad``,
  against ``floor e2e``: anndata reading the same file, the plain forward, and anndata writing
  the file with the same outputs (same compression).

Data: :class:`pyclams.simulate.NBProfiles` fitted to the bundled demo data (the labelled
pbmc3k query: 8 types, so that accuracy means something; ``--profiles reference`` for the
3-type sorted reference), one type (``--ood-class``) left out of the reference: accuracy is
over the query's in-reference cells and the OOD AUROC that of log p(x). Above
``--annotate-only-above`` cells the size is annotated with the model of the largest trained
size. The table (markdown) goes to stdout; ``--json`` saves the raw records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

LABELS = "cell_type"
REPO = Path(__file__).resolve().parents[1]
N_GENES = 2000


# ---------------------------------------------------------------------------- workers
def _peak() -> dict:
    """This process's peak host RAM (MB) and, when CUDA was used, peak GPU memory (MB)."""
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def work_simulate(spec: dict) -> dict:
    from pyclams.data.demo import demo_query, demo_reference
    from pyclams.simulate import NBProfiles

    source = demo_query() if spec["profiles"] == "query" else demo_reference()
    prof = NBProfiles.fit(source, labels_key=LABELS, n_genes=N_GENES)
    out = {"classes": prof.classes}
    ood = spec["ood_class"]
    if ood not in prof.classes:
        raise SystemExit(f"--ood-class {ood!r} is not one of {prof.classes}")
    t0 = time.perf_counter()
    for what, n, seed, classes in (("reference", spec["n_ref"], spec["seed"],
                                    [c for c in prof.classes if c != ood]),
                                   ("query", spec["n_query"], spec["seed"] + 1, None)):
        if not n:
            continue
        adata = prof.simulate(n, seed=seed, classes=classes, prefix=what[0])
        adata.write_h5ad(spec[what])
        out[f"{what}_nnz"] = int(adata.X.nnz)
        del adata
    out["seconds"] = time.perf_counter() - t0
    return out


def work_train(spec: dict) -> dict:
    import anndata as ad

    from pyclams import CLAMS

    ref = ad.read_h5ad(spec["reference"])
    model = CLAMS(n_top_genes=N_GENES)
    t0 = time.perf_counter()
    model.fit(ref, labels_key=LABELS, max_epochs=spec["max_epochs"],
              batch_size=spec["batch_size"], device=spec["device"], verbose=False, seed=0)
    wall = time.perf_counter() - t0
    model.save(spec["model"], overwrite=True)
    cfg, hist = model.train_config, model.history_.table()
    n_train = model.fit_params["n_train"]
    per_pass = -(-n_train // cfg.batch_size)
    passes = -(-cfg.min_steps_per_epoch // per_pass)
    cells = len(hist) * passes * n_train
    loop = float(hist["seconds"].sum())
    return {"cells_per_s": cells / loop, "loop_seconds": loop, "fit_seconds": wall,
            "epochs": len(hist), "n_train": n_train, "batch_size": cfg.batch_size,
            "steps": len(hist) * passes * per_pass,
            "val_acc": float(hist["val_acc"].iloc[-1]), **_peak()}


def _evaluate(adata, ood_class: str) -> dict:
    from pyclams.metrics import accuracy, auroc

    truth = adata.obs[LABELS].astype(str).to_numpy()
    is_id = truth != ood_class
    return {"accuracy": accuracy(truth[is_id], adata.obs["clams_label_raw"].astype(str)
                                 .to_numpy()[is_id]),
            "auroc": auroc(adata.obs["clams_log_px"].to_numpy(), is_id)}


def work_annotate(spec: dict) -> dict:
    import anndata as ad

    from pyclams import CLAMS

    query = ad.read_h5ad(spec["query"])
    model = CLAMS.load(spec["model"], device=spec["device"])
    _sync(spec["device"])
    t0 = time.perf_counter()
    model.annotate(query)
    _sync(spec["device"])
    dt = time.perf_counter() - t0
    return {"cells_per_s": query.n_obs / dt, "seconds": dt,
            **_evaluate(query, spec["ood_class"]), **_peak()}


def work_e2e(spec: dict) -> dict:
    import anndata as ad

    from pyclams.cli import main

    t0 = time.perf_counter()
    rc = main(["annotate", spec["query"], "--model", spec["model"], "-o", spec["output"],
               "--device", spec["device"], "--quiet", "--overwrite"])
    dt = time.perf_counter() - t0
    if rc:
        raise SystemExit(f"pyclams annotate failed ({rc})")
    peak = _peak()
    out = ad.read_h5ad(spec["output"], backed="r")
    n = out.n_obs
    return {"cells_per_s": n / dt, "seconds": dt, **peak}


def floor_network(n_in: int, n_classes: int):
    """A plain network of the model's size: pyclams' default ResNet-MLP widths and blocks,
    written out in torch (no base measure)."""
    from torch import nn

    from pyclams.nn.build import NetworkConfig

    cfg = NetworkConfig()

    class Block(nn.Module):
        def __init__(self, w: int):
            super().__init__()
            self.body = nn.Sequential(nn.ELU(), nn.Linear(w, w), nn.ELU(),
                                      nn.Dropout(cfg.dropout), nn.Linear(w, w))

        def forward(self, x):
            return x + self.body(x)

    layers, prev = [nn.Linear(n_in, cfg.widths[0])], cfg.widths[0]
    for w in cfg.widths:
        if w != prev:
            layers += [nn.ELU(), nn.Linear(prev, w)]
        layers += [Block(w) for _ in range(cfg.blocks_per_stage)]
        prev = w
    layers += [nn.ELU(), nn.Linear(prev, n_classes)]
    return nn.Sequential(*layers)


def work_floor_train(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F

    from pyclams.ebm.losses import PRESETS

    dev, b, k = torch.device(spec["device"]), spec["batch_size"], spec["n_classes"]
    p_on = PRESETS["clams"]["p_on"]
    net = floor_network(N_GENES, k).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator(device=dev).manual_seed(0)
    data = torch.randn(max(8 * b, 4096), N_GENES, device=dev, generator=gen)
    labels = torch.randint(0, k, (data.shape[0],), device=dev, generator=gen)
    buffer = torch.randn(10_000, N_GENES, device=dev, generator=gen)
    draws = np.random.default_rng(0).random(spec["steps"] + 10)

    def step(i: int) -> None:
        rows = torch.randint(0, data.shape[0], (b,), device=dev, generator=gen)
        x, y = data[rows], labels[rows]
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        if draws[i] < p_on:  # JEM: L_g on SGLD samples from the replay buffer
            slots = torch.randint(0, buffer.shape[0], (b,), device=dev, generator=gen)
            xf = buffer[slots].clone()
            net.eval()
            for p in net.parameters():
                p.requires_grad_(False)
            for _ in range(20):
                xf.requires_grad_(True)
                (g,) = torch.autograd.grad(net(xf).logsumexp(1).sum(), xf)
                xf = (xf + g + 0.01 * torch.randn(xf.shape, device=dev, generator=gen)).detach()
            for p in net.parameters():
                p.requires_grad_(True)
            net.train()
            buffer[slots] = xf
            loss = loss + net(xf).logsumexp(1).mean() - logits.logsumexp(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    net.train()
    for i in range(10):  # warm-up
        step(i)
    _sync(spec["device"])
    t0 = time.perf_counter()
    for i in range(10, spec["steps"] + 10):
        step(i)
    _sync(spec["device"])
    dt = time.perf_counter() - t0
    return {"cells_per_s": spec["steps"] * b / dt, "seconds": dt, "p_on": p_on, **_peak()}


def _forward_all(net, n: int, n_classes: int, device: str, batch: int = 1024):
    """Logits and embeddings of ``n`` cells by a plain forward (one resident input batch)."""
    import torch

    dev = torch.device(device)
    x = torch.randn(batch, N_GENES, device=dev)
    body, head = net[:-1], net[-1]
    logits = np.empty((n, n_classes), dtype=np.float32)
    emb = np.empty((n, head.in_features), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, n, batch):
            m = min(batch, n - start)
            e = body(x[:m])
            logits[start:start + m] = head(e).float().cpu().numpy()
            emb[start:start + m] = e.float().cpu().numpy()
    return logits, emb


def work_floor_annotate(spec: dict) -> dict:
    import anndata as ad
    import pandas as pd
    import torch

    k = spec["n_classes"]
    net = floor_network(N_GENES, k).to(spec["device"]).eval()
    t0 = time.perf_counter()
    adata = ad.read_h5ad(spec["query"])
    t_read = time.perf_counter() - t0
    n = adata.n_obs
    _forward_all(net, min(n, 4096), k, spec["device"])  # warm-up
    _sync(spec["device"])
    t0 = time.perf_counter()
    logits, emb = _forward_all(net, n, k, spec["device"])
    _sync(spec["device"])
    t_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    lab = pd.Categorical(np.asarray([f"c{i}" for i in range(k)], dtype=object)[
        probs.argmax(1)])
    for col, val in (("label", lab), ("label_raw", lab), ("confidence", probs.max(1)),
                     ("log_px", np.log(np.exp(logits).sum(1))), ("ood_pvalue", probs.max(1)),
                     ("is_ood", probs.max(1) < 0.5)):
        adata.obs[f"clams_{col}"] = val
    adata.obsm["clams_probabilities"], adata.obsm["clams_embedding"] = probs, emb
    adata.write_h5ad(spec["output"], compression="gzip")
    t_write = time.perf_counter() - t0
    return {"cells_per_s": n / t_fwd, "forward_seconds": t_fwd, "read_seconds": t_read,
            "write_seconds": t_write, "e2e_cells_per_s": n / (t_read + t_fwd + t_write),
            **_peak()}


WORKERS = {"simulate": work_simulate, "train": work_train, "annotate": work_annotate,
           "e2e": work_e2e, "floor_train": work_floor_train,
           "floor_annotate": work_floor_annotate}


def _worker(task: str, spec_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    result = WORKERS[task](spec)
    Path(spec["result"]).write_text(json.dumps(result))


# ---------------------------------------------------------------------------- driver
def run_worker(task: str, spec: dict, workdir: Path) -> dict:
    """Run one measurement in a fresh Python process; return its JSON record."""
    spec = {**spec, "result": str(workdir / f"{task}.result.json")}
    path = workdir / f"{task}.spec.json"
    path.write_text(json.dumps(spec))
    # this checkout's pyclams first, whatever is installed
    path_ = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]),
           "MKL_NUM_THREADS": str(spec["threads"]), "PYTHONPATH": path_}
    done = subprocess.run([sys.executable, __file__, "--worker", task, str(path)], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{task} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(Path(spec["result"]).read_text())


def devices(choice: str) -> list[str]:
    import torch

    if choice == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [choice]


def measure(args: argparse.Namespace, workdir: Path, log=print, save=None) -> list[dict]:
    """All measurements: one record per (size, device, what); ``save(records)`` is called
    after each size (partial results survive an interrupted run)."""
    records, trained = [], {}
    for n in sorted(args.sizes):
        train_here = args.annotate_only_above is None or n <= args.annotate_only_above
        files = {"reference": str(workdir / f"ref_{n}.h5ad"),
                 "query": str(workdir / f"query_{n}.h5ad")}
        common = {"threads": args.threads, "ood_class": args.ood_class, "seed": args.seed}
        sim = run_worker("simulate", {**common, **files, "profiles": args.profiles,
                                      "n_ref": n if train_here else 0,
                                      "n_query": min(n, args.max_query) if args.max_query
                                      else n}, workdir)
        n_query = min(n, args.max_query) if args.max_query else n
        n_classes = len(sim["classes"]) - 1
        log(f"# simulated {n} cells in {sim['seconds']:.0f} s")
        for dev in devices(args.device):
            base = {**common, **files, "device": dev, "batch_size": args.batch_size,
                    "max_epochs": args.max_epochs, "n_classes": n_classes}
            row = {"size": n, "device": dev, "query_cells": n_query}
            if train_here:
                model = str(workdir / f"model_{n}_{dev}")
                tr = run_worker("train", {**base, "model": model}, workdir)
                trained[dev] = (n, model)
                fl = run_worker("floor_train", {**base, "batch_size": tr["batch_size"],
                                                "steps": args.floor_steps}, workdir)
                records.append({**row, "what": "train", **tr, "floor_cells_per_s":
                                fl["cells_per_s"], "floor_peak_rss_mb": fl["peak_rss_mb"],
                                "floor_peak_gpu_mb": fl.get("peak_gpu_mb")})
                log(f"# {n} {dev} train: {tr['cells_per_s']:.0f} cells/s, floor "
                    f"{fl['cells_per_s']:.0f}")
            if dev not in trained:
                raise SystemExit(f"no size <= --annotate-only-above to train a model for {n}")
            trained_on, model = trained[dev]
            row["trained_on"] = trained_on
            out = str(workdir / f"annotated_{n}_{dev}.h5ad")
            an = run_worker("annotate", {**base, "model": model}, workdir)
            e2e = run_worker("e2e", {**base, "model": model, "output": out}, workdir)
            fl = run_worker("floor_annotate", {**base, "output": out + ".floor.h5ad"}, workdir)
            records.append({**row, "what": "annotate", **an,
                            "floor_cells_per_s": fl["cells_per_s"],
                            "floor_peak_rss_mb": fl["peak_rss_mb"]})
            records.append({**row, "what": "annotate e2e", **e2e,
                            "floor_cells_per_s": fl["e2e_cells_per_s"],
                            "floor_peak_rss_mb": fl["peak_rss_mb"], "floor": fl})
            log(f"# {n} {dev} annotate: {an['cells_per_s']:.0f} cells/s in memory, "
                f"{e2e['cells_per_s']:.0f} end to end")
            for f in (out, out + ".floor.h5ad"):
                Path(f).unlink(missing_ok=True)
        for f in files.values():
            Path(f).unlink(missing_ok=True)
        if save is not None:
            save(records)
    return records


def _fmt(v, spec: str = ".0f") -> str:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def table(records: list[dict]) -> str:
    """The markdown table: one row per (size, device, measurement)."""
    head = ("| cells | device | measurement | cells/s | floor cells/s | x floor | peak RSS MB "
            "(floor) | peak GPU MB | accuracy | OOD AUROC |")
    lines = [head, "|" + "---|" * 10]
    for r in records:
        ratio = r["cells_per_s"] / r["floor_cells_per_s"]
        what = r["what"] + (f" (model of {r['trained_on']})" if r["what"] != "train"
                            and r.get("trained_on") != r["size"] else "")
        extra = (f"{r['epochs']} epochs, batch {r['batch_size']}, val acc "
                 f"{r['val_acc']:.3f}" if r["what"] == "train" else "")
        lines.append(
            f"| {r['size']:,} | {r['device']} | {what} | {_fmt(r['cells_per_s'])} | "
            f"{_fmt(r['floor_cells_per_s'])} | {_fmt(ratio, '.2f')} | "
            f"{_fmt(r['peak_rss_mb'])} ({_fmt(r.get('floor_peak_rss_mb'))}) | "
            f"{_fmt(r.get('peak_gpu_mb'))} | {_fmt(r.get('accuracy'), '.3f') or extra} | "
            f"{_fmt(r.get('auroc'), '.3f')} |")
    return "\n".join(lines)


def machine() -> str:
    import torch

    cpus = len(os.sched_getaffinity(0))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {cpus} usable cores, {gpu}; "
            f"torch {torch.__version__}, python {platform.python_version()}; "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--max-epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None,
                   help="training batch (default: pyclams' default)")
    p.add_argument("--annotate-only-above", type=int, default=None, metavar="N",
                   help="sizes above N are annotated (with the largest trained model) only")
    p.add_argument("--device", default="all", help="all (CPU, and CUDA when present) | cpu | "
                   "cuda")
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads per process")
    p.add_argument("--profiles", choices=["query", "reference"], default="query",
                   help="bundled demo data the NB profiles are fitted to")
    p.add_argument("--ood-class", default="NK", help="type left out of the reference")
    p.add_argument("--max-query", type=int, default=None,
                   help="annotate at most this many cells per size (default: the size)")
    p.add_argument("--floor-steps", type=int, default=200, help="steps of the plain JEM loop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="folder for the simulated files "
                   "(default: a temporary folder)")
    p.add_argument("--json", default=None, help="write the raw records here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def save(records: list[dict]) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args),
                                                   "records": records}, indent=1))

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        records = measure(args, Path(tmp), log=lambda s: print(s, file=sys.stderr, flush=True),
                          save=save)
    print(f"Machine: {machine()}\n")
    print(table(records))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
