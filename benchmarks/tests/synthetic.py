"""Small synthetic data and fast training settings for the benchmark's tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

#: short training runs (epochs, steps) and a small SGLD buffer
FAST = {"max_epochs": 8, "min_epochs": 2, "patience": 5, "min_steps_per_epoch": 10}
FAST_SGLD = {"buffer_size": 500, "n_steps": 5}


def make_counts(n_per_class: int = 60, *, n_classes: int = 3, n_genes: int = 120,
                seed: int = 0, prefix: str = "cell") -> ad.AnnData:
    """Poisson counts where class ``k`` (``type{k}``) over-expresses its own block of 10
    marker genes; the gene profiles are the same for every call, ``seed`` draws the cells."""
    base = np.random.default_rng(1234).gamma(2.0, 1.0, size=n_genes)
    rng = np.random.default_rng(seed)
    blocks, labels = [], []
    for k in range(n_classes):
        mu = base.copy()
        mu[10 * k:10 * (k + 1)] *= 8.0
        blocks.append(rng.poisson(mu * rng.uniform(0.7, 1.3, size=(n_per_class, 1))))
        labels += [f"type{k}"] * n_per_class
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)},
                       index=[f"{prefix}{i}" for i in range(len(labels))])
    return ad.AnnData(X=sp.csr_matrix(np.vstack(blocks).astype(np.float32)), obs=obs,
                      var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)]))


class TwoWells(nn.Module):
    """A fixed energy: logits ``-||x - mu_k||^2``, LSE high near (2, 2) and (-2, -2)."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor([[2.0, 2.0], [-2.0, -2.0]]))

    def forward(self, x):
        return -((x[:, None, :] - self.mu[None]) ** 2).sum(-1)
