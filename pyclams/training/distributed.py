"""Data-parallel training on ``torch.distributed`` (launched by ``torchrun``).

When a process group is initialised (``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and the
rendezvous; call ``torch.distributed.init_process_group("nccl" or "gloo")`` before
``CLAMS.fit``), :class:`~pyclams.training.trainer.Trainer` trains data-parallel:

* every rank prepares the same reference (same seed: same genes, split and base measure) and
  starts from rank 0's weights (:func:`broadcast_module`);
* each rank trains on its own equal shard of the training cells (:func:`shard`) with its own
  shard of the replay buffer and its own random stream;
* gradients are averaged over the ranks after each backward pass (one all-reduce,
  :func:`average_gradients`), so every rank takes the same optimiser step and holds the same
  weights: validation, early stopping, the kept epoch and the calibration come out the same on
  every rank (rank 0 saves the model);
* the divergence guard's flag is combined over the ranks (:func:`any_rank`), so all stop
  together.

This is data parallelism written with ``torch.distributed`` collectives (not the
``DistributedDataParallel`` wrapper, which expects one forward pass per backward pass; a step
here also runs the sampler's and the fake cells' forward passes): gradients are reduced after
the backward pass, without overlapping communication and computation.

Examples
--------
A script ``train_ddp.py``::

    import os, anndata as ad, torch, torch.distributed as dist
    from pyclams import CLAMS

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank()
    device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
    model = CLAMS().fit(ad.read_h5ad("atlas.h5ad"), labels_key="cell_type", seed=0,
                        device=device, verbose=rank == 0)
    if rank == 0:
        model.save("atlas_model")
    dist.destroy_process_group()

One machine with 4 GPUs: ``torchrun --standalone --nproc-per-node 4 train_ddp.py``. Several
machines under SLURM (one task per node, 4 GPUs each)::

    #SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=4
    head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun torchrun --nnodes "$SLURM_NNODES" --nproc-per-node 4 \
        --rdzv-backend c10d --rdzv-endpoint "$head:29500" --rdzv-id "$SLURM_JOB_ID" \
        train_ddp.py
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(rows: np.ndarray, *, seed: int, rank: int, size: int) -> np.ndarray:
    """This rank's share of ``rows``: a seeded permutation cut into ``size`` equal parts (the
    remainder left out, so that every rank takes the same number of steps), sorted."""
    if size == 1:
        return rows
    perm = np.random.default_rng(seed).permutation(rows)
    per = len(perm) // size
    return np.sort(perm[rank * per:(rank + 1) * per])


def broadcast_module(net: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    for t in list(net.parameters()) + list(net.buffers()):
        dist.broadcast(t.data, src=0)


def average_gradients(net: nn.Module, size: int) -> None:
    """Average the parameters' gradients over the ranks (one flattened all-reduce)."""
    params = [p for p in net.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    at = 0
    for p in params:
        n = p.numel()
        p.grad = flat[at:at + n].view_as(p).clone()
        at += n


def any_rank(flag: torch.Tensor) -> bool:
    """Whether ``flag`` is true on some rank (one all-reduce; the flag itself without a
    process group)."""
    if world()[1] == 1:
        return bool(flag)
    t = flag.to(torch.int32).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
