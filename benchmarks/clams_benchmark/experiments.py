"""The benchmark experiments of the paper on the shared protocols.

Each experiment takes the data folder and an output folder (runs are cached under
``<out>/cache``, see :mod:`clams_benchmark.cache`) and returns a tidy frame with one row per
(protocol, method, seed):

* :func:`annotation` (Table 2): reference -> query annotation on P1, P2, P3, P5;
* :func:`loco` (Table 3, protocol L1): leave-one-class-out OOD detection on pbmc3k and Kang;
* :func:`ablation` (Tables 5/6): the clip x p_on x threshold grid of CLAMS, with divergence;
* :func:`generation` (Figs. 5/9): cells drawn by SGLD with a proportional or balanced buffer
  (in :mod:`clams_benchmark.generation`).

The defaults (:mod:`clams_benchmark.defaults`) are sized so that
:func:`clams_benchmark.harness.run_benchmark` with every experiment fits in about an hour on a
2-core CPU (see :data:`DEFAULT_PLAN_NOTE`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from . import registry
from .cache import RunCache, RunKey
from .defaults import (
    ABLATION_EPOCHS,
    ABLATION_PROTOCOLS,
    ABLATION_SEEDS,
    ANNOTATION_PROTOCOLS,
    BASELINE_OPTIONS,
    BASELINE_SEEDS,
    DEFAULT_EPOCHS,
    DEFAULT_PLAN_NOTE,
    EXPERIMENTS,
    FAST_EBM_SEEDS,
    FAST_EBMS,
    GENERATION_PROTOCOL,
    LOCO_DATASETS,
    LOCO_METHODS,
    SLOW_EBM_SEEDS,
)
from .ebm_methods import ABLATIONS, is_ebm_method
from .generation import generation
from .protocols import LOCO, load_loco_dataset, load_protocol, loco_split
from .runner import Task, run_tasks

logger = logging.getLogger("pyclams")

__all__ = ["EXPERIMENTS", "ANNOTATION_PROTOCOLS", "DEFAULT_EPOCHS", "ABLATION_EPOCHS",
           "ABLATION_SEEDS", "BASELINE_OPTIONS", "FAST_EBMS", "FAST_EBM_SEEDS",
           "SLOW_EBM_SEEDS", "BASELINE_SEEDS", "LOCO_METHODS", "LOCO_DATASETS",
           "ABLATION_PROTOCOLS", "GENERATION_PROTOCOL", "DEFAULT_PLAN_NOTE",
           "default_annotation_methods", "seeds_for", "method_options", "annotation", "loco",
           "ablation", "generation"]


def default_annotation_methods() -> list[str]:
    """Every registered method except the ablation variants."""
    return [n for n in registry.names() if n not in ABLATIONS]


def seeds_for(method: str, *, ebm_seeds: int | None = None,
              baseline_seeds: int = BASELINE_SEEDS) -> int:
    """How many seeds ``method`` runs: ``ebm_seeds`` for every energy-based model when given,
    else :data:`FAST_EBM_SEEDS` / :data:`SLOW_EBM_SEEDS`; ``baseline_seeds`` otherwise."""
    if is_ebm_method(method):
        if ebm_seeds is not None:
            return ebm_seeds
        return FAST_EBM_SEEDS if method in FAST_EBMS else SLOW_EBM_SEEDS
    return baseline_seeds


def method_options(method: str, *, epochs: int, device: str) -> dict:
    """Keyword options of ``method`` in the benchmark."""
    if is_ebm_method(method):
        return {"max_epochs": int(epochs), "device": device}
    return dict(BASELINE_OPTIONS.get(method, {}))


def _check_methods(methods: Sequence[str]) -> None:
    from pyclams.errors import PyClamsInputError

    known = registry.names()
    bad = [m for m in methods if m not in known]
    if bad:
        raise PyClamsInputError(f"unknown method(s) {bad}; registered: {known}")


def _cache(out_dir: str | Path) -> RunCache:
    return RunCache(Path(out_dir) / "cache")


def annotation(data_dir: str | Path, out_dir: str | Path, *,
               protocols: Sequence[str] = ANNOTATION_PROTOCOLS,
               methods: Sequence[str] | None = None, ebm_seeds: int | None = None,
               baseline_seeds: int = BASELINE_SEEDS, epochs: int = DEFAULT_EPOCHS,
               device: str = "cpu", verbose: bool = True) -> pd.DataFrame:
    """Table 2: every method on every reference -> query protocol, over seeds.

    Parameters
    ----------
    data_dir
        Folder with the shared ``.h5ad`` files.
    out_dir
        Output folder (runs cached in ``out_dir/cache/annotation``).
    protocols
        Protocol names (P1, P2, P3, P5).
    methods
        Registry names (default: :func:`default_annotation_methods`).
    ebm_seeds, baseline_seeds
        Seeds per method (see :func:`seeds_for`).
    epochs
        Bound on the epochs of the energy-based models.
    device
        Device of the energy-based models.
    verbose
        Progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per protocol x method x seed (see :mod:`clams_benchmark.runner`).
    """
    methods = list(methods) if methods is not None else default_annotation_methods()
    _check_methods(methods)
    tasks = [Task(RunKey("annotation", p, m, s), method_options(m, epochs=epochs, device=device))
             for p in protocols for m in methods
             for s in range(seeds_for(m, ebm_seeds=ebm_seeds, baseline_seeds=baseline_seeds))]
    return run_tasks(tasks, lambda t: load_protocol(t.key.protocol, data_dir), _cache(out_dir),
                     desc="annotation (methods x seeds)", verbose=verbose)


def loco(data_dir: str | Path, out_dir: str | Path, *,
         datasets: Sequence[str] = LOCO_DATASETS, methods: Sequence[str] = LOCO_METHODS,
         seeds: int = 1, epochs: int = DEFAULT_EPOCHS, device: str = "cpu",
         train_fraction: float = 0.8, verbose: bool = True) -> pd.DataFrame:
    """Table 3 (L1): for each class c, train on ``train_fraction`` of the other classes and
    score the held-out ID cells against every cell of c.

    Rows carry ``dataset`` and ``held_out``; ``auroc_score`` is the per-class AUROC (mean and
    sd over classes are computed by the report). The split depends on the seed.
    """
    methods = list(methods)
    _check_methods(methods)
    current: dict[str, object] = {}

    def dataset(name: str):
        if name not in current:
            current.clear()
            current[name] = load_loco_dataset(name, data_dir)
        return current[name]

    tasks = []
    for ds in datasets:
        classes = sorted(set(dataset(ds).obs["cell_type"].astype(str)))
        for c in classes:
            for m in methods:
                for s in range(seeds):
                    tasks.append(Task(RunKey("loco", f"{LOCO}-{ds}/{c}", m, s),
                                      method_options(m, epochs=epochs, device=device),
                                      source=(LOCO, ds, c, s),
                                      columns={"dataset": ds, "held_out": c}))

    def load(task: Task):
        _, ds, c, s = task.source
        return loco_split(dataset(ds), c, seed=s, train_fraction=train_fraction,
                          name=f"{LOCO}-{ds}")

    return run_tasks(tasks, load, _cache(out_dir), desc="L1 (classes x methods x seeds)",
                     verbose=verbose)


def ablation(data_dir: str | Path, out_dir: str | Path, *,
             protocols: Sequence[str] = ABLATION_PROTOCOLS,
             variants: Sequence[str] | None = None, seeds: int = ABLATION_SEEDS,
             epochs: int = ABLATION_EPOCHS, device: str = "cpu",
             verbose: bool = True) -> pd.DataFrame:
    """Tables 5/6: the CLAMS ablation grid (clip x p_on x threshold) over seeds.

    Rows carry ``clip``, ``p_on`` and ``threshold``; the report gives the divergence rate
    (diverged runs / runs) next to accuracy, ECE and AUROC.
    """
    variants = list(variants) if variants is not None else list(ABLATIONS)
    _check_methods(variants)
    tasks = [Task(RunKey("ablation", p, v, s), method_options(v, epochs=epochs, device=device),
                  columns={k: ("none" if val is None else val)
                           for k, val in ABLATIONS.get(v, {}).items()})
             for p in protocols for v in variants for s in range(seeds)]
    return run_tasks(tasks, lambda t: load_protocol(t.key.protocol, data_dir), _cache(out_dir),
                     desc="ablation (variants x seeds)", verbose=verbose)
