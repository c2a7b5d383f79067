"""Write a benchmark's results folder: tidy CSV, Markdown tables in the paper's layout, figures.

``<out>/results.csv``
    One row per experiment x method x protocol x seed (L1: x held-out class), with ``status``
    and ``reason`` for runs that failed or whose method is not installed.
``<out>/README.md``
    Mean ± sd over seeds per method x protocol (Table 2), L1 AUROC mean ± sd over classes
    (Table 3), the ablation grid with divergence rates (Tables 5/6), the generation metrics, the
    methods that could not run with the precise reason, and the run's settings.
``<out>/figures/``
    Per protocol: annotation heatmaps (Fig. 3), OOD score histograms (Fig. 4), reliability
    diagrams and ROC curves, from the first seed of each method; L1 per-class AUROC bars; the
    generation UMAP (written by the generation experiment).
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures
from .cache import RunCache, RunKey

logger = logging.getLogger("pyclams")

__all__ = ["COLUMNS", "mean_sd", "annotation_tables", "loco_tables", "ablation_table",
           "failures", "markdown", "write_figures", "write_report"]

#: leading columns of results.csv
COLUMNS = ["experiment", "protocol", "dataset", "held_out", "method", "family", "seed",
           "status", "reason", "wall_s", "cpu_s", "epochs", "n_id", "n_ood", "accuracy", "macro_f1",
           "ece", "auroc_score", "auroc_max_p", "ood_rejected", "id_rejected", "acc_w_rej",
           "diverged", "best_epoch", "n_epochs", "cached"]

_METRIC_TITLES = {
    "accuracy": "Accuracy (best class, ID query cells)",
    "macro_f1": "Macro-F1 (ID query cells)",
    "ece": "ECE (20 equal-width bins, ID query cells)",
    "auroc_score": "AUROC of the method's OOD score (ID = positive)",
    "auroc_max_p": "AUROC of max p(y|x) (ID = positive)",
    "ood_rejected": "Share of OOD cells rejected by the method",
    "id_rejected": "Share of ID cells rejected by the method",
    "acc_w_rej": "Accuracy with rejection (a rejected ID cell counts as wrong)",
    "wall_s": "Wall time of fit + predict (s)",
}
_FAMILY_ORDER = {"classifier": 0, "bio tool": 1, "ebm": 2}
_SHORT_STATUS = {"failed": "failed", "not installed": "n/i"}


def mean_sd(values: Sequence[float], *, digits: int = 3) -> str:
    """``"m ± sd"`` over finite values (``"m"`` for one value, ``"–"`` for none)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _method_order(df: pd.DataFrame) -> list[str]:
    first = df.drop_duplicates("method")
    key = {m: (_FAMILY_ORDER.get(f, 3), i) for i, (m, f) in
           enumerate(zip(first["method"], first["family"].fillna(""), strict=True))}
    return sorted(key, key=key.get)


def _cell(group: pd.DataFrame, metric: str) -> str:
    ok = group[group["status"] == "ok"]
    if ok.empty:
        status = group["status"].iloc[0] if len(group) else "not run"
        return _SHORT_STATUS.get(status, status)
    digits = 1 if metric == "wall_s" else 3
    text = mean_sd(ok[metric].tolist() if metric in ok else [], digits=digits)
    if len(ok) < len(group):
        text += f" ({len(ok)}/{len(group)} ran)"
    return text


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _diverged(group: pd.DataFrame) -> str:
    ok = group[group["status"] == "ok"]
    if ok.empty or "diverged" not in ok or ok["diverged"].isna().all():
        return "–"
    d = ok["diverged"].fillna(False).astype(bool)
    return f"{int(d.sum())}/{len(d)}"


def _reports_divergence(group: pd.DataFrame) -> bool:
    return "diverged" in group and group.loc[group["status"] == "ok", "diverged"].notna().any()


def annotation_tables(df: pd.DataFrame, *, metrics: Sequence[str] = tuple(_METRIC_TITLES)
                      ) -> str:
    """Table 2: one Markdown table per metric, methods x protocols, mean ± sd over seeds."""
    if df.empty:
        return "_not run_"
    protocols = list(dict.fromkeys(df["protocol"]))
    methods = _method_order(df)
    parts = []
    for metric in metrics:
        rows = []
        for m in methods:
            sub = df[df["method"] == m]
            seeds = sub.groupby("protocol")["seed"].nunique().max()
            rows.append([m, str(sub["family"].iloc[0]), str(seeds)]
                        + [_cell(sub[sub["protocol"] == p], metric) for p in protocols])
        parts.append(f"### {_METRIC_TITLES[metric]}\n\n"
                     + _table(["method", "family", "seeds", *protocols], rows))
    div_rows = [[m, *[_diverged(df[(df["method"] == m) & (df["protocol"] == p)])
                      for p in protocols]]
                for m in methods if _reports_divergence(df[df["method"] == m])]
    if div_rows:
        parts.append("### Diverged runs (diverged / runs)\n\n"
                     + _table(["method", *protocols], div_rows))
    return "\n\n".join(parts)


