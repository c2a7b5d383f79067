"""Baseline annotation methods of the benchmark, one module per method family.

Importing this package registers every baseline in :mod:`clams_benchmark.registry`; the
method's own dependencies are imported only when it runs.

========== ============ ==================================================================
name       family       what
========== ============ ==================================================================
svm_reject classifier   calibrated linear SVM, rejects max probability < 0.7
celltypist bio tool     CellTypist logistic regression, prob match (p_thres 0.5)
knn_ingest bio tool     scanpy ingest kNN transfer, kNN-distance OOD score
scanvi     bio tool     scvi-tools scVI + scANVI with scArches query mapping (raw counts)
seurat     bio tool     Seurat v4 FindTransferAnchors + TransferData (rpy2)
singler    bio tool     SingleR with Wilcoxon markers (rpy2)
scpred     bio tool     scPred SVM on reference PCs (rpy2; GitHub-only package)
========== ============ ==================================================================

Every ``fit_predict(ref, query, *, labels_key, seed=0, **options)`` returns the frame described
in :mod:`clams_benchmark.baselines._common`.
"""

from __future__ import annotations

from . import celltypist, knn, scanvi, scpred, seurat, singler, svm
from ._common import COLUMNS, UNKNOWN, is_raw_counts, log_normalized, prediction_frame

__all__ = ["COLUMNS", "UNKNOWN", "is_raw_counts", "log_normalized", "prediction_frame",
           "celltypist", "knn", "scanvi", "scpred", "seurat", "singler", "svm"]
