
import numpy as np
import torch

from pyclams.ebm.buffer import ReplayBuffer, slot_classes
from pyclams.ebm.sgld import sgld_sample

from ..conftest import TwoWells


def test_sgld_lowers_energy_of_noise_and_leaves_model_alone():
    net = TwoWells().train()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(256, 2, generator=gen) * 4
    e0 = -torch.logsumexp(net(x0), 1)
    x = sgld_sample(net, x0, step_size=0.05, noise=0.01, n_steps=100, generator=gen)
    e1 = -torch.logsumexp(net(x), 1)
    assert e1.mean() < e0.mean() - 5
    assert net.training and net.mu.grad is None and net.mu.requires_grad
    # class-conditional: chains climb towards the requested well
    y = torch.zeros(256, dtype=torch.long)
    xc = sgld_sample(net, x0, step_size=0.05, noise=0.01, n_steps=200, y=y, generator=gen)
    assert (xc.sum(1) > 0).float().mean() > 0.95


def test_buffer_follows_training_proportions():
    rng = np.random.default_rng(0)
    y = np.array([0] * 700 + [1] * 200 + [2] * 100)
    slots = slot_classes(y, 3, 1000, mode="proportional", rng=rng)
    assert np.bincount(slots).tolist() == [700, 200, 100]
    slots = slot_classes(y, 3, 999, mode="balanced", rng=rng)
    assert np.bincount(slots).tolist() == [333, 333, 333]
    slots = slot_classes(y, 3, 7, mode="proportional", rng=rng)
    assert np.bincount(slots, minlength=3).sum() == 7


def test_buffer_restarts_from_real_cells_of_the_slot_class():
    rng = np.random.default_rng(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 100.0]])

    def draw_real(c, n):
        return centres[c].repeat(n, 1)

    slots = slot_classes(np.array([0, 0, 0, 1]), 2, 400, mode="proportional", rng=rng)
    buf = ReplayBuffer(draw_real, slots, init_noise=0.1, rng=rng, device=torch.device("cpu"))
    assert (buf.slot_y == 1).sum() == 100
    # states sit next to the centre of their class
    assert torch.allclose(buf.x.mean(1), centres[buf.slot_y].mean(1), atol=1.0)
    idx, x, y = buf.sample(64, reinit_freq=1.0)
    assert torch.allclose(x.mean(1), centres[y].mean(1), atol=1.0)
    buf.update(idx, torch.full_like(x, 5.0))
    assert torch.all(buf.x[torch.as_tensor(idx)] == 5.0)