def loco_tables(df: pd.DataFrame) -> str:
    """Table 3: AUROC mean ± sd over held-out classes per dataset x method, then per class."""
    if df.empty:
        return "_not run_"
    ok = df[df["status"] == "ok"]
    datasets = list(dict.fromkeys(df["dataset"]))
    methods = _method_order(df)
    rows = []
    for m in methods:
        row = [m]
        for ds in datasets:
            sub = df[(df["method"] == m) & (df["dataset"] == ds)]
            good = ok[(ok["method"] == m) & (ok["dataset"] == ds)]
            if good.empty:
                row += [_SHORT_STATUS.get(sub["status"].iloc[0], "–") if len(sub) else "–"] * 2
                continue
            per_class_score = good.groupby("held_out")["auroc_score"].mean()
            per_class_maxp = good.groupby("held_out")["auroc_max_p"].mean()
            row += [mean_sd(per_class_score.tolist()), mean_sd(per_class_maxp.tolist())]
        rows.append(row)
    header = ["method"] + [f"{ds} {what}" for ds in datasets
                           for what in ("AUROC score", "AUROC max p")]
    out = ["Mean ± sd over held-out classes (each class's AUROC averaged over seeds).",
           _table(header, rows)]
    for ds in datasets:
        sub = ok[ok["dataset"] == ds]
        if sub.empty:
            continue
        piv = sub.pivot_table(index="held_out", columns="method", values="auroc_score",
                              aggfunc="mean")
        cols = [m for m in methods if m in piv.columns]
        prow = [[str(c), *[f"{piv.loc[c, m]:.3f}" if np.isfinite(piv.loc[c, m]) else "–"
                           for m in cols]] for c in piv.index]
        out.append(f"Per held-out class, {ds} (AUROC of the OOD score):\n\n"
                   + _table(["held out", *cols], prow))
    return "\n\n".join(out)


def ablation_table(df: pd.DataFrame) -> str:
    """Tables 5/6: variants x protocols with accuracy, ECE, AUROC and divergence rate."""
    if df.empty:
        return "_not run_"
    protocols = list(dict.fromkeys(df["protocol"]))
    rows = []
    for m in dict.fromkeys(df["method"]):
        sub = df[df["method"] == m]
        first = sub.iloc[0]
        row = [str(first.get("clip", "")), f"{first.get('p_on', '')}",
               str(first.get("threshold", ""))]
        for p in protocols:
            g = sub[sub["protocol"] == p]
            row += [_cell(g, "accuracy"), _cell(g, "ece"), _cell(g, "auroc_score"),
                    _diverged(g)]
        rows.append(row)
    header = ["clip", "p_on", "threshold"] + [f"{p} {w}" for p in protocols
                                              for w in ("accuracy", "ECE", "AUROC", "diverged")]
    return _table(header, rows)


def generation_table(df: pd.DataFrame) -> str:
    """Generation: agreement and log p(x) of generated vs real cells per buffer mode."""
    if df.empty:
        return "_not run_"
    rows = []
    for _, r in df.iterrows():
        if r["status"] != "ok":
            rows.append([str(r["buffer"]), r["status"], r.get("reason", "")] + [""] * 5)
            continue
        rows.append([str(r["buffer"]), "ok", "", f"{r['agreement']:.3f}",
                     f"{r['agreement_min_class']:.3f} ({r['worst_class']})",
                     f"{r['log_px_generated']:.2f}", f"{r['log_px_real']:.2f}",
                     str(bool(r.get("diverged", False)))])
    return _table(["buffer", "status", "reason", "agreement", "worst class", "log p(x) gen",
                   "log p(x) real", "diverged"], rows)


def failures(df: pd.DataFrame) -> str:
    """Every method that did not run, with its precise reason and where."""
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return "Every run finished."
    lines = []
    for (exp, method, status, reason), g in bad.groupby(
            ["experiment", "method", "status", "reason"], sort=False, dropna=False):
        where = sorted({str(p) for p in g["protocol"]})
        lines.append(f"- **{method}** ({exp}, {status}; {', '.join(where)}, {len(g)} run(s)): "
                     f"{str(reason).strip() or 'no reason given'}")
    return "\n".join(lines)


def _versions() -> str:
    import importlib.metadata as md
    parts = []
    for pkg in ("pyclams", "torch", "numpy", "scanpy", "anndata", "scikit-learn", "scvi-tools",
                "celltypist"):
        try:
            parts.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    import os
    return (", ".join(parts) + f"; Python {platform.python_version()}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")


