"""The network of a CLAMS model: its settings and its construction on a reference."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import PyClamsInputError
from .base_measure import BASES
from .resnet import ResNetMLP


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


def build_network(cfg: NetworkConfig, *, n_features: int, n_classes: int, n_train: int,
                  base_batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
                  feature_scale: np.ndarray | None) -> ResNetMLP:
    """The residual MLP, with its class-Gaussian base measure fitted on ``base_batches``
    (``(features, labels)`` blocks of the training cells)."""
    if cfg.base not in BASES:
        raise PyClamsInputError(f"network base must be one of {BASES}, not {cfg.base!r}")
    n_pcs = int(min(cfg.base_pcs, n_features, max(n_train - 1, 1)))
    net = ResNetMLP(n_features, n_classes, widths=cfg.widths,
                    blocks_per_stage=cfg.blocks_per_stage, activation=cfg.activation,
                    dropout=cfg.dropout, input_dropout=cfg.input_dropout, base=cfg.base,
                    base_scale=cfg.base_scale, base_pcs=n_pcs)
    if cfg.base == "class_gaussian":
        net.base.fit(base_batches, feature_scale=feature_scale, shrinkage=cfg.base_shrinkage)
    return net


def weights_id(net: torch.nn.Module) -> str:
    """16 hex digits of a hash of the network's weights: the same id means the same model."""
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def network_from_config(cfg: dict) -> ResNetMLP:
    """An untrained network of the architecture recorded in ``config.json``."""
    kw = dict(cfg)
    return ResNetMLP(kw.pop("n_input"), kw.pop("n_classes"), **kw)
