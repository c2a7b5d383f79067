"""Forward passes over many cells, minibatch by minibatch, in eval mode."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._threads import enforce_threads
from ..data.loader import FeatureMatrix


@torch.no_grad()
def logits_and_embedding(net: nn.Module, features: FeatureMatrix, *, batch_size: int,
                         device: torch.device,
                         on_block: Callable[[torch.Tensor], None] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and penultimate-layer embedding of every cell of ``features`` (CPU tensors).

    ``on_block``, if given, is called with each block of standardised features (on
    ``device``; cells in order) after the network has read it, e.g. to project the same
    blocks onto principal axes (:class:`~pyclams.ood.neighbours.BlockPCs`) without
    densifying them a second time.
    """
    enforce_threads()
    net.eval()
    logits, emb = [], []
    for _, x in features.batches(batch_size, device=device):
        e = net.embed(x)
        emb.append(e.float().cpu())
        logits.append(net.logits_from(e, x).float().cpu())
        if on_block is not None:
            on_block(x)
    if not logits:
        n_classes = net.config["n_classes"]
        return torch.zeros((0, n_classes)), torch.zeros((0, 0))
    return torch.cat(logits), torch.cat(emb)
