"""scANVI (scvi-tools): semi-supervised VAE label transfer with scArches query mapping.

Documented reference-mapping workflow of scvi-tools ("scArches" tutorial): scVI trained on the
reference counts (reference and query as two batches, ``encode_covariates=True``), scANVI
initialised from it and trained with the reference labels, then
``SCANVI.prepare_query_anndata`` + ``SCANVI.load_query_data`` and a short query fine-tune with
``weight_decay=0`` in which every query cell is unlabelled. Predictions are
``predict(soft=True)`` of the query model.

scVI's negative-binomial likelihood needs raw counts: log-normalised inputs fail with a
"needs raw counts" reason instead of training a misspecified model.
"""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd

from ..registry import register
from ._common import counts_matrix, prediction_frame, quiet_logger, ref_labels, stripped

logger = logging.getLogger("pyclams")

__all__ = ["fit_predict"]

_BATCH, _LABEL, _UNLABELED = "_pyclams_batch", "_pyclams_label", "_pyclams_unlabeled"


@register("scanvi", "bio tool", requires=("scvi",),
          install_hints={"scvi": 'pip install "scvi-tools>=1.1,<1.5" (keep torch pinned)'})
def fit_predict(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                scvi_epochs: int = 50, scanvi_epochs: int = 20, query_epochs: int = 20,
                n_top_genes: int | None = 2000, n_latent: int = 30,
                batch_size: int = 128, n_threads: int | None = None) -> pd.DataFrame:
    """scVI + scANVI on raw counts with scArches query mapping.

    Parameters
    ----------
    ref, query
        Reference and query over the same genes; both must hold raw counts.
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        ``scvi.settings.seed``.
    scvi_epochs, scanvi_epochs, query_epochs
        Training epochs of scVI (reference), scANVI (reference) and the query fine-tune
        (bounded for CPU; the defaults are recorded in the benchmark output).
    n_top_genes
        Highly variable reference genes (``flavor="seurat_v3"`` on counts); ``None``: all.
    n_latent
        Latent dimensions.
    batch_size
        Minibatch size.
    n_threads
        torch CPU threads during training (restored afterwards); ``None`` keeps the current
        setting. On a shared, loaded CPU ``1`` can be many times faster than oversubscribing.

    Returns
    -------
    pandas.DataFrame
        ``label`` = argmax of the soft prediction (never ``"unknown"``), ``confidence`` =
        ``ood_score`` = max soft probability, ``rejected`` all False (scANVI has no reject
        option).
    """
    import scanpy as sc
    import scvi
    import torch

    c_ref, c_query = counts_matrix(ref), counts_matrix(query)
    if c_ref is None or c_query is None:
        raise ValueError("scANVI needs raw counts (negative-binomial likelihood); this "
                         "reference/query holds log-normalised data")
    y = ref_labels(ref, labels_key)
    old_threads = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        with quiet_logger("scvi"), quiet_logger("lightning.pytorch"), \
                quiet_logger("lightning.fabric"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"lightning\..*")
            prob, classes = _train_and_predict(sc, scvi, c_ref, c_query, ref, query, y,
                                               seed=seed, scvi_epochs=scvi_epochs,
                                               scanvi_epochs=scanvi_epochs,
                                               query_epochs=query_epochs,
                                               n_top_genes=n_top_genes, n_latent=n_latent,
                                               batch_size=batch_size)
    finally:
        torch.set_num_threads(old_threads)
    best = np.argmax(prob, axis=1)
    pmax = prob[np.arange(prob.shape[0]), best]
    return prediction_frame(query.obs_names, classes[best], confidence=pmax, ood_score=pmax,
                            rejected=np.zeros(query.n_obs, dtype=bool))


def _train_and_predict(sc, scvi, c_ref, c_query, ref: ad.AnnData, query: ad.AnnData,
                       y: np.ndarray, *, seed: int, scvi_epochs: int, scanvi_epochs: int,
                       query_epochs: int, n_top_genes: int | None, n_latent: int,
                       batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft query predictions (cells x classes, rows sum to 1) and the class names."""
    scvi.settings.seed = seed
    a_ref = stripped(ref, c_ref)
    a_ref.obs[_LABEL] = y
    a_ref.obs[_BATCH] = "reference"
    if n_top_genes is not None and n_top_genes < a_ref.n_vars:
        # genes seen in < 3 reference cells carry no signal and make the seurat_v3 loess fit
        # singular ("reciprocal condition number") on references with many silent genes
        sc.pp.filter_genes(a_ref, min_cells=3)
        sc.pp.highly_variable_genes(a_ref, n_top_genes=min(n_top_genes, a_ref.n_vars),
                                    flavor="seurat_v3", subset=True)
    train = {"accelerator": "cpu", "batch_size": batch_size, "enable_progress_bar": False}
    scvi.model.SCVI.setup_anndata(a_ref, batch_key=_BATCH, labels_key=_LABEL)
    vae = scvi.model.SCVI(a_ref, n_latent=n_latent, n_layers=2, encode_covariates=True,
                          deeply_inject_covariates=False, use_layer_norm="both",
                          use_batch_norm="none")
    vae.train(max_epochs=scvi_epochs, **train)
    lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=_UNLABELED)
    lvae.train(max_epochs=scanvi_epochs, n_samples_per_label=100, **train)

    a_query = stripped(query, c_query)
    a_query.obs[_LABEL] = _UNLABELED
    a_query.obs[_BATCH] = "query"
    scvi.model.SCANVI.prepare_query_anndata(a_query, lvae)
    qvae = scvi.model.SCANVI.load_query_data(a_query, lvae)
    qvae.train(max_epochs=query_epochs, plan_kwargs={"weight_decay": 0.0}, **train)
    soft = qvae.predict(soft=True)
    soft = soft.loc[:, [c for c in soft.columns if c != _UNLABELED]]
    prob = soft.to_numpy(dtype=float)
    return prob / prob.sum(axis=1, keepdims=True), soft.columns.to_numpy().astype(str)
