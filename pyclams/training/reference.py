"""A labelled reference made ready for training: feature space, classes and the split."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from .._settings import seed_everything
from ..data.checks import check_labels
from ..data.loader import FeatureMatrix
from ..data.space import GeneSpace, HarmonySpace
from .split import stratified_split


@dataclass
class Reference:
    """The labelled reference cells in the model's feature space, split 8:1:1."""

    space: GeneSpace
    features: FeatureMatrix
    classes: list[str]
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray

    @property
    def class_counts(self) -> dict[str, int]:
        return {c: int(n) for c, n in zip(self.classes, np.bincount(self.y,
                                                                    minlength=len(self.classes)),
                                          strict=True)}

    def base_batches(self):
        """``(features, labels)`` blocks of the training cells (fits the base measure)."""
        for rows, x in self.features.batches(4096, subset=self.train_idx):
            yield x.numpy(), self.y[rows]


def prepare_reference(adata: ad.AnnData, *, labels_key: str, layer: str | None,
                      is_log: bool | None, n_top_genes: int, batch_key: str | None,
                      integrate: str | None, query: ad.AnnData | None, query_layer: str | None,
                      n_pcs: int, val_fraction: float, test_fraction: float,
                      seed: int, log_base: str | float | None = None) -> Reference:
    """Fit the feature space on the labelled cells, seed everything, encode and split them.

    Unlabelled cells are left out. Classes are sorted names. With ``integrate="harmony"`` the
    features are the corrected PCs of a joint PCA with ``query``. ``log_base`` sets the base of
    a log-normalised reference instead of detecting it.
    """
    labels = check_labels(adata, labels_key)
    labelled = labels.notna().to_numpy()
    ref = adata[labelled] if not labelled.all() else adata
    space, features = GeneSpace.fit(ref, layer=layer, is_log=is_log, n_top_genes=n_top_genes,
                                    batch_key=batch_key, log_base=log_base)
    seed_everything(seed)
    if integrate == "harmony":
        space, features = HarmonySpace.fit_joint(space, features, ref, query,
                                                 query_layer=query_layer, batch_key=batch_key,
                                                 n_pcs=n_pcs, seed=seed)
    y_str = labels[labelled].to_numpy().astype(str)
    classes = sorted(pd.unique(y_str).tolist())
    y = pd.Categorical(y_str, categories=classes).codes.astype(np.int64)
    train_idx, val_idx, test_idx = stratified_split(
        y, val_fraction=val_fraction, test_fraction=test_fraction,
        rng=np.random.default_rng(seed))
    return Reference(space, features, classes, y, train_idx, val_idx, test_idx)
