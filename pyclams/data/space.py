"""The model's feature space: how cells become the network's input, and back.

Two implementations share one interface:

* :class:`GeneSpace` (the default): log-normalised expression of the reference's highly variable
  genes, standardised with the reference's mean and sd. Works on any query with enough genes.
* :class:`HarmonySpace` (``integrate="harmony"``, the paper's set-up): Harmony-corrected PCs of a
  joint PCA of the reference and one query; it works on that query only.

Each one fits on the reference (:meth:`fit`), maps a query to a :class:`FeatureMatrix`
(:meth:`transform`), maps network inputs back to values a user can read (:meth:`inverse`, for
generated cells) and stores itself in the model directory (:meth:`to_config`, :meth:`tensors`,
:func:`space_from_config`).
"""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..errors import PyClamsInputError
from .checks import get_matrix
from .harmony import harmonize
from .loader import FeatureMatrix, Standardiser
from .preprocess import CLIP, Preprocessor, describe_input

HARMONY_ARRAYS = ("query_pcs", "pc_mean", "pc_sd", "loadings", "center")


class GeneSpace:
    """Standardised log-expression of the model genes (see :class:`Preprocessor`).

    After :meth:`transform`, :attr:`last_input` says what the cells it was given held:
    ``{"kind": "counts"/"log", "log_base": float or None, "log_base_source":
    "detected"/"guessed"/"given" or None}``.
    """

    kind = "genes"

    def __init__(self, preprocessor: Preprocessor):
        self.preprocessor = preprocessor
        self.last_input: dict[str, Any] | None = None

    @classmethod
    def fit(cls, ref: ad.AnnData, *, layer: str | None, is_log: bool | None, n_top_genes: int,
            batch_key: str | None, log_base: str | float | None = None
            ) -> tuple[GeneSpace, FeatureMatrix]:
        """Fit on the (labelled) reference cells; return the space and their features."""
        pre, logx = Preprocessor.fit_transform(ref, layer=layer, is_log=is_log,
                                               n_top_genes=n_top_genes, batch_key=batch_key,
                                               log_base=log_base)
        return cls(pre), FeatureMatrix(logx, Standardiser(pre.mean, pre.sd, pre.clip))

    @property
    def n_features(self) -> int:
        return len(self.preprocessor.genes)

    @property
    def feature_scale(self) -> np.ndarray:
        """Per-feature sd before standardising (the base measure's scale)."""
        return self.preprocessor.sd

    @property
    def var_names(self) -> list[str]:
        return list(self.preprocessor.genes)

    def transform(self, adata: ad.AnnData, *, layer: str | None = None,
                  is_log: bool | None = None, min_gene_overlap: float = 0.5,
                  what: str = "query", log_base: str | float | None = None
                  ) -> tuple[FeatureMatrix, float]:
        """Features of ``adata`` and the share of model genes it has (sets
        :attr:`last_input`)."""
        pre = self.preprocessor
        logx, missing, overlap = pre.log_normalised(adata, layer=layer, is_log=is_log,
                                                    min_gene_overlap=min_gene_overlap,
                                                    what=what, log_base=log_base)
        self.last_input = pre.last_input
        return FeatureMatrix(logx, Standardiser(pre.mean, pre.sd, pre.clip, missing)), overlap

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Log-normalised values (non-negative) of standardised features ``x``."""
        return np.maximum(x * self.preprocessor.sd + self.preprocessor.mean, 0.0)

    def to_config(self) -> dict[str, Any]:
        return self.preprocessor.to_config()

    def integration_config(self) -> None:
        return None

    def tensors(self) -> dict[str, np.ndarray]:
        return self.preprocessor.tensors()


def _pc_standardiser(pc_mean: np.ndarray, pc_sd: np.ndarray):
    def transform(block: np.ndarray) -> np.ndarray:
        return np.clip((block - pc_mean) / pc_sd, -CLIP, CLIP).astype(np.float32)
    return transform


class HarmonySpace(GeneSpace):
    """Harmony-corrected PCs of one joint PCA of reference and query (tied to that query)."""

    kind = "harmony"

    def __init__(self, preprocessor: Preprocessor, harmony: dict[str, Any]):
        super().__init__(preprocessor)
        self.harmony = harmony

    @classmethod
    def fit_joint(cls, gene_space: GeneSpace, ref_features: FeatureMatrix, ref: ad.AnnData,
                  query: ad.AnnData, *, query_layer: str | None, batch_key: str | None,
                  n_pcs: int, seed: int) -> tuple[HarmonySpace, FeatureMatrix]:
        """Correct the joint PCA of ``ref`` (its gene-space features) and ``query``."""
        qfeat, _ = gene_space.transform(query, layer=query_layer, min_gene_overlap=0.5)
        if batch_key is not None and batch_key not in query.obs.columns:
            raise PyClamsInputError(f"batch_key {batch_key!r} is not a column of query.obs")
        res = harmonize(ref_features, qfeat, n_pcs=n_pcs,
                        ref_batches=ref.obs[batch_key] if batch_key else None,
                        query_batches=query.obs[batch_key] if batch_key else None, seed=seed)
        pc_mean = res.ref_pcs.mean(0)
        pc_sd = res.ref_pcs.std(0)
        pc_sd[pc_sd == 0] = 1.0
        harmony = {"n_pcs": int(res.ref_pcs.shape[1]), "batch_key": batch_key,
                   "query_cells": list(map(str, query.obs_names)),
                   "query_pcs": res.query_pcs, "pc_mean": pc_mean, "pc_sd": pc_sd,
                   "loadings": res.loadings, "center": res.center}
        space = cls(gene_space.preprocessor, harmony)
        return space, FeatureMatrix(res.ref_pcs, _pc_standardiser(pc_mean, pc_sd))

    @property
    def n_features(self) -> int:
        return int(self.harmony["n_pcs"])

    @property
    def feature_scale(self) -> np.ndarray:
        return self.harmony["pc_sd"]

    @property
    def var_names(self) -> list[str]:
        return [f"PC{i + 1}" for i in range(self.n_features)]

    def transform(self, adata: ad.AnnData, *, layer: str | None = None,
                  is_log: bool | None = None, min_gene_overlap: float = 0.5,
                  what: str = "query", log_base: str | float | None = None
                  ) -> tuple[FeatureMatrix, float]:
        """The stored corrected PCs of the training query (the only cells this space knows);
        :attr:`last_input` describes ``adata``'s matrix."""
        cells = self.harmony["query_cells"]
        if list(map(str, adata.obs_names)) != cells:
            raise PyClamsInputError(
                f"this model was trained with integrate='harmony' on a query of {len(cells)} "
                "cells and works only on those same cells (same names, same order); retrain "
                "with the new query, or train without integrate= for a reusable model")
        where = f"{what} " + (f"layers[{layer!r}]" if layer else "X")
        self.last_input = describe_input(get_matrix(adata, layer), is_log=is_log,
                                         log_base=log_base, what=where)
        h = self.harmony
        return FeatureMatrix(h["query_pcs"], _pc_standardiser(h["pc_mean"], h["pc_sd"])), 1.0

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Corrected PC values of standardised features ``x``."""
        return x * self.harmony["pc_sd"] + self.harmony["pc_mean"]

    def integration_config(self) -> dict[str, Any]:
        h = self.harmony
        return {"method": "harmony", "n_pcs": h["n_pcs"], "batch_key": h["batch_key"],
                "query_cells": h["query_cells"]}

    def tensors(self) -> dict[str, np.ndarray]:
        t = super().tensors()
        for key in HARMONY_ARRAYS:
            t[f"harmony.{key}"] = np.asarray(self.harmony[key], dtype=np.float32)
        return t


def space_from_config(preprocess: dict, integration: dict | None,
                      tensors: dict[str, np.ndarray]) -> GeneSpace:
    """The feature space stored in a model directory (``config.json`` parts and arrays)."""
    pre = Preprocessor.from_config(preprocess, tensors)
    if not integration:
        return GeneSpace(pre)
    arrays = {k[len("harmony."):]: tensors[k] for k in tensors if k.startswith("harmony.")}
    return HarmonySpace(pre, {**integration, **arrays})


def generated_obs(classes: list[str], ys: np.ndarray) -> pd.DataFrame:
    """``obs`` of generated cells: their starting class, named ``generated_<i>``."""
    return pd.DataFrame({"label": pd.Categorical(np.asarray(classes, dtype=object)[ys],
                                                 categories=classes)},
                        index=[f"generated_{i}" for i in range(len(ys))])
