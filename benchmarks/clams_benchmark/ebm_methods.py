"""The energy-based models of the benchmark, backed by :class:`pyclams.CLAMS`.

Importing this module registers, in :mod:`clams_benchmark.registry`:

=========== ========== =================================================================
name        family     what
=========== ========== =================================================================
clams       ebm        CLAMS (preset ``clams``: ELU-clipped L_g, stochastic unit p_on 0.25)
jem         ebm        JEM (preset ``jem``: unregularised L_g)
resnet      classifier the same residual MLP trained by cross-entropy alone (``classifier``)
vera        ebm        preset ``classifier`` + :class:`~clams_benchmark.vera.VERAObjective`
hdge        ebm        preset ``classifier`` + :class:`~clams_benchmark.hdge.HDGEObjective`
hdge_jem    ebm        preset ``jem`` + :class:`~clams_benchmark.hdge.HDGEObjective`
clams_paper ebm        CLAMS as the paper writes it: pure LSE (no base measure), no energy
                       penalty, SGLD step 1 (see :data:`PAPER_FORM`)
resnet_lse  classifier the classifier without base measure (the paper's ResNet baseline)
abl_*       ebm        the ablation grid of the paper's Tables 5/6 (see :data:`ABLATIONS`)
=========== ========== =================================================================

A preset that :data:`pyclams.ebm.losses.PRESETS` does not define makes the method fail with
that reason (the registry records it; nothing raises).

Output columns (the registry contract plus two): ``label`` (``"unknown"`` for cells flagged
OOD), ``confidence`` (calibrated max p(y|x)), ``ood_score`` (log p(x)), ``rejected``
(conformal OOD call), ``label_raw`` (most probable class whatever the OOD call) and
``max_prob`` (max p(y|x), the score of the max-probability OOD baseline). Divergence and the
chosen epoch go in ``attrs["extra"]``.
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from pyclams import CLAMS

from .hdge import HDGEObjective
from .registry import register
from .vera import VERAObjective

logger = logging.getLogger("pyclams")

__all__ = ["PRESET_METHODS", "OBJECTIVES", "ABLATIONS", "ablation_name", "build_model",
           "fit_predict_ebm", "is_ebm_method"]

#: objective name -> class (a new instance per training run)
OBJECTIVES = {"vera": VERAObjective, "hdge": HDGEObjective}

#: registry name -> (CLAMS preset, extra objective of :data:`OBJECTIVES` or None, family,
#: description)
PRESET_METHODS: dict[str, tuple[str, str | None, str, str]] = {
    "clams": ("clams", None, "ebm", "CLAMS: ELU-clipped generative loss, stochastic unit p_on "
              "0.25"),
    "jem": ("jem", None, "ebm", "JEM: unregularised generative loss"),
    "resnet": ("classifier", None, "classifier", "residual MLP classifier (cross-entropy only)"),
    "vera": ("classifier", "vera", "ebm", "VERA: L_g on fake cells of an amortised generator"),
    "hdge": ("classifier", "hdge", "ebm", "HDGE: contrastive estimate of log p(x|y)"),
    "hdge_jem": ("jem", "hdge", "ebm", "HDGE + JEM: contrastive term and JEM's SGLD L_g"),
}

#: the ablation grid of the paper's Tables 5/6: clip x p_on x threshold
ABLATION_CLIPS = ("none", "elu", "relu", "leakyrelu")
ABLATION_P_ON = (0.1, 0.25)
ABLATION_THRESHOLDS: tuple[float | None, ...] = (None, -1.0)


def ablation_name(clip: str, p_on: float, threshold: float | None) -> str:
    """Registry name of one ablation variant, e.g. ``abl_elu_p0.25_tnone``."""
    thr = "none" if threshold is None else f"{threshold:g}"
    return f"abl_{clip}_p{p_on:g}_t{thr}"


#: ablation registry name -> generative-loss overrides of the ``clams`` preset
ABLATIONS: dict[str, dict[str, Any]] = {
    ablation_name(c, p, t): {"clip": c, "p_on": p, "threshold": t}
    for c, p, t in itertools.product(ABLATION_CLIPS, ABLATION_P_ON, ABLATION_THRESHOLDS)
}


#: registry name -> (preset, family, description, CLAMS keyword overrides): the paper's own
#: formulation, without pyclams's base measure, tilt penalty and automatic SGLD step
PAPER_FORM: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "clams_paper": ("clams", "ebm", "CLAMS as in the paper: pure LSE, no energy penalty, SGLD "
                    "step 1", {"network": {"base": "none"}, "generative": {"energy_reg": 0.0},
                               "sgld": {"step_size": 1.0}}),
    "resnet_lse": ("classifier", "classifier", "residual MLP classifier without base measure",
                   {"network": {"base": "none"}}),
}


def is_ebm_method(name: str) -> bool:
    """Whether ``name`` is one of the CLAMS-backed methods of this module."""
    return name in PRESET_METHODS or name in ABLATIONS or name in PAPER_FORM


def build_model(method: str, *, objective_options: dict | None = None, **kwargs) -> CLAMS:
    """The untrained :class:`pyclams.CLAMS` of method ``method`` of :data:`PRESET_METHODS`;
    ``objective_options`` go to its objective, ``kwargs`` to ``CLAMS``."""
    preset, objective, _, _ = PRESET_METHODS[method]
    return CLAMS(preset=preset, objectives=_objectives(objective, objective_options), **kwargs)


def _objectives(objective: str | None, options: dict | None) -> list:
    if objective is None:
        if options:
            raise ValueError(f"objective options {sorted(options)} given without an objective")
        return []
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, not {objective!r}")
    return [OBJECTIVES[objective](**(options or {}))]


def fit_predict_ebm(ref: ad.AnnData, query: ad.AnnData, *, labels_key: str, seed: int = 0,
                    preset: str = "clams", objective: str | None = None,
                    objective_options: dict | None = None, generative: dict | None = None,
                    max_epochs: int | None = None, device: str = "cpu",
                    n_top_genes: int = 2000, train: dict | None = None,
                    sgld: dict | None = None, network: dict | None = None,
                    ood_fdr: float = 0.05, verbose: bool = False) -> pd.DataFrame:
    """Train a :class:`pyclams.CLAMS` model on ``ref`` and annotate ``query``.

    Parameters
    ----------
    ref, query
        Reference and query over the same genes (raw counts or log-normalised).
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        Seed of the split, initialisation and sampler.
    preset
        CLAMS preset (``"clams"``, ``"jem"`` or ``"classifier"``).
    objective, objective_options
        An extra training objective (a key of :data:`OBJECTIVES`) and its settings.
    generative, train, sgld, network
        Overrides of the model's settings (see :class:`pyclams.CLAMS`).
    max_epochs
        Bound on the training epochs (default: the preset's).
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    n_top_genes
        Highly variable reference genes.
    ood_fdr
        False discovery rate of the conformal OOD call.
    verbose
        Training progress bar.

    Returns
    -------
    pandas.DataFrame
        The registry frame plus ``label_raw`` and ``max_prob``; ``attrs["extra"]`` holds
        ``diverged``, ``divergence_epoch``, ``best_epoch``, ``n_epochs`` and ``temperature``.
    """
    model = CLAMS(preset=preset, n_top_genes=n_top_genes, network=network, train=train,
                  sgld=sgld, generative=generative,
                  objectives=_objectives(objective, objective_options))
    model.fit(ref, labels_key=labels_key, seed=seed, device=device, verbose=verbose,
              max_epochs=max_epochs)
    pred = model.predict(query, ood_fdr=ood_fdr)
    conf = pred["confidence"].to_numpy(dtype=np.float64)
    out = pd.DataFrame({
        "label": pred["label"].astype(str).to_numpy(dtype=object),
        "confidence": np.clip(conf, 0.0, 1.0),
        "ood_score": pred["log_px"].to_numpy(dtype=np.float64),
        "rejected": pred["is_ood"].to_numpy(dtype=bool),
        "label_raw": pred["label_raw"].astype(str).to_numpy(dtype=object),
        "max_prob": conf,
    }, index=pd.Index(query.obs_names.astype(str)))
    hist = model.history_
    out.attrs["extra"] = {
        "diverged": bool(hist.diverged), "divergence_epoch": hist.divergence_epoch,
        "best_epoch": hist.best_epoch, "n_epochs": len(hist.rows),
        "temperature": float(model.temperature), "preset": preset,
        **({"objective": objective} if objective else {}),
    }
    return out


def _register_all() -> None:
    for name, (preset, objective, family, desc) in PRESET_METHODS.items():
        func = functools.partial(fit_predict_ebm, preset=preset, objective=objective)
        register(name, family, requires=("torch",), description=desc)(func)
    for name, (preset, family, desc, kwargs) in PAPER_FORM.items():
        func = functools.partial(fit_predict_ebm, preset=preset, **kwargs)
        register(name, family, requires=("torch",), description=desc)(func)
    for name, overrides in ABLATIONS.items():
        func = functools.partial(fit_predict_ebm, preset="clams", generative=dict(overrides))
        register(name, "ebm", requires=("torch",),
                 description=f"CLAMS ablation: clip {overrides['clip']}, p_on "
                             f"{overrides['p_on']:g}, threshold {overrides['threshold']}")(func)


_register_all()
