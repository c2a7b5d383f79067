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

(``mode="class"``, the paper's formulation). ``B`` is the minibatch (each cell is its own
positive and stays in the denominator, as in InfoNCE; gradients flow through every cell of the
batch) and ``Q`` an optional FIFO memory queue of the logits of past minibatches (detached,
HDGE's MoCo-style memory bank). ``mode="joint"`` normalises over all classes as well, an
estimate of ``log p(x, y)``:

.. math::

    L_{joint} = -\frac{1}{N} \sum_i \log
        \frac{\exp(s_i[y_i])}{\sum_{j \in B \cup Q} \sum_{y'} \exp(s_j[y'])}.

:class:`HDGEObjective` adds ``weight * L_HDGE`` to the cross-entropy of the CLAMS trainer (the
authors' runs weight both terms 1: ``--pyxce 1 --pxycontrast 1``): the benchmark's ``hdge`` is
the ``classifier`` preset plus this objective, ``hdge_jem`` the ``jem`` preset (JEM's SGLD L_g)
plus this objective (the authors' "HDGE + marginal likelihood", ``--pxsgld 1``).

Differences from the authors' code (all but the last are settings):

* by default the raw logits are used with temperature 1, as in the paper's equations; the
  authors' code L2-normalises the logit vectors and uses temperature 0.1
  (``normalize=True, temperature=0.1``);
* by default the negatives are the minibatch only (``queue_size=0``); the authors keep a
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
from torch import nn

from pyclams.training.objectives import TrainingContext

MODES = ("class", "joint")


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


class HDGEObjective:
    """HDGE's contrastive term with its memory queue, as a
    :class:`~pyclams.training.objectives.Objective` of the CLAMS trainer.

    Parameters
    ----------
    weight
        Multiplier of the contrastive term.
    mode
        ``"class"`` (the paper: normalise f(x)[y] over samples for the label y) or ``"joint"``
        (normalise over samples and all classes).
    temperature, normalize
        Logits are divided by the temperature, after L2 normalisation when ``normalize``
        (the authors' code: normalised logits, temperature 0.1).
    queue_size
        Past logits kept as extra negatives (MoCo-style memory queue; 0, the default: the
        batch only). With raw logits a queue lets the model lower the loss by inflating all
        current logits above the stale ones: log p(x) then drifts upward without bound.
    """

    def __init__(self, *, weight: float = 1.0, mode: str = "class", temperature: float = 1.0,
                 normalize: bool = False, queue_size: int = 0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if not temperature > 0 or queue_size < 0:
            raise ValueError("temperature must be positive and queue_size >= 0")
        self.weight, self.mode = float(weight), mode
        self.temperature, self.normalize = float(temperature), bool(normalize)
        self.queue_size = int(queue_size)
        self.queue: LogitQueue | None = None

    def setup(self, ctx: TrainingContext) -> None:
        """An empty queue for a new training run."""
        self.queue = LogitQueue(self.queue_size, ctx.n_classes, ctx.device)

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
             logits: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Weighted loss of this batch and its statistics; then the batch joins the queue."""
        loss = hdge_loss(logits, y, queue=self.queue.get(), mode=self.mode,
                         temperature=self.temperature, normalize=self.normalize)
        self.queue.push(logits)
        stats = {"hdge_loss": loss.item(),
                 "lse_real": torch.logsumexp(logits.detach(), 1).mean().item()}
        return self.weight * loss, stats