def markdown(results: pd.DataFrame, *, title: str, command: str = "",
             notes: Sequence[str] = (), elapsed_s: float | None = None) -> str:
    """The README of a results folder."""
    by = {e: results[results["experiment"] == e] for e in
          ("annotation", "loco", "ablation", "generation")}
    parts = [f"# {title}", ""]
    if command:
        parts += ["Command:", "", "```bash", command, "```", ""]
    parts += [f"Versions: {_versions()}."]
    if elapsed_s is not None:
        n_cached = int(results.get("cached", pd.Series(dtype=bool)).fillna(False).sum())
        parts += [f"Wall time of this invocation: {elapsed_s / 60:.1f} min ({len(results)} runs, "
                  f"{n_cached} taken from the cache)."]
    parts += [""] + [f"- {n}" for n in notes] + [""]
    parts += ["Metrics (clams_benchmark.scoring): accuracy, macro-F1 and ECE use the best "
              "class on query cells whose type the reference knows (ID); AUROCs tell ID "
              "(positive) from OOD cells; energy-based models score with log p(x); "
              "`n/i` = not installed; `–` = not available (e.g. no probabilities). "
              "Cells are mean ± sd over seeds (sample sd).", ""]
    parts += ["## Table 2: reference -> query annotation", "", annotation_tables(by["annotation"]),
              "", "## Table 3: leave-one-class-out OOD detection (L1)", "",
              loco_tables(by["loco"]), "",
              "## Tables 5/6: ablation of the regularised generative loss", "",
              ablation_table(by["ablation"]), "",
              "## Generation with a proportional or a balanced replay buffer (Figs. 5/9)", "",
              generation_table(by["generation"]), "",
              "## Methods and runs that did not run", "", failures(results), ""]
    return "\n".join(parts)


def write_figures(results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Annotation figures per protocol (first ok seed of each method) and the L1 bars."""
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    cache = RunCache(out / "cache")
    written = []
    ann = results[(results["experiment"] == "annotation") & (results["status"] == "ok")]
    for proto in dict.fromkeys(ann["protocol"]):
        tables = {}
        sub = ann[ann["protocol"] == proto]
        for m in _method_order(sub):
            seed = int(sub.loc[sub["method"] == m, "seed"].min())
            table = cache.predictions(RunKey("annotation", proto, m, seed))
            if table is not None:
                tables[m] = table
        if not tables:
            continue
        for name, func, what in (
                ("heatmap", figures.annotation_heatmaps, "annotation per query label (Fig. 3)"),
                ("ood_hist", figures.ood_histograms, "OOD score of ID and OOD cells (Fig. 4)"),
                ("reliability", figures.reliability_diagrams, "reliability, ID cells"),
                ("roc", figures.roc_curves, "ROC of the OOD score (AUROC)")):
            path = fig_dir / f"{name}_{proto}.png"
            try:
                func(tables, title=f"{proto}: {what}, first seed",
                     save=str(path))
                written.append(path)
            except Exception as exc:  # a figure must never lose the tables
                logger.warning("figure %s failed: %s: %s", path.name, type(exc).__name__, exc)
    loco = results[results["experiment"] == "loco"]
    if not loco.empty and (loco["status"] == "ok").any():
        path = fig_dir / "loco_auroc.png"
        figures.loco_auroc_bars(loco, save=str(path))
        written.append(path)
    written += sorted(fig_dir.glob("generation_umap_*.png"))
    return written


def write_report(results: pd.DataFrame, out_dir: str | Path, *, title: str,
                 command: str = "", notes: Sequence[str] = (), elapsed_s: float | None = None,
                 with_figures: bool = True) -> Path:
    """Write ``results.csv``, the figures and ``README.md`` under ``out_dir``.

    Returns
    -------
    pathlib.Path
        The Markdown file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = [c for c in COLUMNS if c in results.columns]
    tidy = results[cols + [c for c in results.columns if c not in cols]].copy()
    for c in ("seed", "epochs", "n_id", "n_ood", "best_epoch", "n_epochs", "divergence_epoch"):
        if c in tidy:
            tidy[c] = pd.to_numeric(tidy[c], errors="coerce").round().astype("Int64")
    tidy.to_csv(out / "results.csv", index=False)
    figs = write_figures(results, out) if with_figures else []
    text = markdown(results, title=title, command=command, notes=notes, elapsed_s=elapsed_s)
    if figs:
        text += "\n## Figures\n\n" + "\n".join(f"- [{p.name}](figures/{p.name})"
                                                for p in figs) + "\n"
    md = out / "README.md"
    md.write_text(text)
    return md
