"""The class-Gaussian base measure and the SGLD step size derived from it."""

import numpy as np
import torch
from scipy.stats import multivariate_normal

from pyclams.ebm.sgld import resolve_step_size, sgld_sample
from pyclams.nn.base_measure import ClassGaussianBase
from pyclams.nn.resnet import ResNetMLP


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4, size=(3, 6))
    y = np.repeat(np.arange(3), [200, 100, 50])
    x = centers[y] + rng.normal(size=(len(y), 6))
    return x.astype(np.float32), y


def _fit(x, y, k, shrinkage=0.0):
    base = ClassGaussianBase(x.shape[1], 3, k)
    base.fit(lambda: ((x[i:i + 64], y[i:i + 64]) for i in range(0, len(x), 64)),
             shrinkage=shrinkage)
    return base


def test_full_rank_base_is_the_gaussian_mixture_by_hand():
    x, y = _blobs()
    base = _fit(x, y, k=6)  # all PCs, no shrinkage: an exact rotation
    pts = x[:5] + 0.5
    # by hand, in the original space (the density of a rotation and a global scale only
    # differs by a constant)
    dens = []
    for c in range(3):
        xc = x[y == c]
        n_c = len(xc)
        w = n_c / (n_c + 6)
        pooled = sum(np.cov(x[y == j].T) * (np.sum(y == j) - 1) for j in range(3)) / (len(x) - 3)
        cov = w * np.cov(xc.T) + (1 - w) * pooled
        dens.append(np.log(n_c / len(x)) + multivariate_normal(xc.mean(0), cov).logpdf(pts))
    expected = np.logaddexp.reduce(np.stack(dens, 1), 1)
    got = base(torch.from_numpy(pts)).squeeze(1).double().numpy()
    diff = got - expected
    np.testing.assert_allclose(diff, diff[0], atol=1e-3)  # equal up to one constant


def test_far_points_get_lower_density_and_features_are_fixed():
    x, y = _blobs()
    base = _fit(x, y, k=4, shrinkage=0.1)
    assert not list(base.parameters())  # buffers only: training never moves it
    near = base(torch.from_numpy(x[:50])).mean()
    far = base(torch.from_numpy(x[:50] + 8.0)).mean()
    assert far < near - 10


def test_auto_step_keeps_sgld_inside_the_clusters():
    x, y = _blobs()
    net = ResNetMLP(6, 3, widths=(16,), blocks_per_stage=1, base="class_gaussian", base_pcs=6)
    net.base.fit(lambda: iter([(x, y)]), shrinkage=0.1)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    step = resolve_step_size(net, None)
    assert 0 < step <= 1.0
    assert abs(step - 1.0 / net.base.max_curvature()) < 1e-6 or step == 1.0
    x0 = torch.from_numpy(x[:64] + np.random.default_rng(1).normal(size=(64, 6)).astype(
        np.float32))
    out = sgld_sample(net, x0, step_size=step, noise=0.01, n_steps=50)
    with torch.no_grad():
        assert net.base(out).mean() > net.base(x0).mean()  # climbed the base density
    # no base: JEM's step of 1
    plain = ResNetMLP(6, 3, widths=(16,), blocks_per_stage=1, base="none")
    assert resolve_step_size(plain, None) == 1.0
    assert resolve_step_size(net, 0.3) == 0.3
