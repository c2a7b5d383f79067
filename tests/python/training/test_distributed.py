"""Data-parallel training: two processes on the CPU with the gloo backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pyclams.training.distributed import shard, world

REPO = Path(__file__).resolve().parents[3]

WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    import torch.distributed as dist
    from pyclams import CLAMS
    from pyclams.data.demo import demo_reference
    from pyclams.simulate import NBProfiles
    from pyclams.training import trainer as T

    torch.set_num_threads(1)
    size = int(os.environ["WORLD_SIZE"])
    if size > 1:
        dist.init_process_group("gloo")
    seen = []
    init = T.Trainer.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        seen.append(len(self.train_idx))

    T.Trainer.__init__ = spy
    prof = NBProfiles.fit(demo_reference(), labels_key="cell_type", n_genes=300)
    ref = prof.simulate(600, seed=0)
    model = CLAMS(n_top_genes=300, network={"widths": (32, 16), "blocks_per_stage": 1},
                  sgld={"n_steps": 5, "buffer_size": 200},
                  train={"max_epochs": 3, "min_epochs": 1, "min_steps_per_epoch": 8})
    model.fit(ref, labels_key="cell_type", seed=0, device="cpu", verbose=False)
    out = {"model_id": model.model_id, "n_train": seen[0],
           "test_accuracy": model.metrics_["test_accuracy"],
           "epochs": len(model.history), "diverged": model.history_.diverged}
    with open(sys.argv[1] + f".{os.environ.get('RANK', '0')}", "w") as f:
        json.dump(out, f)
    if size > 1:
        dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, size: int) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"result{size}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(size)}
    procs = [subprocess.Popen([sys.executable, str(script), str(out)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(size)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    return [json.loads(Path(f"{out}.{r}").read_text()) for r in range(size)]


def test_two_gloo_ranks_train_one_model_within_the_single_process_band(tmp_path):
    (single,) = _launch(tmp_path, 1)
    ranks = _launch(tmp_path, 2)
    # every rank ends with the same weights (averaged gradients, rank 0's start)
    assert ranks[0]["model_id"] == ranks[1]["model_id"]
    assert ranks[0]["epochs"] == ranks[1]["epochs"]
    # each rank trained on its half of the training cells
    assert ranks[0]["n_train"] == ranks[1]["n_train"] == single["n_train"] // 2
    assert not ranks[0]["diverged"] and not single["diverged"]
    assert single["test_accuracy"] > 0.9
    assert ranks[0]["test_accuracy"] >= single["test_accuracy"] - 0.05


def test_shards_are_disjoint_equal_and_cover_the_cells():
    rows = np.arange(103)
    parts = [shard(rows, seed=1, rank=r, size=4) for r in range(4)]
    assert {len(p) for p in parts} == {25}
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == 100 and np.isin(joined, rows).all()
    assert shard(rows, seed=1, rank=0, size=1) is rows
    assert world() == (0, 1)


@pytest.mark.parametrize("size", [2])
def test_rank_start_and_gradients_follow_rank_zero_and_the_mean(tmp_path, size):
    script = tmp_path / "grads.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        import torch, torch.distributed as dist
        from pyclams.training.distributed import any_rank, average_gradients, broadcast_module
        dist.init_process_group("gloo")
        r = dist.get_rank()
        torch.manual_seed(r)
        net = torch.nn.Linear(3, 2)
        broadcast_module(net)
        w0 = net.weight.detach().clone()
        net(torch.full((1, 3), float(r + 1))).sum().backward()
        average_gradients(net, dist.get_world_size())
        assert torch.allclose(net.weight.grad, torch.full((2, 3), 1.5)), net.weight.grad
        assert any_rank(torch.tensor(r == 1)) and not any_rank(torch.tensor(False))
        torch.save(w0, sys.argv[1] + str(r))
        dist.destroy_process_group()
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(size)}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "w")],
                              env={**env, "RANK": str(r)}, stderr=subprocess.PIPE, text=True)
             for r in range(size)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    import torch

    w = [torch.load(tmp_path / f"w{r}") for r in range(size)]
    assert torch.equal(w[0], w[1])
