"""Benchmark figures, built on :mod:`pyclams.pl` from per-cell prediction tables.

A prediction table is the frame of :func:`clams_benchmark.scoring.prediction_table`
(``label``, ``confidence``, ``ood_score``, ``rejected``, ``truth``, ``is_ood``...). Every
function takes ``{method: table}`` for one protocol, draws one panel per method and saves a PNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pyclams import pl

from .scoring import shown_labels

__all__ = ["annotation_heatmaps", "ood_histograms", "reliability_diagrams", "roc_curves",
           "loco_auroc_bars", "generation_umap"]


def _grid(tables: dict[str, pd.DataFrame], draw: Callable, *, title: str, save: str,
          panel: tuple[float, float]) -> None:
    n = len(tables)
    if n == 0:
        return
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel[0] * cols, panel[1] * rows),
                             squeeze=False)
    for ax, (method, table) in zip(axes.ravel(), tables.items(), strict=False):
        draw(table, ax)
        ax.set_title(method)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(save, dpi=100)
    plt.close(fig)


def annotation_heatmaps(tables: dict[str, pd.DataFrame], *, title: str, save: str) -> None:
    """Fig. 3: share of each query label (columns) per predicted label (rows), normalised per
    query label; rejected cells are shown as ``unknown``."""
    def draw(table: pd.DataFrame, ax) -> None:
        obs = pd.DataFrame({"m_label": shown_labels(table), "truth": table["truth"].to_numpy()},
                           index=table.index.astype(str))
        pl.annotation_heatmap(ad.AnnData(obs=obs), truth_key="truth", key_added="m", ax=ax)

    n_truth = max((t["truth"].nunique() for t in tables.values()), default=1)
    size = 1.5 + 0.55 * n_truth
    _grid(tables, draw, title=title, save=save, panel=(size + 1, size))


def ood_histograms(tables: dict[str, pd.DataFrame], *, title: str, save: str) -> None:
    """Fig. 4: histograms of each method's OOD score for ID and OOD query cells."""
    def draw(table: pd.DataFrame, ax) -> None:
        score = table["ood_score"].to_numpy(dtype=float)
        if np.isfinite(score).any():
            pl.ood_histogram(score, table["is_ood"].to_numpy(dtype=bool), label="OOD score",
                             ax=ax)
        else:
            ax.text(0.5, 0.5, "no OOD score", ha="center", va="center")

    _grid(tables, draw, title=title, save=save, panel=(4, 3))


def reliability_diagrams(tables: dict[str, pd.DataFrame], *, title: str, save: str,
                         n_bins: int = 20) -> None:
    """Reliability diagrams of the best class on ID cells (20 bins)."""
    def draw(table: pd.DataFrame, ax) -> None:
        idc = ~table["is_ood"].to_numpy(dtype=bool)
        conf = table["confidence"].to_numpy(dtype=float)[idc]
        best = table["label_raw" if "label_raw" in table.columns else "label"].astype(str)
        correct = (best.to_numpy() == table["truth"].astype(str).to_numpy())[idc]
        if conf.size and np.isfinite(conf).all():
            pl.reliability_diagram(conf, correct, n_bins=n_bins, ax=ax)
        else:
            ax.text(0.5, 0.5, "no probabilities", ha="center", va="center")

    _grid(tables, draw, title=title, save=save, panel=(3.5, 3.5))


def roc_curves(tables: dict[str, pd.DataFrame], *, title: str, save: str) -> None:
    """ROC curves of every method's OOD score (ID = positive) on one axes."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for method, table in tables.items():
        score = table["ood_score"].to_numpy(dtype=float)
        is_id = ~table["is_ood"].to_numpy(dtype=bool)
        if not np.isfinite(score).all() or is_id.all() or not is_id.any():
            continue
        fpr, tpr, _ = roc_curve(is_id, score)
        ax.plot(fpr, tpr, label=f"{method} ({roc_auc_score(is_id, score):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate (OOD called ID)")
    ax.set_ylabel("true positive rate (ID called ID)")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(save, dpi=100)
    plt.close(fig)


def loco_auroc_bars(rows: pd.DataFrame, *, save: str) -> None:
    """L1: per-class AUROC of each method, one panel per dataset."""
    ok = rows[rows["status"] == "ok"]
    datasets = list(dict.fromkeys(ok["dataset"]))
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes.ravel(), datasets, strict=True):
        table = ok[ok["dataset"] == ds].pivot_table(index="held_out", columns="method",
                                                    values="auroc_score", aggfunc="mean")
        table.plot.bar(ax=ax, rot=45)
        ax.set_ylim(0, 1)
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_ylabel("AUROC (held-out class vs ID)")
        ax.set_title(f"L1 {ds}")
    fig.tight_layout()
    fig.savefig(save, dpi=100)
    plt.close(fig)


def generation_umap(cells_by_mode: dict[str, ad.AnnData], *, seed: int, save: str) -> None:
    """Figs. 5/9: UMAP of real and generated cells per buffer mode, coloured by class (left)
    and by real / generated (right)."""
    import scanpy as sc

    fig, axes = plt.subplots(len(cells_by_mode), 2, figsize=(11, 4.5 * len(cells_by_mode)),
                             squeeze=False)
    for (mode, cells), (a, b) in zip(cells_by_mode.items(), axes, strict=True):
        emb = cells.copy()
        n_comps = max(2, min(30, emb.n_vars - 1, emb.n_obs - 1))
        sc.pp.pca(emb, n_comps=n_comps, random_state=seed)
        sc.pp.neighbors(emb, n_neighbors=15, n_pcs=n_comps, random_state=seed)
        sc.tl.umap(emb, random_state=seed)
        xy = emb.obsm["X_umap"]
        gen = emb.obs["kind"].to_numpy() == "generated"
        classes = list(emb.obs["cell_type"].cat.categories)
        colors = plt.get_cmap("tab10")
        for i, c in enumerate(classes):
            m = emb.obs["cell_type"].to_numpy() == c
            a.scatter(xy[m & ~gen, 0], xy[m & ~gen, 1], s=3, color=colors(i % 10), alpha=0.4)
            a.scatter(xy[m & gen, 0], xy[m & gen, 1], s=8, color=colors(i % 10), marker="x",
                      label=c)
        a.set_title(f"{mode} buffer: class (dots real, crosses generated)")
        a.legend(fontsize=7, markerscale=1.5)
        b.scatter(xy[~gen, 0], xy[~gen, 1], s=3, color="tab:grey", alpha=0.4, label="real")
        b.scatter(xy[gen, 0], xy[gen, 1], s=6, color="tab:red", label="generated")
        b.set_title(f"{mode} buffer: real vs generated")
        b.legend(fontsize=7, markerscale=2)
        for ax in (a, b):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(save, dpi=100)
    plt.close(fig)
