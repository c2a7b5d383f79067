"""The training loop's device-side pieces: the divergence guard read every few steps, the
statistics read once per epoch, the precision option (tested with their CPU fallbacks)."""

from __future__ import annotations

import math

import pytest
import torch

from pyclams import CLAMS
from pyclams.errors import PyClamsInputError
from pyclams.training.guard import DivergenceGuard, read_stats
from pyclams.training.objectives import Diverged
from pyclams.training.trainer import resolve_precision

from ..conftest import FAST, FAST_SGLD, make_counts


def _fit(**train) -> CLAMS:
    cfg = {**FAST, "max_epochs": 2, "min_epochs": 1, "min_steps_per_epoch": 6, **train}
    return CLAMS(n_top_genes=80, train=cfg, sgld=FAST_SGLD,
                 network={"widths": (64, 32), "blocks_per_stage": 1}).fit(
        make_counts(60, n_classes=3, seed=0), labels_key="cell_type", seed=3, verbose=False,
        device="cpu")


def test_guard_reads_every_few_steps_and_names_the_first_bad_step():
    guard = DivergenceGuard(max_abs_energy=100.0, max_loss=10.0, every=4)
    guard.record(torch.tensor(1.0), {"lse_real": torch.tensor(3.0)})
    guard.record(torch.tensor(20.0), {})  # flagged, not read yet
    guard.record(torch.tensor(30.0), {"lse_fake": torch.tensor(500.0)})
    with pytest.raises(Diverged, match=r"loss exploded \(20\)"):
        guard.record(torch.tensor(1.0), {})
    # the check emptied the guard: good steps pass, an energy is named with its value
    guard.record(torch.tensor(1.0), {})
    guard.check()
    guard.record(torch.tensor(1.0), {"lse_real": torch.tensor(2.0),
                                     "lse_fake": torch.tensor(-300.0)})
    with pytest.raises(Diverged, match=r"energy exploded \(mean LSE real 2, fake -300\)"):
        guard.check()
    guard.record(torch.tensor(math.nan), {})
    with pytest.raises(Diverged, match="non-finite loss"):
        guard.check()


def test_stats_read_in_one_copy_equal_their_items():
    steps = [{"ce": torch.tensor(0.123456789), "acc": torch.tensor(0.75), "passed": 1.0},
             {"ce": torch.tensor(2.5), "probe": 0.1}]
    read = read_stats(steps)
    assert read == [{"ce": steps[0]["ce"].item(), "acc": 0.75, "passed": 1.0},
                    {"ce": 2.5, "probe": 0.1}]
    assert read_stats([{"a": 1}]) == [{"a": 1.0}]


@pytest.mark.parametrize("every", [1, 4])
def test_divergence_caught_whatever_the_reading_interval(every):
    """A loss bound every step breaks: the run ends as diverged in epoch 1 with the first
    step's reason, whether the guard is read at every step or every 4."""
    model = _fit(max_loss=0.01, guard_every=every)
    hist = model.history_
    assert hist.diverged and hist.divergence_epoch == 1
    assert hist.divergence_reason.startswith("loss exploded (1.")


def test_guard_every_does_not_change_a_run_that_does_not_diverge():
    a, b = _fit(), _fit(guard_every=5)
    assert a.model_id == b.model_id
    assert not a.history_.diverged


def test_precision_option():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "tf32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    fp32 = _fit()
    # TF32 only concerns CUDA matrix products: the CPU run is the fp32 one
    assert _fit(precision="tf32").model_id == fp32.model_id
    bf16 = _fit(precision="bf16")
    assert bf16.model_id != fp32.model_id  # autocast was applied
    assert bf16.history["train_acc"].iloc[-1] > 0.8
    with pytest.raises(PyClamsInputError, match="precision"):
        CLAMS(train={"precision": "fp8"})
    with pytest.raises(PyClamsInputError, match="guard_every"):
        CLAMS(train={"guard_every": 0})
