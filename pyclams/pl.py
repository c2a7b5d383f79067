"""Plots: annotation heatmap (paper Fig. 3), OOD score histograms (Fig. 4), reliability
diagram and training curves. Each returns its matplotlib Axes and saves on request."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .metrics import reliability


def _finish(ax, save: str | None):
    if save:
        ax.figure.tight_layout()
        ax.figure.savefig(save, dpi=120)
    return ax


def annotation_heatmap(adata, *, truth_key: str, key_added: str = "clams",
                       ax=None, save: str | None = None):
    """Share of each query label (columns) given each predicted label (rows), normalised per
    query label, as in the paper's Fig. 3. "unknown" is the OOD row."""
    pred = adata.obs[f"{key_added}_label"].astype(str)
    truth = adata.obs[truth_key].astype(str)
    table = pd.crosstab(pred, truth, normalize="columns")
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.6 * table.shape[1], 1 + 0.45 * table.shape[0]))
    im = ax.imshow(table.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=60, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel(f"query label ({truth_key})")
    ax.set_ylabel("predicted")
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        if v >= 0.01:
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.04)
    return _finish(ax, save)


def ood_histogram(scores: Sequence[float], is_ood: Sequence[bool], *, label: str = "log p(x)",
                  bins: int = 50, ax=None, save: str | None = None):
    """Histograms of an OOD score for ID (green) and OOD (red) cells (paper Fig. 4)."""
    s, o = np.asarray(scores, dtype=float), np.asarray(is_ood, dtype=bool)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    edges = np.histogram_bin_edges(s[np.isfinite(s)], bins=bins)
    ax.hist(s[~o], bins=edges, alpha=0.6, color="tab:green", label="in-distribution",
            density=True)
    if o.any():
        ax.hist(s[o], bins=edges, alpha=0.6, color="tab:red", label="OOD", density=True)
    ax.set_xlabel(label)
    ax.set_ylabel("density")
    ax.legend()
    return _finish(ax, save)


def reliability_diagram(confidence: Sequence[float], correct: Sequence[bool], *,
                        n_bins: int = 20, ax=None, save: str | None = None):
    """Accuracy against confidence per bin with the diagonal of perfect calibration."""
    table = reliability(confidence, correct, n_bins=n_bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    width = 1.0 / n_bins
    used = table["count"] > 0
    ax.bar(table.loc[used, "lower"], table.loc[used, "accuracy"], width=width, align="edge",
           edgecolor="black", color="tab:blue", label="accuracy")
    ax.plot([0, 1], [0, 1], "r--", label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left")
    return _finish(ax, save)


def training_curves(history: pd.DataFrame, *, ax=None, save: str | None = None):
    """Cross-entropy, validation accuracy, L_g and mean energies per epoch."""
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    a, b = np.atleast_1d(ax)[:2]
    for col in ("train_ce", "val_nll", "val_acc"):
        if col in history:
            a.plot(history["epoch"], history[col], label=col)
    a.set_xlabel("epoch")
    a.legend()
    for col in ("gen_loss", "lse_real", "lse_fake"):
        if col in history and history[col].notna().any():
            b.plot(history["epoch"], history[col], label=col)
    b.set_xlabel("epoch")
    b.set_title("generative loss and energies")
    b.legend()
    return _finish(a, save)
