"""Shared fixtures: small synthetic count data with known classes (for unit tests only)."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from torch import nn

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(autouse=True)
def _propagate_pyclams_logs():
    """Let caplog see pyclams' log records."""
    logger = logging.getLogger("pyclams")
    logger.propagate = True
    yield
    logger.propagate = False


def make_counts(n_per_class: int = 60, *, n_classes: int = 3, n_genes: int = 120,
                seed: int = 0, class_names: list[str] | None = None,
                marker_genes: int = 10, prefix: str = "cell") -> ad.AnnData:
    """Poisson counts where class k over-expresses its own block of marker genes.

    The gene profiles are the same for every call (same "biology"); ``seed`` draws the cells.
    """
    base = np.random.default_rng(1234).gamma(2.0, 1.0, size=n_genes)
    rng = np.random.default_rng(seed)
    names = class_names or [f"type{k}" for k in range(n_classes)]
    xs, labels = [], []
    for k, name in enumerate(names):
        mu = base.copy()
        mu[k * marker_genes:(k + 1) * marker_genes] *= 8.0
        lib = rng.uniform(0.7, 1.3, size=(n_per_class, 1))
        xs.append(rng.poisson(mu * lib))
        labels += [name] * n_per_class
    x = sp.csr_matrix(np.vstack(xs).astype(np.float32))
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)},
                       index=[f"{prefix}{i}" for i in range(x.shape[0])])
    var = pd.DataFrame(index=[f"G{j}" for j in range(n_genes)])
    return ad.AnnData(X=x, obs=obs, var=var)


@pytest.fixture
def ref() -> ad.AnnData:
    return make_counts(60, n_classes=3, seed=0)


@pytest.fixture
def query() -> ad.AnnData:
    """Known types 0-2 plus an unseen type3 (its own marker block)."""
    q = make_counts(40, n_classes=4, seed=1, prefix="q")
    return q


FAST = {"max_epochs": 8, "min_epochs": 2, "patience": 5, "min_steps_per_epoch": 10}
FAST_SGLD = {"buffer_size": 500, "n_steps": 5}


@pytest.fixture(scope="session")
def trained_model():
    """A small CLAMS model trained once per session on synthetic data."""
    from pyclams import CLAMS
    model = CLAMS(n_top_genes=100, train=FAST, sgld=FAST_SGLD,
                  network={"widths": (64, 32), "blocks_per_stage": 1})
    return model.fit(make_counts(60, n_classes=3, seed=0), labels_key="cell_type", seed=0,
                     verbose=False, device="cpu")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows (pyclams.data.blocks), so that a query is read in many blocks."""
    import pyclams.data.blocks as blocks
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 700)


@pytest.fixture
def block_rows(monkeypatch) -> list[int]:
    """The row counts of the blocks pyclams.data.blocks brings into memory, in order."""
    import pyclams.data.blocks as blocks
    rows: list[int] = []
    real = blocks._as_block

    def spy(block):
        out = real(block)
        rows.append(out.shape[0])
        return out
    monkeypatch.setattr(blocks, "_as_block", spy)
    return rows


def snapshot(adata: ad.AnnData) -> dict:
    """Everything a failed call must leave untouched."""
    x = adata.X.toarray() if sp.issparse(adata.X) else np.array(adata.X)
    return {"X": x, "obs": adata.obs.copy(), "var": adata.var.copy(),
            "obsm": set(adata.obsm.keys()), "uns": set(adata.uns.keys()),
            "layers": set(adata.layers.keys())}


def assert_unchanged(adata: ad.AnnData, snap: dict) -> None:
    x = adata.X.toarray() if sp.issparse(adata.X) else np.array(adata.X)
    np.testing.assert_array_equal(np.nan_to_num(x, nan=-7), np.nan_to_num(snap["X"], nan=-7))
    pd.testing.assert_frame_equal(adata.obs, snap["obs"])
    pd.testing.assert_frame_equal(adata.var, snap["var"])
    assert set(adata.obsm.keys()) == snap["obsm"]
    assert set(adata.uns.keys()) == snap["uns"]
    assert set(adata.layers.keys()) == snap["layers"]


class TwoWells(nn.Module):
    """A fixed energy for sampler tests: logits -||x - mu_k||^2, so LSE is high near (2, 2)
    and (-2, -2)."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor([[2.0, 2.0], [-2.0, -2.0]]))

    def forward(self, x):
        return -((x[:, None, :] - self.mu[None]) ** 2).sum(-1)
