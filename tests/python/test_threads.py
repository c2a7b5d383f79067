"""The thread policy: which count is chosen, from where, and that it is never oversubscribed."""

from __future__ import annotations

import inspect
import os

import pytest
import torch

import pyclams
from pyclams import _threads
from pyclams._threads import (
    available_cores,
    check_threads,
    env_threads,
    resolve_threads,
    thread_limit,
    with_threads,
)
from pyclams.errors import PyClamsInputError


@pytest.fixture(autouse=True)
def _clean_settings():
    """Each test starts and ends with no package-wide setting."""
    pyclams.settings.n_threads = None
    yield
    pyclams.settings.n_threads = None


def test_available_cores_is_the_affinity():
    cores = available_cores()
    assert cores >= 1
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))


def test_available_cores_without_affinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert available_cores() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cores() == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("3", 3), (" 2 ", 2), ("4,2", 4), ("0", None), ("-1", None), ("", None), ("many", None)])
def test_env_threads(text, expected):
    assert env_threads({"OMP_NUM_THREADS": text}) == expected
    assert env_threads({}) is None


def test_default_is_every_core_the_process_may_use():
    assert resolve_threads(cores=6, environ={}) == 6


def test_omp_num_threads_is_respected_and_capped():
    assert resolve_threads(cores=8, environ={"OMP_NUM_THREADS": "3"}) == 3
    assert resolve_threads(cores=2, environ={"OMP_NUM_THREADS": "16"}) == 2


def test_setting_beats_environment_and_argument_beats_setting():
    env = {"OMP_NUM_THREADS": "1"}
    pyclams.settings.n_threads = 3
    assert resolve_threads(cores=8, environ=env) == 3
    assert resolve_threads(5, cores=8, environ=env) == 5
    assert resolve_threads(50, cores=8, environ=env) == 8  # never more than the cores


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_counts_are_one_clear_error(bad):
    with pytest.raises(PyClamsInputError, match="n_threads"):
        check_threads(bad)
    with pytest.raises(PyClamsInputError, match="settings.n_threads"):
        pyclams.settings.n_threads = bad
    assert pyclams.settings.n_threads is None


def test_thread_limit_sets_and_restores_torch(monkeypatch):
    monkeypatch.setattr(_threads, "available_cores", lambda: 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with thread_limit(2) as used:
            assert used == 2 and torch.get_num_threads() == 2
            with thread_limit() as inner:  # no count of its own: keeps the outer choice
                assert inner == 2 and torch.get_num_threads() == 2
            with thread_limit(3):
                assert torch.get_num_threads() == 3
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with thread_limit() as plain:  # outside any block: the environment's choice
            assert plain == 1
    finally:
        torch.set_num_threads(before)


def test_thread_limit_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), thread_limit(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_with_threads_adds_a_keyword():
    seen = []

    @with_threads
    def work(x, *, scale=1):
        seen.append(torch.get_num_threads())
        return x * scale

    assert work(2, scale=3, n_threads=1) == 6 and seen == [1]
    assert "n_threads" in inspect.signature(work).parameters
    for method in (pyclams.CLAMS.fit, pyclams.CLAMS.infer, pyclams.CLAMS.annotate,
                   pyclams.CLAMS.predict, pyclams.CLAMS.sample):
        param = inspect.signature(method).parameters["n_threads"]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None


def test_model_calls_run_with_the_chosen_threads(trained_model, query, monkeypatch):
    seen = []
    real = trained_model.infer.__wrapped__

    def spy(self, adata, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, adata, **kwargs)

    monkeypatch.setattr(type(trained_model), "infer", with_threads(spy))
    before = torch.get_num_threads()
    trained_model.predict(query, n_threads=1, n_neighbors=0)
    assert seen == [1]
    assert torch.get_num_threads() == before


def test_cli_threads_flag(tmp_path, capsys):
    from pyclams.cli import build_parser, main
    args = build_parser().parse_args(["annotate", "q.h5ad", "--model", "m", "-o", "o.h5ad",
                                      "--threads", "2"])
    assert args.threads == 2
    assert build_parser().parse_args(["train", "r.h5ad", "--labels-key", "c", "-o", "m",
                                      "--threads", "1"]).threads == 1
    assert main(["annotate", "q.h5ad", "--model", "m", "-o", "o.h5ad", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_enforce_threads_undoes_another_librarys_change():
    from pyclams._threads import enforce_threads
    before = torch.get_num_threads()
    try:
        enforce_threads()  # outside any block: nothing to enforce
        assert torch.get_num_threads() == before
        with thread_limit(1):
            torch.set_num_threads(2)  # what numba's OpenMP pool does behind torch's back
            enforce_threads()
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_training_and_inference_keep_the_chosen_threads(ref, query, monkeypatch):
    # scanpy's gene selection (numba's OpenMP pool) raised torch's threads to all cores, so
    # training ran with 2 threads under OMP_NUM_THREADS=1 (issue 13): simulate that change
    from pyclams.data.preprocess import Preprocessor
    from pyclams.training.trainer import Trainer
    monkeypatch.setattr(_threads, "available_cores", lambda: 4)
    real_hvg, real_step = Preprocessor._highly_variable, Trainer._step
    seen = []

    def hvg(*args, **kwargs):
        torch.set_num_threads(3)
        return real_hvg(*args, **kwargs)

    def step(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_step(self, *args, **kwargs)
    monkeypatch.setattr(Preprocessor, "_highly_variable", staticmethod(hvg))
    monkeypatch.setattr(Trainer, "_step", step)
    before = torch.get_num_threads()
    model = pyclams.CLAMS(n_top_genes=50, train={"max_epochs": 1, "min_epochs": 1,
                                                 "min_steps_per_epoch": 2},
                          sgld={"buffer_size": 100, "n_steps": 2},
                          network={"widths": (16, 8), "blocks_per_stage": 1})
    model.fit(ref, labels_key="cell_type", device="cpu", verbose=False, n_threads=1)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_waiting_openmp_threads_sleep_unless_the_user_says(given, expected):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, pyclams; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == expected
