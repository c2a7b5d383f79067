"""The annotation of a set of query cells, and the one place where its output schema is written.

:class:`AnnotationResult` holds everything computed for a query (nothing written anywhere). It
writes itself to an AnnData (:meth:`~AnnotationResult.write`, scanpy style: ``obs``, ``obsm``
and ``uns`` fields named ``<key_added>_<field>``), to a DataFrame (:meth:`~AnnotationResult.to_frame`)
and to the plain columns that R receives (:meth:`~AnnotationResult.to_plain`); the R package
adds its ``prefix`` to the same field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .errors import PyClamsInputError
from .metrics import annotation_report

#: the label of cells flagged as a type the reference lacks
UNKNOWN = "unknown"
#: per-cell fields, in order: ``obs`` columns in AnnData, meta data columns in Seurat
RESULT_FIELDS = ("label", "label_raw", "confidence", "log_px", "ood_pvalue", "is_ood")
#: per-cell matrices: ``obsm`` entries in AnnData (the embedding is a reduction in Seurat)
MATRIX_FIELDS = ("probabilities", "embedding")
#: what each field holds (the README and the R documentation say the same)
FIELD_DOCS = {
    "label": "categorical type; 'unknown' for cells flagged OOD",
    "label_raw": "type before the unknown call: the cell's own argmax of p(y|x), or the "
                 "consensus of its query neighbourhood (argmax of p(y|x) averaged over it) "
                 "where label_mode allows (see uns[key]['label_mode_used'])",
    "confidence": "temperature-scaled max p(y|x) of a cell labelled alone; for a cell "
                  "labelled by its neighbourhood, the share of the neighbourhood called the "
                  "same type; for a cell that keeps its own type where the query's graph does "
                  "not back it (a type that absorbs another, uns[key]['graph_absorbing'], or "
                  "a cell between two types), its type's p(y|x) averaged over its "
                  "neighbourhood",
    "log_px": "the cell's own log p(x) up to a constant (higher = more typical)",
    "ood_pvalue": "p-value of the OOD test (default: log p(x) averaged over the cell's "
                  "neighbourhood, aligned per predicted type to the query's bulk, against "
                  "held-out reference cells)",
    "is_ood": "flagged as a type the reference lacks (Benjamini-Hochberg at ood_fdr)",
    "probabilities": "the cell's own p(y|x), columns in the order of uns[key]['classes']",
    "embedding": "penultimate-layer embedding of the network",
}


def result_columns(key_added: str) -> list[str]:
    """The ``obs`` columns written with ``key_added`` (``<key_added>_label``, ...)."""
    return [f"{key_added}_{f}" for f in RESULT_FIELDS]


def check_key_added(key_added: Any) -> str:
    """``key_added`` if it is a usable name (a non-empty string without ``/``)."""
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        raise PyClamsInputError(f"key_added must be a non-empty string without '/', not "
                                f"{key_added!r}")
    return key_added


@dataclass
class AnnotationResult:
    """Labels, calibrated confidences, log p(x) and OOD calls of a set of query cells.

    Attributes
    ----------
    obs_names
        The query's cell names.
    classes
        Reference classes (the columns of ``probabilities``).
    label, label_raw, confidence, log_px, ood_pvalue, is_ood
        One value per cell; see :data:`FIELD_DOCS`.
    probabilities, embedding
        Cells x classes and cells x d arrays.
    info
        The run's provenance: model id, pyclams version, preset, gene overlap, parameters.
    """

    obs_names: pd.Index
    classes: list[str]
    label: np.ndarray
    label_raw: np.ndarray
    confidence: np.ndarray
    log_px: np.ndarray
    ood_pvalue: np.ndarray
    is_ood: np.ndarray
    probabilities: np.ndarray
    embedding: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return len(self.obs_names)

    @property
    def n_ood(self) -> int:
        return int(np.asarray(self.is_ood).sum())

    def _columns(self) -> dict[str, Any]:
        """The per-cell fields with their final types (labels as categoricals)."""
        return {
            "label": pd.Categorical(self.label, categories=[*self.classes, UNKNOWN]),
            "label_raw": pd.Categorical(self.label_raw, categories=self.classes),
            "confidence": np.asarray(self.confidence, dtype=np.float32),
            "log_px": np.asarray(self.log_px, dtype=np.float32),
            "ood_pvalue": np.asarray(self.ood_pvalue, dtype=np.float32),
            "is_ood": np.asarray(self.is_ood, dtype=bool),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per cell: the :data:`RESULT_FIELDS` and one ``p_<class>`` column per class."""
        df = pd.DataFrame(self._columns(), index=self.obs_names)
        probs = pd.DataFrame(self.probabilities, index=self.obs_names,
                             columns=[f"p_{c}" for c in self.classes])
        return pd.concat([df, probs], axis=1)

    def to_plain(self) -> dict[str, Any]:
        """Plain columns for R (reticulate): strings as lists, numbers as float64 arrays.

        Keys: the :data:`RESULT_FIELDS`, ``cells``, ``classes``, ``probabilities`` and
        ``embedding`` (float64, C order), and ``info``.
        """
        return {
            "label": [str(v) for v in self.label],
            "label_raw": [str(v) for v in self.label_raw],
            "confidence": np.asarray(self.confidence, dtype=np.float64),
            "log_px": np.asarray(self.log_px, dtype=np.float64),
            "ood_pvalue": np.asarray(self.ood_pvalue, dtype=np.float64),
            "is_ood": np.asarray(self.is_ood, dtype=bool),
            "cells": [str(c) for c in self.obs_names],
            "classes": list(self.classes),
            "probabilities": np.ascontiguousarray(self.probabilities, dtype=np.float64),
            "embedding": np.ascontiguousarray(self.embedding, dtype=np.float64),
            "info": dict(self.info),
        }

    def uns_entry(self) -> dict[str, Any]:
        """What goes into ``uns[key_added]``: the classes and :attr:`info`."""
        return {**self.info, "classes": list(self.classes)}

    def write(self, adata: ad.AnnData, *, key_added: str = "clams",
              overwrite: bool = True) -> None:
        """Write the result into ``adata`` (all fields or, on an error, none).

        ``obs[<k>_<field>]`` for each of :data:`RESULT_FIELDS`, ``obsm[<k>_probabilities]``,
        ``obsm[<k>_embedding]`` and ``uns[<k>]``. With ``overwrite=False`` existing fields of
        those names are an error.
        """
        k = check_key_added(key_added)
        if adata.n_obs != self.n_cells or not adata.obs_names.equals(self.obs_names):
            raise PyClamsInputError("this result was computed for other cells than adata's")
        if not overwrite:
            clash = [c for c in result_columns(k) if c in adata.obs.columns]
            clash += [f"obsm[{k}_{f}]" for f in MATRIX_FIELDS if f"{k}_{f}" in adata.obsm]
            clash += [f"uns[{k}]"] if k in adata.uns else []
            if clash:
                more = f" and {len(clash) - 2} more" if len(clash) > 2 else ""
                raise PyClamsInputError(f"adata already has {', '.join(clash[:2])}{more}; pass "
                                        "overwrite=True (CLI: --overwrite) or another "
                                        "key_added")
        for name, values in self._columns().items():
            adata.obs[f"{k}_{name}"] = values
        adata.obsm[f"{k}_probabilities"] = np.asarray(self.probabilities, dtype=np.float32)
        adata.obsm[f"{k}_embedding"] = np.asarray(self.embedding, dtype=np.float32)
        adata.uns[k] = self.uns_entry()


