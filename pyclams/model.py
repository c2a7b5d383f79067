"""The user-facing :class:`CLAMS` model: fit / infer / predict / annotate / sample / save / load.

It orchestrates the pieces, which live elsewhere: the feature space (genes or Harmony PCs) in
:mod:`pyclams.data.space`, the network in :mod:`pyclams.nn`, the generative loss, sampler and
buffer in :mod:`pyclams.ebm`, the loop in :mod:`pyclams.training`, the temperature and OOD calls
in :mod:`pyclams.ood`, the result and its schema in :mod:`pyclams.result`, the model directory
in :mod:`pyclams.io`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch

from . import io
from ._config import build_config, check_whole
from ._logging import logger
from ._settings import resolve_device
from ._threads import with_threads
from ._version import __version__
from .data.checks import check_anndata
from .data.loader import FeatureMatrix
from .data.preprocess import CLIP
from .data.scale import base_name
from .data.space import GeneSpace
from .ebm.generate import draw_cells
from .ebm.losses import PRESETS, GenerativeLossConfig
from .ebm.sgld import SGLDConfig, resolve_step_size
from .errors import PyClamsInputError
from .nn.build import NetworkConfig, build_network, weights_id
from .nn.inference import logits_and_embedding
from .nn.resnet import ResNetMLP
from .ood.calibrator import MIN_QUERY_CELLS, Calibrator
from .ood.labels import cell_labels
from .ood.neighbours import BlockPCs, feature_pcs, nearest_neighbours
from .ood.options import OODOptions
from .ood.record import name_records
from .result import UNKNOWN, AnnotationResult, check_key_added
from .training.history import History
from .training.objectives import Objective
from .training.reference import prepare_reference
from .training.trainer import TrainConfig, Trainer, evaluate_logits

__all__ = ["CLAMS", "NetworkConfig", "UNKNOWN"]


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
        :class:`~pyclams.nn.NetworkConfig`, :class:`~pyclams.training.trainer.TrainConfig`,
        :class:`~pyclams.ebm.sgld.SGLDConfig` and
        :class:`~pyclams.ebm.losses.GenerativeLossConfig`, or dicts that override their
        defaults. ``generative`` overrides the preset (e.g. ``{"threshold": -1}``).
    objectives
        Extra training terms (:class:`~pyclams.training.objectives.Objective`) added to the loss.

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
        self.network_config = build_config(NetworkConfig, network, "network")
        self.train_config = build_config(TrainConfig, train, "train")
        self.sgld_config = build_config(SGLDConfig, sgld, "sgld")
        if isinstance(generative, GenerativeLossConfig):
            self.gen_config = generative
        else:
            try:
                self.gen_config = GenerativeLossConfig.preset(preset, **(generative or {}))
            except (TypeError, ValueError) as err:
                raise PyClamsInputError(f"bad generative settings: {err}") from None
        self.objectives = list(objectives)
        self.net: ResNetMLP | None = None
        self.space: GeneSpace | None = None
        self.classes: list[str] = []
        self.class_counts: dict[str, int] = {}
        self.calibrator = Calibrator()
        self.class_means = np.zeros((0, 0), dtype=np.float32)
        self.history_ = History()
        self.metrics_: dict[str, Any] = {}
        self.fit_params: dict[str, Any] = {}
        self.device = torch.device("cpu")
        #: the model directory this model was loaded from or last saved to (None: neither)
        self.path_: str | None = None

    # ------------------------------------------------------------------ state
    @property
    def is_fitted(self) -> bool:
        return self.net is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise PyClamsInputError("this CLAMS model is not trained: call fit() or load()")

    @property
    def preprocessor(self):
        """The gene-space preprocessing (:class:`~pyclams.data.preprocess.Preprocessor`)."""
        return None if self.space is None else self.space.preprocessor

    @property
    def temperature(self) -> float:
        return self.calibrator.temperature

    @property
    def history(self) -> pd.DataFrame:
        """Per-epoch losses, accuracies and energies of the training run."""
        return self.history_.table()

    @property
    def model_id(self) -> str:
        """Short hash of the weights: the same id means the same model."""
        self._require_fitted()
        return weights_id(self.net)

    # ------------------------------------------------------------------ training
    @with_threads
    def fit(self, adata: ad.AnnData, *, labels_key: str, layer: str | None = None,
            is_log: bool | None = None, batch_key: str | None = None,
            integrate: Literal["harmony"] | None = None, query: ad.AnnData | None = None,
            query_layer: str | None = None, n_pcs: int = 30, log_base: str | float | None = None,
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
        log_base
            Base of log-normalised input (``"e"``, 2 or 10) instead of detecting it; such input
            is un-logged and normalised like counts (:mod:`pyclams.data.scale`).
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
        n_threads
            CPU threads for torch (default: ``pyclams.settings.n_threads``, else
            ``OMP_NUM_THREADS``, else the cores this process may run on; see
            :mod:`pyclams._threads`).
        """
        if integrate not in (None, "harmony"):
            raise PyClamsInputError(f"integrate must be None or 'harmony', not {integrate!r}")
        if integrate == "harmony" and query is None:
            raise PyClamsInputError("integrate='harmony' needs the query: pass query=")
        if batch_key is not None and batch_key not in adata.obs.columns:
            raise PyClamsInputError(f"batch_key {batch_key!r} is not a column of adata.obs")
        check_anndata(adata, what="the reference")
        check_whole(seed, "seed", 0)
        device_ = resolve_device(device)
        overrides = {k: v for k, v in (("max_epochs", max_epochs), ("batch_size", batch_size))
                     if v is not None}
        tcfg = build_config(TrainConfig, {**self.train_config.to_dict(), **overrides}, "train")
        ref = prepare_reference(adata, labels_key=labels_key, layer=layer, is_log=is_log,
                                n_top_genes=self.n_top_genes, batch_key=batch_key,
                                integrate=integrate, query=query, query_layer=query_layer,
                                n_pcs=n_pcs, log_base=log_base, val_fraction=tcfg.val_fraction,
                                test_fraction=tcfg.test_fraction, seed=seed)
        self.space, self.classes, self.class_counts = ref.space, ref.classes, ref.class_counts
        self.net = build_network(self.network_config, n_features=ref.features.n_features,
                                 n_classes=len(ref.classes), n_train=len(ref.train_idx),
                                 base_batches=ref.base_batches,
                                 feature_scale=ref.space.feature_scale)
        logger.info("training %s on %d cells (%d train / %d val / %d test), %d classes, %d "
                    "features, device %s", self.preset, len(ref.y), len(ref.train_idx),
                    len(ref.val_idx), len(ref.test_idx), len(ref.classes),
                    ref.features.n_features, device_)
        trainer = Trainer(self.net, ref.features, ref.y, train_idx=ref.train_idx,
                          val_idx=ref.val_idx,
                          n_classes=len(self.classes), train=tcfg, gen=self.gen_config,
                          sgld=self.sgld_config, device=device_, seed=seed,
                          feature_clip=CLIP, objectives=self.objectives, verbose=verbose)
        self.history_ = trainer.fit()
        self.device = device_
        self._calibrate(ref.features, ref.y, ref.val_idx, ref.test_idx)
        self.class_means = ref.features.class_means(ref.y, ref.train_idx, len(ref.classes))
        self.train_config = tcfg
        self.fit_params = {"labels_key": labels_key, "layer": layer, "batch_key": batch_key,
                           "seed": seed, "integrate": integrate, "n_cells": int(len(ref.y)),
                           "n_train": int(len(ref.train_idx)), "n_val": int(len(ref.val_idx)),
                           "n_test": int(len(ref.test_idx)), "sgld_step_size": trainer.step_size}
        if self.history_.diverged:
            logger.warning("this run DIVERGED at epoch %s (%s); the weights of epoch %s are kept",
                           self.history_.divergence_epoch, self.history_.divergence_reason,
                           self.history_.best_epoch)
        return self

    def _calibrate(self, features, y: np.ndarray, val_idx: np.ndarray,
                   test_idx: np.ndarray) -> None:
        """Temperature on validation cells; conformal scores from validation + test cells."""
        val_logits, test_logits = (
            evaluate_logits(self.net, features, idx, batch_size=1024, device=self.device)
            for idx in (val_idx, test_idx))
        held = np.concatenate([val_idx, test_idx])
        held_points = feature_pcs(features, held) if held.size > 1 else None
        self.calibrator, held_out = Calibrator.fit(val_logits, y[val_idx], test_logits,
                                                   y[test_idx], held_points=held_points)
        self.metrics_ = {"temperature": self.temperature, "best_epoch": self.history_.best_epoch,
                         "diverged": self.history_.diverged, **held_out}
        logger.info("held-out test accuracy %.3f, ECE %.3f -> %.3f after temperature %.2f",
                    held_out.get("test_accuracy", np.nan),
                    held_out.get("test_ece_uncalibrated", np.nan),
                    held_out.get("test_ece", np.nan), self.temperature)

    # ------------------------------------------------------------------ inference
    @with_threads
    def infer(self, adata: ad.AnnData, *, layer: str | None = None, is_log: bool | None = None,
              log_base: str | float | None = None,
              ood: OODOptions | dict | None = None, ood_method: str | None = None,
              ood_fdr: float | None = None, calibration: str | None = None,
              min_confidence: float | None = None, n_neighbors: int | None = None,
              label_mode: str | None = None, min_gene_overlap: float = 0.5,
              batch_size: int = 1024) -> AnnotationResult:
        """Labels, calibrated confidences, log p(x) and OOD calls (nothing written anywhere).

        The OOD settings come from ``ood`` (:class:`~pyclams.ood.options.OODOptions` or a dict)
        and the flat arguments ``ood_method``, ``ood_fdr``, ``calibration``,
        ``min_confidence``, ``n_neighbors`` and ``label_mode``, which take precedence (defaults:
        conformal, 0.05, query, 0.5, 10, auto). With ``n_neighbors > 0`` (and at least
        :data:`~pyclams.ood.calibrator.MIN_QUERY_CELLS` cells) OOD scores are averaged over each
        cell's query neighbourhood, and ``label_mode`` says where types and confidences come
        from (:func:`pyclams.ood.labels.cell_labels`). ``n_threads`` sets torch's CPU threads
        (as in :meth:`fit`).
        """
        self._require_fitted()
        check_anndata(adata, what="the query")
        check_whole(batch_size, "batch_size", 1)
        opts = OODOptions.from_kwargs(ood, ood_method=ood_method, ood_fdr=ood_fdr,
                                      calibration=calibration, min_confidence=min_confidence,
                                      n_neighbors=n_neighbors, label_mode=label_mode)
        features, overlap = self.space.transform(adata, layer=layer, is_log=is_log,
                                                 log_base=log_base,
                                                 min_gene_overlap=min_gene_overlap)
        query_input = _input_record(self.space.last_input)
        wants_graph = bool(opts.n_neighbors) and features.n_cells >= MIN_QUERY_CELLS
        pcs = self._block_pcs(features) if wants_graph else None
        logits, embedding = logits_and_embedding(self.net, features, batch_size=batch_size,
                                                 device=self.device,
                                                 on_block=None if pcs is None else pcs.add)
        log_px = torch.logsumexp(logits, 1).numpy()
        probs = self.calibrator.probabilities(logits)
        neighbours = None
        if wants_graph:
            points = feature_pcs(features) if pcs is None else pcs.result()
            neighbours = nearest_neighbours(points, opts.n_neighbors)
        raw, conf, label_info = cell_labels(probs, neighbours, opts.label_mode)
        pvals, is_ood, calls = self.calibrator.flag(log_px, raw, conf, opts, neighbours)
        name_records(calls, label_info, self.classes)
        label_raw = np.asarray(self.classes, dtype=object)[raw]
        params = {**opts.to_dict(), "min_gene_overlap": min_gene_overlap, "layer": layer or "X",
                  "temperature": self.temperature}
        info = {"model_id": self.model_id, "pyclams_version": __version__,
                "preset": self.preset, "gene_overlap": float(overlap),
                "diverged": bool(self.history_.diverged),
                "n_calibration": self.calibrator.n_scores,
                "input": query_input,
                "reference_input": _input_record(self.preprocessor.reference_input()),
                "label_neighbors": (0 if label_info["label_mode_used"] == "cell"
                                    else opts.n_neighbors),
                **label_info,
                **calls, "params": params}
        return AnnotationResult(
            adata.obs_names.copy(), list(self.classes),
            np.where(is_ood, UNKNOWN, label_raw).astype(object), label_raw,
            conf.astype(np.float32), log_px.astype(np.float32), pvals.astype(np.float32),
            np.asarray(is_ood, dtype=bool), probs.astype(np.float32), embedding.numpy(), info)

    def _block_pcs(self, features: FeatureMatrix) -> BlockPCs | None:
        """The query graph's PCs collected during the forward (each block densified once),
        where its blocks are exactly those :func:`feature_pcs` reads: on the CPU; else
        ``None`` (:func:`feature_pcs` reads them again)."""
        if self.device.type != "cpu" or not features.batches_match_rows:
            return None
        return BlockPCs(features)

    @with_threads
    def predict(self, adata: ad.AnnData, **kwargs) -> pd.DataFrame:
        """Per-cell results as a DataFrame; ``adata`` is not touched.

        Columns: ``label`` ("unknown" for OOD cells), ``label_raw`` (argmax), ``confidence``
        (calibrated max p(y|x)), ``log_px``, ``ood_pvalue``, ``is_ood`` and one ``p_<class>``
        column per class. Keyword arguments are those of :meth:`infer`.
        """
        return self.infer(adata, **kwargs).to_frame()

    @with_threads
    def annotate(self, adata: ad.AnnData, *, key_added: str = "clams", copy: bool = False,
                 overwrite: bool = False, **kwargs) -> ad.AnnData | None:
        """Annotate ``adata`` in place (or a copy), scanpy style.

        Writes, with ``k = key_added``: ``obs[k_label]`` (categorical type; ``"unknown"`` for
        cells flagged OOD), ``obs[k_label_raw]`` (most probable reference type),
        ``obs[k_confidence]`` (calibrated max p(y|x)), ``obs[k_log_px]`` (log p(x) up to a
        constant; higher = more typical), ``obs[k_ood_pvalue]`` (conformal p-value of log p(x)
        against held-out reference cells), ``obs[k_is_ood]`` (flagged as a type the reference
        lacks), ``obsm[k_probabilities]`` (p(y|x), columns in the order of
        ``uns[k]["classes"]``), ``obsm[k_embedding]`` (penultimate-layer embedding) and
        ``uns[k]`` (model id, pyclams version, classes, gene overlap, the run's parameters).
        See :mod:`pyclams.result`.

        Fields that exist already are an error unless ``overwrite=True``. All results are
        computed before anything is written: on error ``adata`` is unchanged. Keyword arguments
        are those of :meth:`infer`. Returns the annotated copy when ``copy=True``, else None.
        """
        check_key_added(key_added)
        result = self.infer(adata, **kwargs)
        target = adata.copy() if copy else adata
        result.write(target, key_added=key_added, overwrite=overwrite)
        logger.info("annotated %d cells: %d (%.1f%%) flagged OOD", result.n_cells,
                    result.n_ood, 100 * result.n_ood / max(1, result.n_cells))
        return target if copy else None

    # ------------------------------------------------------------------ generation
    @with_threads
    def sample(self, n: int, *, label: str | None = None, n_steps: int = 200,
               step_size: float | None = None, noise: float | None = None,
               init_noise: float = 1.0, seed: int = 0) -> ad.AnnData:
        """Draw ``n`` cells by SGLD from the trained model.

        Chains start at class means of the training features plus noise and climb
        f(x)[label] (class-conditional) or log p(x) (``label=None``; starting classes drawn in
        training proportions). Returns an AnnData in the model's feature space: ``X`` holds
        log-normalised values (``layers["scaled"]`` the standardised ones); with a Harmony
        model the variables are the corrected PCs. ``obs["label"]`` is the starting class.
        """
        self._require_fitted()
        if label is not None and label not in self.classes:
            raise PyClamsInputError(f"label {label!r} is not a class of this model "
                                    f"{self.classes}")
        share = np.array([self.class_counts[c] for c in self.classes], dtype=float)
        x, ys = draw_cells(
            self.net, self.class_means, share, n,
            label=None if label is None else self.classes.index(label), n_steps=n_steps,
            step_size=step_size or resolve_step_size(self.net, self.sgld_config.step_size),
            noise=self.sgld_config.noise if noise is None else noise, init_noise=init_noise,
            clip=CLIP, seed=seed, device=self.device)
        obs = pd.DataFrame({"label": pd.Categorical(np.asarray(self.classes, dtype=object)[ys],
                                                    categories=self.classes)},
                           index=[f"generated_{i}" for i in range(n)])
        out = ad.AnnData(X=self.space.inverse(x).astype(np.float32), obs=obs,
                         var=pd.DataFrame(index=self.space.var_names))
        out.layers["scaled"] = x.astype(np.float32)
        out.uns["clams_sample"] = {"model_id": self.model_id, "n_steps": n_steps,
                                   "conditional": label is not None, "seed": seed}
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the model directory (``model.safetensors`` + ``config.json``; no pickle)."""
        self._require_fitted()
        io.save_model(self, path, overwrite=overwrite)
        self.path_ = str(Path(path).resolve())
        logger.info("model saved to %s", path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto") -> CLAMS:
        """Read a model directory written by :meth:`save` (in Python or R)."""
        return io.load_model(cls, path, device=resolve_device(device))

    def __repr__(self) -> str:
        if not self.is_fitted:
            return f"CLAMS(preset={self.preset!r}, untrained)"
        return (f"CLAMS(preset={self.preset!r}, {len(self.classes)} classes, "
                f"{self.net.config['n_input']} features, model_id={self.model_id})")


def _input_record(desc: dict[str, Any] | None) -> dict[str, Any]:
    """What a matrix held, for ``uns``: kind, log base ("e", "2", "10" or "none") and how the
    base was found ("detected", "guessed", "given" or "none")."""
    desc = desc or {}
    base = desc.get("log_base")
    return {"kind": str(desc.get("kind", "unknown")),
            "log_base": "none" if base is None else base_name(base),
            "log_base_source": str(desc.get("log_base_source") or "none")}
