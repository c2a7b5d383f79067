"""Base measures: a fixed reference log-density added to every logit of the network.

With a base measure ``b(x)`` the logits are ``f(x)[y] = g(x)[y] + b(x)``, so

* ``p(y|x) = softmax(g(x))``: the classifier is unchanged;
* ``log p(x) = LSE(f(x)) = b(x) + LSE(g(x))`` (up to a constant): the network learns an
  exponential tilt of ``b`` by the same JEM/CLAMS objective.

Two base measures are provided:

``IsotropicGaussianBase``
    ``b(x) = -scale / 2 * mean(x**2)``: a standard normal over the standardised genes.
``ClassGaussianBase`` (default)
    The log-density of a Gaussian mixture with one component per reference class, in the space
    of the top principal components of the centred log-expression of the training cells:
    ``b(x) = log sum_c pi_c N(P x; mu_c, Sigma_c)``. Covariances are shrunk towards the pooled
    covariance (classes with few cells borrow from the others) and towards a scaled identity.
    Its parameters are estimated once from the training cells, before training, and stay fixed.

A cell type the reference never had lies between or away from the reference clusters: the
mixture gives it a low density even where a ReLU/ELU network extrapolates high logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..data.harmony import top_components

BASES = ("class_gaussian", "isotropic", "none")


class IsotropicGaussianBase(nn.Module):
    """``-scale / 2 * mean(x**2)``: a standard-normal reference density over the features."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.scale * x.pow(2).mean(1, keepdim=True)

    def max_curvature(self, n_input: int) -> float:
        """Largest eigenvalue of minus the Hessian of the base in ``x``."""
        return self.scale / n_input


class ClassGaussianBase(nn.Module):
    """Class-mixture Gaussian log-density on principal components (fixed buffers).

    Parameters
    ----------
    n_input, n_classes, n_pcs
        Sizes; the buffers are filled by :meth:`fit` (or by ``load_state_dict``).

    Notes
    -----
    Features ``x`` are the network inputs (per-gene standardised values); ``x * feature_scale``
    recovers centred log-expression, which is projected on the PCs and divided by one global
    scale (so that the PCs have unit mean variance).
    """

    def __init__(self, n_input: int, n_classes: int, n_pcs: int):
        super().__init__()
        self.register_buffer("feature_scale", torch.ones(n_input))
        self.register_buffer("center", torch.zeros(n_input))
        self.register_buffer("loadings", torch.zeros(n_input, n_pcs))
        self.register_buffer("means", torch.zeros(n_classes, n_pcs))
        self.register_buffer("precision_chol", torch.zeros(n_classes, n_pcs, n_pcs))
        self.register_buffer("log_norm", torch.zeros(n_classes))

    @property
    def n_pcs(self) -> int:
        return self.loadings.shape[1]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Principal-component coordinates of features ``x``."""
        return (x * self.feature_scale - self.center) @ self.loadings

    def class_log_density(self, x: torch.Tensor) -> torch.Tensor:
        """``log pi_c + log N(P x; mu_c, Sigma_c)`` for every class (cells x classes)."""
        d = self.project(x)[:, None, :] - self.means[None]
        # ||A_c d||^2 with A_c^T A_c = Sigma_c^-1
        maha = torch.einsum("ckj,ncj->nck", self.precision_chol, d).pow(2).sum(-1)
        return self.log_norm - 0.5 * maha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.class_log_density(x), 1, keepdim=True)

    @torch.no_grad()
    def max_curvature(self, n_input: int | None = None) -> float:
        """Largest eigenvalue of ``J Sigma_c^-1 J^T`` over classes (``J``: inputs -> PCs).

        Gradient steps on the base are stable below ``2 / max_curvature``; SGLD's automatic
        step size is derived from it.
        """
        j = self.feature_scale[:, None] * self.loadings
        jtj = j.T @ j
        a = self.precision_chol
        m = a @ jtj @ a.transpose(1, 2)
        return float(torch.linalg.eigvalsh(0.5 * (m + m.transpose(1, 2))).max())

    @torch.no_grad()
    def fit(self, batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], *,
            feature_scale: np.ndarray | None = None,
            shrinkage: float = 0.1) -> ClassGaussianBase:
        """Estimate the mixture from the training cells, read in minibatches (two passes).

        Parameters
        ----------
        batches
            Called twice; each call yields ``(x, y)``: network inputs of training cells (dense
            block, cells x features) and their integer classes ``0 .. n_classes - 1``.
        feature_scale
            Per-feature factor mapping inputs back to centred log-expression (the reference
            sd of each gene); ones when None.
        shrinkage
            Weight of the scaled identity in each covariance (0 keeps the sample covariance).
        """
        n_classes, k = self.means.shape
        n_input = self.center.shape[0]
        scale = np.ones(n_input) if feature_scale is None else np.asarray(feature_scale, float)
        total, s, ss = 0, np.zeros(n_input), np.zeros((n_input, n_input))
        for x, _ in batches():
            c = x.astype(np.float64) * scale
            total += len(c)
            s += c.sum(0)
            ss += c.T @ c
        center = s / total
        vecs = top_components((ss - total * np.outer(center, center)) / max(total - 1, 1), k)
        pcs, labels = [], []
        for x, y in batches():
            pcs.append((x.astype(np.float64) * scale - center) @ vecs)
            labels.append(np.asarray(y))
        pcs, y = np.concatenate(pcs), np.concatenate(labels)
        global_scale = math.sqrt(max(float((pcs ** 2).mean()), 1e-12))
        vecs, pcs = vecs / global_scale, pcs / global_scale
        counts = np.bincount(y, minlength=n_classes).astype(float)
        means = np.stack([pcs[y == j].mean(0) if counts[j] else np.zeros(k)
                          for j in range(n_classes)])
        resid = pcs - means[y]
        pooled = resid.T @ resid / max(len(pcs) - n_classes, 1)
        prec_chol, log_norm = [], []
        for j in range(n_classes):
            r = resid[y == j]
            own = r.T @ r / max(counts[j] - 1, 1)
            w = counts[j] / (counts[j] + k)  # few cells: lean on the pooled covariance
            sigma = w * own + (1 - w) * pooled
            sigma = (1 - shrinkage) * sigma + shrinkage * np.trace(sigma) / k * np.eye(k)
            chol = np.linalg.cholesky(sigma + 1e-6 * np.eye(k))
            prec_chol.append(np.linalg.inv(chol))
            log_norm.append(math.log(max(counts[j], 1) / counts.sum())
                            - np.log(np.diag(chol)).sum() - 0.5 * k * math.log(2 * math.pi))
        for name, value in (("feature_scale", scale), ("center", center), ("loadings", vecs),
                            ("means", means), ("precision_chol", np.stack(prec_chol)),
                            ("log_norm", log_norm)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float32))
        return self


def make_base(kind: str, *, n_input: int, n_classes: int, scale: float = 10.0,
              n_pcs: int = 30) -> nn.Module | None:
    """The base-measure module of a network (None for ``"none"``)."""
    if kind == "none":
        return None
    if kind == "isotropic":
        return IsotropicGaussianBase(scale) if scale else None
    if kind == "class_gaussian":
        return ClassGaussianBase(n_input, n_classes, n_pcs)
    raise ValueError(f"base must be one of {BASES}, not {kind!r}")