def evaluate_annotated(adata: ad.AnnData, *, truth_key: str, key_added: str = "clams",
                       ood_classes: list[str] | None = None) -> dict:
    """Metrics of an AnnData annotated by pyclams (``key_added``) against ``obs[truth_key]``.

    ID cells are those whose true type is a model class (or, with ``ood_classes``, all cells
    whose type is not listed there). Adds ``accuracy_with_rejection`` (ID cells whose final
    label, "unknown" included, is right) to :func:`annotation_report`'s keys.
    """
    if truth_key not in adata.obs.columns:
        raise PyClamsInputError(f"truth_key {truth_key!r} is not a column of obs")
    need = result_columns(key_added)
    missing = [c for c in need if c not in adata.obs.columns]
    if missing or key_added not in adata.uns:
        raise PyClamsInputError(f"no pyclams annotation with key {key_added!r} (missing "
                                f"{missing or ['uns']}); run `pyclams annotate` first")
    truth = adata.obs[truth_key].astype(str).to_numpy()
    classes = list(adata.uns[key_added]["classes"])
    absent = sorted(set(ood_classes or []) - set(truth))
    if absent:
        raise PyClamsInputError(f"OOD class(es) {absent} do not occur in obs[{truth_key!r}]; "
                                f"its types are {sorted(set(truth))[:20]}")
    known = classes if not ood_classes else sorted(set(truth) - set(ood_classes))
    obs = adata.obs
    report = annotation_report(
        truth, obs[f"{key_added}_label_raw"].astype(str).to_numpy(),
        obs[f"{key_added}_confidence"].to_numpy(), known_labels=known,
        ood_scores={"log_px": obs[f"{key_added}_log_px"].to_numpy(),
                    "max_p": obs[f"{key_added}_confidence"].to_numpy(),
                    "ood_pvalue": obs[f"{key_added}_ood_pvalue"].to_numpy()},
        rejected=obs[f"{key_added}_is_ood"].to_numpy(dtype=bool))
    is_id = np.isin(truth, known)
    lab = obs[f"{key_added}_label"].astype(str).to_numpy()
    report["accuracy_with_rejection"] = float(np.mean(lab[is_id] == truth[is_id]))
    return report
