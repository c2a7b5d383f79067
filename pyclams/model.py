"""The user-facing :class:`CLAMS` model: fit / predict / annotate / sample / save / load.

The pieces live elsewhere: preprocessing in :mod:`pyclams.data`, the network in
:mod:`pyclams.nn`, the loss, sampler and buffer in :mod:`pyclams.ebm`, the loop in
:mod:`pyclams.training`, calibration and OOD p-values in :mod:`pyclams.ood`, the file format in
:mod:`pyclams.io`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, fields
from collections.abc import Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import io
from ._logging import logger
from ._settings import resolve_device, seed_everything
from ._version import __version__
from .data.checks import check_labels
from .data.harmony import harmonize
from .data.loader import FeatureMatrix
from .data.preprocess import CLIP, Preprocessor
from .ebm.losses import PRESETS, GenerativeLossConfig
from .ebm.sgld import SGLDConfig, resolve_step_size, sgld_sample
from .errors import ModelFormatError, PyClamsInputError
from .metrics import ece
from .nn.base_measure import BASES
from .nn.resnet import ResNetMLP
from .ood.calibration import fit_temperature
from .ood.conformal import benjamini_hochberg, classwise_pvalues
from .training.history import History
from .training.split import stratified_split
from .training.objectives import Objective
from .training.trainer import TrainConfig, Trainer, evaluate_logits

UNKNOWN = "unknown"
OOD_METHODS = ("conformal", "max_prob")


@dataclass
class NetworkConfig:
    """Architecture of the residual MLP (see :class:`pyclams.nn.ResNetMLP`).

    ``base`` is the fixed base measure added to every logit (:mod:`pyclams.nn.base_measure`):
    ``"class_gaussian"`` (default: a Gaussian per reference class on ``base_pcs`` principal
    components, shrunk by ``base_shrinkage``), ``"isotropic"`` (``base_scale``) or ``"none"``.
    It leaves p(y|x) unchanged and makes log p(x) an exponential tilt of that density.
    """

    widths: tuple[int, ...] = (256, 128)
    blocks_per_stage: int = 2
    activation: str = "elu"
    dropout: float = 0.1
    input_dropout: float = 0.1
    base: str = "class_gaussian"
    base_scale: float = 10.0
    base_pcs: int = 30
    base_shrinkage: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def _build(cls, value, name: str):
    """Dataclass ``cls`` from an instance, a dict of overrides or None (defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        bad = sorted(set(value) - known)
        if bad:
            raise PyClamsInputError(f"unknown {name} setting(s) {bad}; known: {sorted(known)}")
        return cls(**value)
    raise PyClamsInputError(f"{name} must be a {cls.__name__} or a dict, not {type(value)}")


@dataclass
class Inference:
    """Everything computed for a set of query cells (nothing written anywhere yet)."""

    obs_names: pd.Index
    label: np.ndarray
    label_raw: np.ndarray
    confidence: np.ndarray
    log_px: np.ndarray
    ood_pvalue: np.ndarray
    is_ood: np.ndarray
    probabilities: np.ndarray
    embedding: np.ndarray
    gene_overlap: float
    params: dict


class CLAMS:
    """Energy-based cell-type annotator with calibrated OOD detection (CLAMS, JEM hybrid).

    One network gives p(y|x) (softmax of its logits f(x)) and an unnormalised density
    log p(x) = logsumexp_y f(x)[y]. Training adds the regularised generative loss of CLAMS to
    the cross-entropy; see the ``preset`` argument.

    Parameters
    ----------
    preset
        ``"clams"`` (ELU clipping, p_on = 0.25; the default), ``"jem"`` (no regulariser) or
        ``"classifier"`` (no generative loss; a plain ResNet classifier).
    n_top_genes
        Highly variable genes chosen on the reference (all variable genes when fewer).
    network, train, sgld, generative
        :class:`NetworkConfig`, :class:`~pyclams.training.trainer.TrainConfig`,
        :class:`~pyclams.ebm.sgld.SGLDConfig` and
        :class:`~pyclams.ebm.losses.GenerativeLossConfig`, or dicts that override their
        defaults. ``generative`` overrides the preset (e.g. ``{"threshold": -1}``).

    Examples
    --------
    >>> model = CLAMS().fit(ref, labels_key="cell_type")
    >>> model.annotate(query)              # writes obs["clams_label"], ...
    >>> model.save("my_model")
    """

    def __init__(self, *, preset: str = "clams", n_top_genes: int = 2000,
                 network: NetworkConfig | dict | None = None,
                 train: TrainConfig | dict | None = None,
                 sgld: SGLDConfig | dict | None = None,
                 generative: GenerativeLossConfig | dict | None = None,
                 objectives: Sequence[Objective] = ()):
        if preset not in PRESETS:
            raise PyClamsInputError(f"preset must be one of {sorted(PRESETS)}, not {preset!r}")
        self.preset = preset
        self.n_top_genes = int(n_top_genes)
        self.network_config = _build(NetworkConfig, network, "network")
        self.train_config = _build(TrainConfig, train, "train")
        self.sgld_config = _build(SGLDConfig, sgld, "sgld")
        if isinstance(generative, GenerativeLossConfig):
            self.gen_config = generative
        else:
            try:
                self.gen_config = GenerativeLossConfig.preset(preset, **(generative or {}))
            except (TypeError, ValueError) as err:
                raise PyClamsInputError(f"bad generative settings: {err}") from None
        self.objectives = list(objectives)
        self.net: ResNetMLP | None = None
        self.preprocessor: Preprocessor | None = None
        self.classes: list[str] = []
        self.class_counts: dict[str, int] = {}
        self.temperature = 1.0
        self.cal_scores = np.zeros(0, dtype=np.float32)
        self.cal_pred = np.zeros(0, dtype=np.int64)
        self.class_means = np.zeros((0, 0), dtype=np.float32)
        self.history_ = History()
        self.metrics_: dict[str, Any] = {}
        self.fit_params: dict[str, Any] = {}
        self.harmony: dict[str, Any] | None = None
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ helpers
    @property
    def is_fitted(self) -> bool:
        return self.net is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise PyClamsInputError("this CLAMS model is not trained: call fit() or load()")

    @property
    def history(self) -> pd.DataFrame:
        """Per-epoch losses, accuracies and energies of the training run."""
        return self.history_.table()

    @property
    def model_id(self) -> str:
        """Short hash of the weights: the same id means the same model."""
        self._require_fitted()
        h = hashlib.sha256()
        for k, v in sorted(self.net.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def _pc_transform(self, pc_mean: np.ndarray, pc_sd: np.ndarray):
        def transform(block: np.ndarray) -> np.ndarray:
            return np.clip((block - pc_mean) / pc_sd, -CLIP, CLIP).astype(np.float32)
        return transform

    def _gene_features(self, adata: ad.AnnData, *, layer: str | None, is_log: bool | None,
                       min_gene_overlap: float, what: str) -> tuple[FeatureMatrix, float]:
        pre = self.preprocessor
        logx, missing, overlap = pre.log_normalised(adata, layer=layer, is_log=is_log,
                                                    min_gene_overlap=min_gene_overlap,
                                                    what=what)
        return FeatureMatrix(logx, lambda b: pre.standardise(b, missing)), overlap

    # ------------------------------------------------------------------ training
    def fit(self, adata: ad.AnnData, *, labels_key: str, layer: str | None = None,
            is_log: bool | None = None, batch_key: str | None = None,
            integrate: Literal["harmony"] | None = None, query: ad.AnnData | None = None,
            query_layer: str | None = None, n_pcs: int = 30,
            max_epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
            device: str = "auto", verbose: bool = True) -> CLAMS:
        """Train on a labelled reference.

        Parameters
        ----------
        adata
            Reference cells: raw counts or log-normalised values in ``X`` or ``layer``.
        labels_key
            Column of ``adata.obs`` with the cell types. Unlabelled cells are left out.
        is_log
            Override the counts / log-normalised detection.
        batch_key
            Column of ``obs`` with batches: used for batch-aware gene selection and, with
            Harmony, as a covariate (it must then exist in ``query`` too).
        integrate, query, query_layer, n_pcs
            ``integrate="harmony"`` runs the paper's set-up: a joint PCA of reference and
            ``query`` corrected by Harmony; the model then works on those PCs and can only
            annotate that query.
        max_epochs, batch_size
            Override :class:`~pyclams.training.trainer.TrainConfig`.
        seed
            Seeds the split, the initialisation and the sampler; a CPU run is repeatable.
        device
            ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        verbose
            Progress bar and log messages.
        """
        if integrate not in (None, "harmony"):
            raise PyClamsInputError(f"integrate must be None or 'harmony', not {integrate!r}")
        if integrate == "harmony" and query is None:
            raise PyClamsInputError("integrate='harmony' needs the query: pass query=")
        if batch_key is not None and batch_key not in adata.obs.columns:
            raise PyClamsInputError(f"batch_key {batch_key!r} is not a column of adata.obs")
        device_ = resolve_device(device)
        tcfg = TrainConfig(**{**self.train_config.to_dict(),
                              **({"max_epochs": max_epochs} if max_epochs else {}),
                              **({"batch_size": batch_size} if batch_size else {})})
        labels = check_labels(adata, labels_key)
        labelled = labels.notna().to_numpy()
        ref = adata[labelled] if not labelled.all() else adata
        pre, ref_logx = Preprocessor.fit_transform(ref, layer=layer, is_log=is_log,
                                                   n_top_genes=self.n_top_genes,
                                                   batch_key=batch_key)
        self.preprocessor = pre
        features = FeatureMatrix(ref_logx, pre.standardise)
        seed_everything(seed)
        if integrate == "harmony":
            features = self._fit_harmony(features, ref, query, query_layer=query_layer,
                                         batch_key=batch_key, n_pcs=n_pcs, seed=seed)
        y_str = labels[labelled].to_numpy().astype(str)
        self.classes = sorted(pd.unique(y_str).tolist())
        y = pd.Categorical(y_str, categories=self.classes).codes.astype(np.int64)
        self.class_counts = {c: int(n) for c, n in zip(self.classes, np.bincount(y), strict=True)}
        rng = np.random.default_rng(seed)
        train_idx, val_idx, test_idx = stratified_split(
            y, val_fraction=tcfg.val_fraction, test_fraction=tcfg.test_fraction, rng=rng)
        self.net = self._build_network(features, y, train_idx,
                                       feature_scale=self.harmony["pc_sd"] if integrate
                                       else pre.sd)
        logger.info("training %s on %d cells (%d train / %d val / %d test), %d classes, %d "
                    "features, device %s", self.preset, len(y), len(train_idx), len(val_idx),
                    len(test_idx), len(self.classes), features.n_features, device_)
        trainer = Trainer(self.net, features, y, train_idx=train_idx, val_idx=val_idx,
                          n_classes=len(self.classes), train=tcfg, gen=self.gen_config,
                          sgld=self.sgld_config, device=device_, seed=seed,
                          feature_clip=CLIP, objectives=self.objectives, verbose=verbose)
        self.history_ = trainer.fit()
        self.device = device_
        self._calibrate(features, y, train_idx, val_idx, test_idx, batch_size=tcfg.batch_size)
        self.train_config = tcfg
        self.fit_params = {"labels_key": labels_key, "layer": layer, "batch_key": batch_key,
                           "seed": seed, "integrate": integrate, "n_cells": int(len(y)),
                           "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                           "n_test": int(len(test_idx)), "sgld_step_size": trainer.step_size}
        if self.history_.diverged:
            logger.warning("this run DIVERGED at epoch %s (%s); the weights of epoch %s are kept",
                           self.history_.divergence_epoch, self.history_.divergence_reason,
                           self.history_.best_epoch)
        return self

    def _build_network(self, features: FeatureMatrix, y: np.ndarray, train_idx: np.ndarray, *,
                       feature_scale: np.ndarray | None) -> ResNetMLP:
        """The residual MLP, with its class-Gaussian base measure fitted on training cells."""
        nc = self.network_config
        if nc.base not in BASES:
            raise PyClamsInputError(f"network base must be one of {BASES}, not {nc.base!r}")
        n_pcs = int(min(nc.base_pcs, features.n_features, max(len(train_idx) - 1, 1)))
        net = ResNetMLP(features.n_features, len(self.classes), widths=nc.widths,
                        blocks_per_stage=nc.blocks_per_stage, activation=nc.activation,
                        dropout=nc.dropout, input_dropout=nc.input_dropout, base=nc.base,
                        base_scale=nc.base_scale, base_pcs=n_pcs)
        if nc.base == "class_gaussian":
            def batches():
                for rows, x in features.batches(4096, subset=train_idx):
                    yield x.numpy(), y[rows]
            net.base.fit(batches, feature_scale=feature_scale, shrinkage=nc.base_shrinkage)
        return net

    def _fit_harmony(self, ref_features: FeatureMatrix, ref: ad.AnnData, query: ad.AnnData, *,
                     query_layer: str | None, batch_key: str | None, n_pcs: int,
                     seed: int) -> FeatureMatrix:
        qfeat, _ = self._gene_features(query, layer=query_layer, is_log=None,
                                       min_gene_overlap=0.5, what="query")
        if batch_key is not None and batch_key not in query.obs.columns:
            raise PyClamsInputError(f"batch_key {batch_key!r} is not a column of query.obs")
        res = harmonize(ref_features, qfeat, n_pcs=n_pcs,
                        ref_batches=ref.obs[batch_key] if batch_key else None,
                        query_batches=query.obs[batch_key] if batch_key else None, seed=seed)
        pc_mean = res.ref_pcs.mean(0)
        pc_sd = res.ref_pcs.std(0)
        pc_sd[pc_sd == 0] = 1.0
        self.harmony = {"n_pcs": int(res.ref_pcs.shape[1]), "batch_key": batch_key,
                        "query_cells": list(map(str, query.obs_names)),
                        "query_pcs": res.query_pcs, "pc_mean": pc_mean, "pc_sd": pc_sd,
                        "loadings": res.loadings, "center": res.center}
        return FeatureMatrix(res.ref_pcs, self._pc_transform(pc_mean, pc_sd))

    def _calibrate(self, features: FeatureMatrix, y: np.ndarray, train_idx: np.ndarray,
                   val_idx: np.ndarray, test_idx: np.ndarray, *, batch_size: int) -> None:
        """Temperature on validation cells; conformal scores from validation + test cells."""
        dev = self.device
        val_logits = evaluate_logits(self.net, features, val_idx, batch_size=1024, device=dev)
        test_logits = evaluate_logits(self.net, features, test_idx, batch_size=1024, device=dev)
        self.temperature = fit_temperature(val_logits, torch.as_tensor(y[val_idx]))
        metrics: dict[str, Any] = {"temperature": self.temperature,
                                   "best_epoch": self.history_.best_epoch,
                                   "diverged": self.history_.diverged}
        for name, logits, idx in (("val", val_logits, val_idx), ("test", test_logits, test_idx)):
            if len(idx) == 0:
                continue
            yt = y[idx]
            p1 = F.softmax(logits, 1).numpy()
            pt = F.softmax(logits / self.temperature, 1).numpy()
            correct = p1.argmax(1) == yt
            metrics[f"{name}_accuracy"] = float(correct.mean())
            metrics[f"{name}_ece_uncalibrated"] = ece(p1.max(1), correct)
            metrics[f"{name}_ece"] = ece(pt.max(1), correct)
        self.metrics_ = metrics
        held_logits = torch.cat([val_logits, test_logits])
        self.cal_scores = torch.logsumexp(held_logits, 1).numpy().astype(np.float32)
        self.cal_pred = held_logits.argmax(1).numpy().astype(np.int64)
        # class means of training features: starting points for generation
        means = np.zeros((len(self.classes), features.n_features), dtype=np.float32)
        for c in range(len(self.classes)):
            rows = train_idx[y[train_idx] == c]
            means[c] = np.mean(np.concatenate(
                [x.numpy() for _, x in features.batches(4096, subset=rows)]), axis=0)
        self.class_means = means
        logger.info("held-out test accuracy %.3f, ECE %.3f -> %.3f after temperature %.2f",
                    metrics.get("test_accuracy", np.nan), metrics.get("test_ece_uncalibrated",
                                                                     np.nan),
                    metrics.get("test_ece", np.nan), self.temperature)

    # ------------------------------------------------------------------ inference
    def _query_features(self, adata: ad.AnnData, *, layer: str | None, is_log: bool | None,
                        min_gene_overlap: float) -> tuple[FeatureMatrix, float]:
        if self.harmony is None:
            return self._gene_features(adata, layer=layer, is_log=is_log,
                                       min_gene_overlap=min_gene_overlap, what="query")
        cells = self.harmony["query_cells"]
        if list(map(str, adata.obs_names)) != cells:
            raise PyClamsInputError(
                f"this model was trained with integrate='harmony' on a query of {len(cells)} "
                "cells and works only on those same cells (same names, same order); retrain "
                "with the new query, or train without integrate= for a reusable model")
        return FeatureMatrix(self.harmony["query_pcs"],
                             self._pc_transform(self.harmony["pc_mean"],
                                                self.harmony["pc_sd"])), 1.0

    def infer(self, adata: ad.AnnData, *, layer: str | None = None, is_log: bool | None = None,
              ood_method: str = "conformal", ood_fdr: float = 0.05,
              calibration: str = "class", min_confidence: float = 0.5,
              min_gene_overlap: float = 0.5, batch_size: int = 1024) -> Inference:
        """Compute labels, calibrated confidences, log p(x) and OOD calls (nothing written)."""
        self._require_fitted()
        if ood_method not in OOD_METHODS:
            raise PyClamsInputError(f"ood_method must be one of {OOD_METHODS}, not {ood_method!r}")
        if not 0 < ood_fdr < 1:
            raise PyClamsInputError(f"ood_fdr must be in (0, 1), not {ood_fdr}")
        if calibration not in ("class", "pooled"):
            raise PyClamsInputError(f"calibration must be 'class' or 'pooled', not {calibration!r}")
        fm, overlap = self._query_features(adata, layer=layer, is_log=is_log,
                                           min_gene_overlap=min_gene_overlap)
        self.net.eval()
        logits, emb = [], []
        with torch.no_grad():
            for _, x in fm.batches(batch_size):
                e = self.net.embed(x.to(self.device))
                emb.append(e.float().cpu())
                logits.append(self.net.logits_from(e, x.to(self.device)).float().cpu())
        logits_t = torch.cat(logits)
        log_px = torch.logsumexp(logits_t, 1).numpy()
        probs = F.softmax(logits_t / self.temperature, 1).numpy()
        raw = probs.argmax(1)
        conf = probs.max(1)
        pvals = classwise_pvalues(log_px, raw, self.cal_scores, self.cal_pred, mode=calibration)
        if ood_method == "conformal" and 1.0 / (self.cal_scores.size + 1) > ood_fdr:
            logger.warning(
                "only %d reference cells were held out for calibration: rank p-values cannot go "
                "below ood_fdr=%g, so OOD calls rest on the normal-tail extrapolation of log p(x) "
                "(see pyclams.ood.conformal); treat them as approximate or use a larger "
                "reference", self.cal_scores.size, ood_fdr)
        is_ood = benjamini_hochberg(pvals, ood_fdr) if ood_method == "conformal" \
            else conf < min_confidence
        names = np.asarray(self.classes, dtype=object)
        label_raw = names[raw]
        label = np.where(is_ood, UNKNOWN, label_raw).astype(object)
        params = {"ood_method": ood_method, "ood_fdr": ood_fdr, "calibration": calibration,
                  "min_confidence": min_confidence, "min_gene_overlap": min_gene_overlap,
                  "layer": layer or "X", "temperature": self.temperature}
        return Inference(adata.obs_names.copy(), label, label_raw, conf.astype(np.float32),
                         log_px.astype(np.float32), pvals.astype(np.float32), is_ood,
                         probs.astype(np.float32), torch.cat(emb).numpy(), overlap, params)

    def predict(self, adata: ad.AnnData, **kwargs) -> pd.DataFrame:
        """Per-cell results as a DataFrame; ``adata`` is not touched.

        Columns: ``label`` ("unknown" for OOD cells), ``label_raw`` (argmax), ``confidence``
        (calibrated max p(y|x)), ``log_px``, ``ood_pvalue``, ``is_ood`` and one ``p_<class>``
        column per class. Keyword arguments are those of :meth:`infer`.
        """
        r = self.infer(adata, **kwargs)
        df = pd.DataFrame({"label": r.label, "label_raw": r.label_raw,
                           "confidence": r.confidence, "log_px": r.log_px,
                           "ood_pvalue": r.ood_pvalue, "is_ood": r.is_ood}, index=r.obs_names)
        probs = pd.DataFrame(r.probabilities, index=r.obs_names,
                             columns=[f"p_{c}" for c in self.classes])
        return pd.concat([df, probs], axis=1)

    def annotate(self, adata: ad.AnnData, *, key_added: str = "clams", copy: bool = False,
                 **kwargs) -> ad.AnnData | None:
        """Annotate ``adata`` in place (or a copy), scanpy style.

        Writes, with ``k = key_added``:

        ``obs[k_label]``
            Categorical cell type; ``"unknown"`` for cells flagged OOD.
        ``obs[k_label_raw]``
            Most probable reference type, whatever the OOD call.
        ``obs[k_confidence]``
            Calibrated (temperature-scaled) max p(y|x).
        ``obs[k_log_px]``
            log p(x) up to a constant: logsumexp of the logits (higher = more typical).
        ``obs[k_ood_pvalue]``
            Conformal p-value of log p(x) against held-out reference cells.
        ``obs[k_is_ood]``
            True where the cell is flagged as a type the reference lacks.
        ``obsm[k_probabilities]``
            p(y|x), columns in the order of ``uns[k]["classes"]``.
        ``obsm[k_embedding]``
            The network's penultimate-layer embedding.
        ``uns[k]``
            Model id, pyclams version, classes and the parameters of this run.

        All results are computed before anything is written: on error ``adata`` is unchanged.
        Keyword arguments are those of :meth:`infer`. Returns the annotated copy when
        ``copy=True``, else None.
        """
        r = self.infer(adata, **kwargs)
        target = adata.copy() if copy else adata
        k = key_added
        cats = [*self.classes, UNKNOWN]
        obs_new = {
            f"{k}_label": pd.Categorical(r.label, categories=cats),
            f"{k}_label_raw": pd.Categorical(r.label_raw, categories=self.classes),
            f"{k}_confidence": r.confidence, f"{k}_log_px": r.log_px,
            f"{k}_ood_pvalue": r.ood_pvalue, f"{k}_is_ood": r.is_ood.astype(bool),
        }
        uns = {"model_id": self.model_id, "pyclams_version": __version__,
               "preset": self.preset, "classes": list(self.classes),
               "gene_overlap": float(r.gene_overlap), "diverged": bool(self.history_.diverged),
               "params": {kk: v for kk, v in r.params.items() if v is not None}}
        for col, values in obs_new.items():
            target.obs[col] = values
        target.obsm[f"{k}_probabilities"] = r.probabilities
        target.obsm[f"{k}_embedding"] = r.embedding
        target.uns[k] = uns
        n_ood = int(r.is_ood.sum())
        logger.info("annotated %d cells: %d (%.1f%%) flagged OOD", len(r.label), n_ood,
                    100 * n_ood / max(1, len(r.label)))
        return target if copy else None

    # ------------------------------------------------------------------ generation
    def sample(self, n: int, *, label: str | None = None, n_steps: int = 200,
               step_size: float | None = None, noise: float | None = None,
               init_noise: float = 1.0, seed: int = 0) -> ad.AnnData:
        """Draw ``n`` cells by SGLD from the trained model.

        Chains start at class means of the training features plus noise and climb
        f(x)[label] (class-conditional) or log p(x) (``label=None``; starting classes drawn in
        training proportions). Returns an AnnData in the model's gene space: ``X`` holds
        log-normalised values (``layers["scaled"]`` the standardised ones); with a Harmony
        model the variables are the corrected PCs. ``obs["label"]`` is the starting class.
        """
        self._require_fitted()
        if n < 1:
            raise PyClamsInputError("n must be at least 1")
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        if label is not None:
            if label not in self.classes:
                raise PyClamsInputError(f"label {label!r} is not a class of this model "
                                        f"{self.classes}")
            ys = np.full(n, self.classes.index(label))
        else:
            share = np.array([self.class_counts[c] for c in self.classes], dtype=float)
            ys = rng.choice(len(self.classes), size=n, p=share / share.sum())
        x0 = self.class_means[ys] + init_noise * rng.standard_normal(
            (n, self.class_means.shape[1])).astype(np.float32)
        y_t = torch.as_tensor(ys, device=self.device) if label is not None else None
        x = sgld_sample(self.net, torch.from_numpy(x0.astype(np.float32)).to(self.device),
                        step_size=step_size or resolve_step_size(
                            self.net, self.sgld_config.step_size),
                        noise=self.sgld_config.noise if noise is None else noise,
                        n_steps=n_steps, y=y_t, clip=CLIP, generator=gen).cpu().numpy()
        if self.harmony is None:
            pre = self.preprocessor
            var_names = pre.genes
            values = np.maximum(x * pre.sd + pre.mean, 0.0)
        else:
            var_names = [f"PC{i + 1}" for i in range(x.shape[1])]
            values = x * self.harmony["pc_sd"] + self.harmony["pc_mean"]
        out = ad.AnnData(X=values.astype(np.float32),
                         obs=pd.DataFrame({"label": pd.Categorical(
                             np.asarray(self.classes, dtype=object)[ys],
                             categories=self.classes)},
                             index=[f"generated_{i}" for i in range(n)]),
                         var=pd.DataFrame(index=list(var_names)))
        out.layers["scaled"] = x.astype(np.float32)
        out.uns["clams_sample"] = {"model_id": self.model_id, "n_steps": n_steps,
                                   "conditional": label is not None, "seed": seed}
        return out

    # ------------------------------------------------------------------ files
    def _config(self) -> dict:
        return {
            "pyclams_version": __version__, "model_id": self.model_id, "preset": self.preset,
            "classes": [{"name": c, "n_cells": self.class_counts[c]} for c in self.classes],
            "preprocess": {**self.preprocessor.to_config(), "n_top_genes": self.n_top_genes},
            "network": self.net.config,
            "training": {"train": self.train_config.to_dict(), "sgld": self.sgld_config.to_dict(),
                         "generative": self.gen_config.to_dict(), **self.fit_params},
            "calibration": {"temperature": self.temperature, "n_scores": int(self.cal_scores.size),
                            "held_out": "validation + test split of the reference"},
            "metrics": self.metrics_, "history": self.history_.to_dict(),
            "integration": None if self.harmony is None else {
                "method": "harmony", "n_pcs": self.harmony["n_pcs"],
                "batch_key": self.harmony["batch_key"],
                "query_cells": self.harmony["query_cells"]},
        }

    def _tensors(self) -> dict[str, np.ndarray]:
        t = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        t.update(self.preprocessor.tensors())
        t["calibration.scores"] = self.cal_scores
        t["calibration.predicted"] = self.cal_pred
        t["sampling.class_means"] = self.class_means
        if self.harmony is not None:
            for key in ("query_pcs", "pc_mean", "pc_sd", "loadings", "center"):
                t[f"harmony.{key}"] = np.asarray(self.harmony[key], dtype=np.float32)
        return t

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the model directory (``model.safetensors`` + ``config.json``; no pickle)."""
        self._require_fitted()
        io.write_model_dir(path, self._config(), self._tensors(), overwrite=overwrite)
        logger.info("model saved to %s", path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto") -> CLAMS:
        """Read a model directory written by :meth:`save` (in Python or R)."""
        cfg, t = io.read_model_dir(path)
        try:
            train = cfg["training"]
            model = cls(preset=cfg["preset"], n_top_genes=cfg["preprocess"]["n_top_genes"],
                        train=train["train"], sgld=train["sgld"],
                        generative=GenerativeLossConfig(**train["generative"]))
            net_cfg = dict(cfg["network"])
            model.net = ResNetMLP(net_cfg.pop("n_input"), net_cfg.pop("n_classes"), **net_cfg)
            state = {k[4:]: torch.from_numpy(v.copy()) for k, v in t.items()
                     if k.startswith("net.")}
            model.net.load_state_dict(state, strict=True)
            model.preprocessor = Preprocessor.from_config(cfg["preprocess"], t)
            model.classes = [c["name"] for c in cfg["classes"]]
            model.class_counts = {c["name"]: int(c["n_cells"]) for c in cfg["classes"]}
            model.temperature = float(cfg["calibration"]["temperature"])
            model.cal_scores = t["calibration.scores"]
            model.cal_pred = t["calibration.predicted"]
            model.class_means = t["sampling.class_means"]
            model.metrics_ = cfg.get("metrics", {})
            model.history_ = History.from_dict(cfg.get("history", {}))
            model.fit_params = {k: v for k, v in train.items()
                                if k not in ("train", "sgld", "generative")}
            integ = cfg.get("integration")
            if integ:
                model.harmony = {**integ, **{k[8:]: t[k] for k in t if k.startswith("harmony.")}}
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ModelFormatError(f"{path} is not a consistent pyclams model: {err}") from None
        model.device = resolve_device(device)
        model.net.to(model.device).eval()
        return model

    def __repr__(self) -> str:
        if not self.is_fitted:
            return f"CLAMS(preset={self.preset!r}, untrained)"
        return (f"CLAMS(preset={self.preset!r}, {len(self.classes)} classes, "
                f"{self.net.config['n_input']} features, model_id={self.model_id})")
