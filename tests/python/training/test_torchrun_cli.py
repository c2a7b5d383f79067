"""``pyclams train`` launched by torchrun: data-parallel on two gloo ranks (CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pyclams
from pyclams.errors import PyClamsInputError
from pyclams.training.distributed import launch_setup

from ..conftest import make_counts

REPO = Path(__file__).resolve().parents[3]
TRAIN = ["train", "--labels-key", "cell_type", "--epochs", "4", "--seed", "1",
         "--n-top-genes", "120", "--device", "cpu", "--threads", "1"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", **extra}


def test_torchrun_trains_one_model_on_two_ranks(tmp_path):
    ref = make_counts(50, n_classes=3, seed=0)
    ref.write_h5ad(tmp_path / "ref.h5ad")
    out = tmp_path / "models" / "m"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "-m", "pyclams", TRAIN[0], str(tmp_path / "ref.h5ad"),
           *TRAIN[1:], "-o", str(out)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "data-parallel training on 2 ranks (gloo backend" in log
    # each rank trained on its half; only rank 0 logs
    assert "data-parallel rank 0 of 2" in log and "data-parallel rank 1 of 2" not in log
    assert log.count("trained clams:") == 1 and log.count("model saved to") == 1
    # exactly one model directory, nothing else left beside it (no temporary directories)
    assert [p.name for p in out.parent.iterdir()] == ["m"]
    model = pyclams.load(out, device="cpu")
    # the band of the single-process data-parallel test (test_distributed.py)
    pred = model.predict(ref, n_neighbors=0)["label_raw"].to_numpy()
    assert np.mean(pred == ref.obs["cell_type"].to_numpy()) > 0.9
    assert not model.history_.diverged


def test_world_size_without_a_rendezvous_is_one_line_and_exit_2(tmp_path):
    ref = make_counts(10, n_classes=2, seed=0)
    ref.write_h5ad(tmp_path / "ref.h5ad")
    done = subprocess.run([sys.executable, "-m", "pyclams", TRAIN[0], str(tmp_path / "ref.h5ad"),
                           *TRAIN[1:], "-o", str(tmp_path / "m")],
                          env=_env(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pyclams train: error: ") and "MASTER_ADDR" in lines[0]
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("env,backend,message", [
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "auto", "RANK is not set"),
    ({"WORLD_SIZE": "two"}, "auto", "not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "auto",
     "not in 0..1"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h"}, "auto", "MASTER_PORT"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "nccl",
     "nccl backend needs CUDA"),
])
def test_bad_setups_are_input_errors(env, backend, message):
    with pytest.raises(PyClamsInputError, match=message):
        launch_setup("cpu", backend, env)


def test_without_torchrun_nothing_changes():
    run = launch_setup("cpu", "auto", {})
    assert (run.rank, run.world_size, run.backend, run.main) == (0, 1, None, True)
    assert launch_setup("cpu", "auto", {"WORLD_SIZE": "1"}).world_size == 1
    seen = []
    run.on_main(lambda: seen.append(1))
    assert seen == [1]
    with pytest.raises(PyClamsInputError, match="boom"):
        run.on_main(lambda: (_ for _ in ()).throw(PyClamsInputError("boom")))
    two = launch_setup("cpu", "auto", {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                                       "MASTER_ADDR": "h", "MASTER_PORT": "1"})
    assert (two.rank, two.world_size, two.backend, two.main) == (1, 2, "gloo", False)
