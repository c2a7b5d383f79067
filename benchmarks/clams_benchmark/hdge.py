r"""HDGE: hybrid discriminative-generative training by a contrastive loss (Liu & Abbeel 2020).

HDGE ("Hybrid Discriminative-Generative Training via Contrastive Learning", arXiv 2007.09070)
reads the logits as a joint energy, ``p(x, y) ∝ exp(f(x)[y])``, and trains
``log p(y|x) + log p(x|y)`` instead of JEM's ``log p(y|x) + log p(x)``. The intractable
normaliser of ``p(x|y) = exp(f(x)[y]) / Z(y)`` is replaced by a sum over a set of cells, which
makes the generative term a contrastive (InfoNCE) loss and needs no sampler:

.. math::

    L_{HDGE} = -\frac{1}{N} \sum_i \log
        \frac{\exp(s_i[y_i])}{\sum_{j \in B \cup Q} \exp(s_j[y_i])},
    \qquad s_j = f(x_j) / \tau

(``hdge_mode="class"``, the paper's formulation). ``B`` is the minibatch (each cell is its own
positive and stays in the denominator, as in InfoNCE; gradients flow through every cell of the
batch) and ``Q`` an optional FIFO memory queue of the logits of past minibatches (detached,
HDGE's MoCo-style memory bank). ``hdge_mode="joint"`` normalises over all classes as well, an
estimate of ``log p(x, y)``:

.. math::

    L_{joint} = -\frac{1}{N} \sum_i \log
        \frac{\exp(s_i[y_i])}{\sum_{j \in B \cup Q} \sum_{y'} \exp(s_j[y'])}.

The trainer adds ``hdge_weight * L_HDGE`` to the cross-entropy (the authors' runs weight both
terms 1: ``--pyxce 1 --pxycontrast 1``). The ``hdge_jem`` method also adds JEM's SGLD L_g (the
authors' "HDGE + marginal likelihood", ``--pxsgld 1``).

Differences from the authors' code (all but the last are settings):

* by default the raw logits are used with temperature 1, as in the paper's equations; the
  authors' code L2-normalises the logit vectors and uses temperature 0.1
  (``hdge_normalize=True, hdge_temperature=0.1``);
* by default the negatives are the minibatch only (``hdge_queue_size=0``); the authors keep a
  queue of 65,536 past logits (and use only the queue as negatives). With raw logits such a
  queue of stale, constant negatives lets the loss fall by raising all current logits above
  the stored ones, so log p(x) drifts upward without bound (seen on synthetic data); a queue
  is offered but not the default. The queue starts empty (theirs: Gaussian noise);
* their ``logsumexp(one_hot * logits)`` positive score (a monotone transform of the
  normalised ``f(x)[y]``, kept for label smoothing) is not reproduced; no label smoothing, no
  learning-rate warm-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_scores(logits: torch.Tensor, *, temperature: float = 1.0,
                       normalize: bool = False) -> torch.Tensor:
    """``f(x) / tau``, the logit vectors L2-normalised first when ``normalize``."""
    if normalize:
        logits = F.normalize(logits, dim=1)
    return logits / temperature


def hdge_loss(logits: torch.Tensor, y: torch.Tensor, *, queue: torch.Tensor | None = None,
              mode: str = "class", temperature: float = 1.0,
              normalize: bool = False) -> torch.Tensor:
    """HDGE's contrastive estimate of ``-mean log p(x_i | y_i)`` (or of ``log p(x_i, y_i)``).

    Parameters
    ----------
    logits
        ``(N, C)`` logits of the minibatch (with gradient).
    y
        ``(N,)`` labels.
    queue
        ``(M, C)`` logits of past cells, used as extra (constant) negatives.
    mode
        ``"class"``: the denominator sums ``exp(s_j[y_i])`` over the cells ``j`` of batch and
        queue; ``"joint"``: it sums ``exp(s_j[y'])`` over cells and classes.
    temperature, normalize
        See :func:`contrastive_scores`.

    Returns
    -------
    torch.Tensor
        The scalar loss (mean over the batch).
    """
    s = contrastive_scores(logits, temperature=temperature, normalize=normalize)
    pool = s
    if queue is not None and len(queue):
        q = contrastive_scores(queue.detach(), temperature=temperature, normalize=normalize)
        pool = torch.cat([s, q.to(s.dtype)])
    positive = s.gather(1, y.view(-1, 1)).squeeze(1)
    if mode == "class":
        log_z = torch.logsumexp(pool[:, y], dim=0)  # (N,): over cells, for each y_i
    elif mode == "joint":
        log_z = torch.logsumexp(pool.reshape(-1), dim=0).expand_as(positive)
    else:
        raise ValueError(f"mode must be 'class' or 'joint', not {mode!r}")
    return (log_z - positive).mean()


class LogitQueue:
    """FIFO memory of the (detached) logits of the latest ``size`` training cells."""

    def __init__(self, size: int, n_classes: int, device: torch.device | str = "cpu"):
        self.size = int(size)
        self.values = torch.zeros((0, n_classes), device=device)

    def __len__(self) -> int:
        return len(self.values)

    def push(self, logits: torch.Tensor) -> None:
        """Add a batch (newest first); the oldest entries fall off beyond ``size``."""
        if self.size == 0:
            return
        new = logits.detach().to(self.values.dtype)
        self.values = torch.cat([new, self.values])[:self.size]

    def get(self) -> torch.Tensor | None:
        """The stored logits, or None while empty."""
        return self.values if len(self.values) else None


class HDGETerm:
    """HDGE's contrastive term with its memory queue, as used by the trainer.

    Parameters
    ----------
    n_classes
        Number of classes.
    cfg
        A :class:`~pyclams.ebm.losses.GenerativeLossConfig` (its ``hdge_*`` settings).
    device
        Where the queue lives.
    """

    def __init__(self, n_classes: int, cfg, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.queue = LogitQueue(cfg.hdge_queue_size, n_classes, device)

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Weighted loss of this batch and its statistics; then the batch joins the queue."""
        cfg = self.cfg
        loss = hdge_loss(logits, y, queue=self.queue.get(), mode=cfg.hdge_mode,
                         temperature=cfg.hdge_temperature, normalize=cfg.hdge_normalize)
        self.queue.push(logits)
        stats = {"hdge_loss": loss.item(),
                 "lse_real": torch.logsumexp(logits.detach(), 1).mean().item()}
        return cfg.hdge_weight * loss, stats
