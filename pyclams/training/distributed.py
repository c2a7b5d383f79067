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

One machine with 4 GPUs: ``torchrun --standalone --nproc-per-node 4 train_ddp.py``. The
command line does the same without a script (:func:`torchrun_group` sets the group up)::

    torchrun --standalone --nproc-per-node 4 -m pyclams train atlas.h5ad \
        --labels-key cell_type -o atlas_model
 Several
machines under SLURM (one task per node, 4 GPUs each)::

    #SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=4
    head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun torchrun --nnodes "$SLURM_NNODES" --nproc-per-node 4 \
        --rdzv-backend c10d --rdzv-endpoint "$head:29500" --rdzv-id "$SLURM_JOB_ID" \
        train_ddp.py
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .._logging import logger
from .._settings import resolve_device
from ..errors import PyClamsInputError

#: ``--dist-backend`` choices: ``"auto"`` is nccl on CUDA and gloo on the CPU
BACKENDS = ("auto", "nccl", "gloo")


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


# ---------------------------------------------------------------- launched by torchrun
@dataclass(frozen=True)
class Launch:
    """Where this process stands in a (possibly one-process) run.

    Attributes
    ----------
    rank, world_size
        This process's rank and the number of processes (``0, 1`` without torchrun).
    device
        The device this rank trains on (``cuda:LOCAL_RANK`` for a CUDA run under torchrun).
    backend
        The process group's backend (``"nccl"`` or ``"gloo"``), ``None`` without one.
    """

    rank: int
    world_size: int
    device: torch.device
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Whether this process logs, reports and saves (rank 0)."""
        return self.rank == 0

    def on_main(self, check: Callable[[], object]) -> None:
        """Run ``check`` on rank 0 only; a :class:`PyClamsInputError` it raises is raised on
        every rank (so that all stop together instead of waiting for rank 0).

        Parameters
        ----------
        check
            A callable that raises :class:`PyClamsInputError` when something is wrong (for
            example the check of the model's output directory, which only rank 0 writes).
        """
        error: PyClamsInputError | None = None
        if self.main:
            try:
                check()
            except PyClamsInputError as err:
                error = err
        if self.world_size > 1:
            box = [None if error is None else str(error)]
            dist.broadcast_object_list(box, src=0)
            if error is None and box[0] is not None:
                raise PyClamsInputError(f"on rank 0: {box[0]}")
        if error is not None:
            raise error


def _env_int(env: Mapping[str, str], name: str) -> int:
    text = env.get(name)
    if text is None:
        raise PyClamsInputError(f"WORLD_SIZE={env['WORLD_SIZE']} asks for data-parallel "
                                f"training but {name} is not set; launch with torchrun")
    try:
        return int(text)
    except ValueError:
        raise PyClamsInputError(f"{name}={text!r} is not a whole number") from None


def launch_setup(device: str = "auto", backend: str = "auto",
                 env: Mapping[str, str] | None = None) -> Launch:
    """Read torchrun's environment and decide rank, device and backend (nothing started).

    Parameters
    ----------
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (as for :meth:`CLAMS.fit`). Under
        torchrun a CUDA run puts each rank on ``cuda:LOCAL_RANK``.
    backend
        ``"auto"`` (nccl on CUDA, gloo on the CPU), ``"nccl"`` or ``"gloo"``.
    env
        The environment (default ``os.environ``).

    Returns
    -------
    Launch
        ``world_size == 1`` (and ``backend is None``) when ``WORLD_SIZE`` is unset or 1.

    Raises
    ------
    PyClamsInputError
        An incomplete or inconsistent torchrun environment (``WORLD_SIZE`` without ``RANK``,
        ``MASTER_ADDR`` or ``MASTER_PORT``, a rank out of range, ``LOCAL_RANK`` past the
        visible GPUs), nccl without CUDA, or a backend this torch build lacks.
    """
    env = os.environ if env is None else env
    if backend not in BACKENDS:
        raise PyClamsInputError(f"dist backend must be one of {', '.join(BACKENDS)}, "
                                f"not {backend!r}")
    size = _env_int(env, "WORLD_SIZE") if "WORLD_SIZE" in env else 1
    if size < 1:
        raise PyClamsInputError(f"WORLD_SIZE={size}: must be at least 1")
    if size == 1:
        return Launch(0, 1, resolve_device(device))
    rank = _env_int(env, "RANK")
    if not 0 <= rank < size:
        raise PyClamsInputError(f"RANK={rank} is not in 0..{size - 1} (WORLD_SIZE={size})")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise PyClamsInputError(f"WORLD_SIZE={size} asks for data-parallel training but "
                                    f"{name} is not set; launch with torchrun")
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is not None:
            raise PyClamsInputError(f"--device {device}: under torchrun each rank takes "
                                    "cuda:LOCAL_RANK; give --device cuda or auto")
        local = _env_int(env, "LOCAL_RANK")
        if not 0 <= local < torch.cuda.device_count():
            raise PyClamsInputError(f"LOCAL_RANK={local} but this machine shows "
                                    f"{torch.cuda.device_count()} GPU(s); start at most that "
                                    "many processes per node (--nproc-per-node)")
        dev = torch.device("cuda", local)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise PyClamsInputError("the nccl backend needs CUDA devices; use --dist-backend gloo "
                                "on the CPU")
    available = {"nccl": dist.is_available() and dist.is_nccl_available(),
                 "gloo": dist.is_available() and dist.is_gloo_available()}
    if not available[backend]:
        raise PyClamsInputError(f"this torch build ({torch.__version__}) has no {backend} "
                                "backend for torch.distributed")
    return Launch(rank, size, dev, backend)


@contextmanager
def torchrun_group(device: str = "auto", backend: str = "auto", *,
                   timeout: timedelta | None = None) -> Iterator[Launch]:
    """Join the process group torchrun's environment describes, for the ``with`` block.

    Without torchrun (``WORLD_SIZE`` unset or 1) nothing is started and the block runs as a
    single process. Otherwise the group is initialised (``env://``), a CUDA rank is put on
    ``cuda:LOCAL_RANK``, and the group is destroyed when the block ends, also on an error.
    A group that is already initialised is used as it is (and left alone).

    Parameters
    ----------
    device, backend
        As for :func:`launch_setup`.
    timeout
        The collectives' timeout (torch's default when ``None``).

    Yields
    ------
    Launch
        This process's rank, world size, device and backend.

    Raises
    ------
    PyClamsInputError
        A bad setup (see :func:`launch_setup`) or a rendezvous that fails.
    """
    if dist.is_available() and dist.is_initialized():
        rank, size = world()
        yield Launch(rank, size, resolve_device(device), dist.get_backend())
        return
    launch = launch_setup(device, backend)
    if launch.world_size == 1:
        yield launch
        return
    if launch.device.type == "cuda":
        torch.cuda.set_device(launch.device)
    kwargs = {} if timeout is None else {"timeout": timeout}
    try:
        dist.init_process_group(launch.backend, init_method="env://", rank=launch.rank,
                                world_size=launch.world_size, **kwargs)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PyClamsInputError(f"cannot join the process group (rank {launch.rank} of "
                                f"{launch.world_size}, {launch.backend}): {first}") from None
    try:
        if launch.main:
            logger.info("data-parallel training on %d ranks (%s backend, rank 0 on %s)",
                        launch.world_size, launch.backend, launch.device)
        yield launch
    finally:
        dist.destroy_process_group()
