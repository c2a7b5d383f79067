"""Run the selected benchmark experiments and write the results folder (``benchmarks/run.py``).

Example::

    from clams_benchmark.harness import run_benchmark
    results, readme = run_benchmark("../shared/data", "benchmarks/results/2026-11-25",
                                    protocols=["P1", "L1"], experiments=["annotation", "loco"])

Every run is cached under ``<out>/cache``: calling it again with the same settings skips the
finished runs and only rewrites the tables and figures.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from pyclams.errors import PyClamsInputError

from . import experiments as ex
from . import registry
from .defaults import ALL_PROTOCOLS, LOCO
from .protocols import PROTOCOLS
from .report import write_report

logger = logging.getLogger("pyclams")

__all__ = ["ALL_PROTOCOLS", "run_benchmark", "check_settings"]


def check_settings(data_dir: str | Path, *, protocols: Sequence[str],
                   experiments: Sequence[str], methods: Sequence[str] | None,
                   loco_methods: Sequence[str], ablation_protocols: Sequence[str],
                   generation_protocol: str, counts: dict[str, int | None]) -> None:
    """Raise :class:`PyClamsInputError` (one line) for any unusable setting."""
    valid = [*PROTOCOLS, LOCO]  # the protocols registered in protocols.PROTOCOLS, and L1
    bad = [p for p in protocols if p not in valid]
    if bad:
        raise PyClamsInputError(f"unknown protocol(s) {bad}; choose from {valid}")
    bad = [p for p in (*ablation_protocols, generation_protocol) if p not in PROTOCOLS]
    if bad:
        raise PyClamsInputError(f"unknown protocol(s) {bad} for the ablation / generation; "
                                f"choose from {sorted(PROTOCOLS)}")
    bad = [e for e in experiments if e not in ex.EXPERIMENTS]
    if bad:
        raise PyClamsInputError(f"unknown experiment(s) {bad}; choose from {list(ex.EXPERIMENTS)}")
    known = registry.names()
    bad = [m for m in (*(methods or ()), *loco_methods) if m not in known]
    if bad:
        raise PyClamsInputError(f"unknown method(s) {bad}; registered: {', '.join(known)}")
    for name, value in counts.items():
        if value is not None and value < 1:
            raise PyClamsInputError(f"{name} must be at least 1, not {value}")
    if not Path(data_dir).is_dir():
        raise PyClamsInputError(f"data folder {data_dir} does not exist")


def _settings_note(*, protocols, experiments, methods, loco_methods, ebm_seeds, baseline_seeds,
                   epochs, ablation_epochs, ablation_protocols, ablation_seeds,
                   generation_protocol, device) -> str:
    seeds = (f"{ebm_seeds} seed(s) for every energy-based model" if ebm_seeds is not None else
             f"{ex.FAST_EBM_SEEDS} seeds for {', '.join(ex.FAST_EBMS)} and "
             f"{ex.SLOW_EBM_SEEDS} for the other energy-based models")
    return (f"This run: experiments {', '.join(experiments)}; protocols {', '.join(protocols)}; "
            f"methods {'all registered' if methods is None else ', '.join(methods)}; {seeds}; "
            f"{baseline_seeds} seed(s) for the baselines; at most {epochs} epochs per "
            f"energy-based run ({ablation_epochs} in the ablation, on "
            f"{', '.join(ablation_protocols)} with {ablation_seeds} seed(s)); L1 methods "
            f"{', '.join(loco_methods)}; generation on {generation_protocol}; device {device}.")


def run_benchmark(data_dir: str | Path, out_dir: str | Path, *,
                  protocols: Sequence[str] = ALL_PROTOCOLS,
                  experiments: Sequence[str] = ex.EXPERIMENTS,
                  methods: Sequence[str] | None = None,
                  loco_methods: Sequence[str] = ex.LOCO_METHODS,
                  ebm_seeds: int | None = None, baseline_seeds: int = ex.BASELINE_SEEDS,
                  epochs: int = ex.DEFAULT_EPOCHS, ablation_epochs: int = ex.ABLATION_EPOCHS,
                  ablation_protocols: Sequence[str] = ex.ABLATION_PROTOCOLS,
                  ablation_seeds: int = ex.ABLATION_SEEDS,
                  generation_protocol: str = ex.GENERATION_PROTOCOL, device: str = "cpu",
                  command: str = "", with_figures: bool = True,
                  verbose: bool = True) -> tuple[pd.DataFrame, Path]:
    """Run the experiments and write ``results.csv``, ``README.md`` and ``figures/``.

    Parameters
    ----------
    data_dir
        Folder with the shared ``.h5ad`` files (never hard-coded).
    out_dir
        Results folder (created); runs are cached in ``out_dir/cache``.
    protocols
        P1, P2, P3, P5 for the annotation experiment; L1 turns on the leave-one-class-out one.
    experiments
        Any of ``annotation``, ``loco``, ``ablation``, ``generation``.
    methods
        Annotation methods (default: every registered method but the ablation variants).
    loco_methods
        Methods of the L1 experiment.
    ebm_seeds
        Seeds of every energy-based model (default: the plan of
        :func:`clams_benchmark.experiments.seeds_for`).
    baseline_seeds
        Seeds of the other methods.
    epochs, ablation_epochs
        Epoch bounds of the energy-based runs and of the ablation variants.
    ablation_protocols, ablation_seeds
        Where and how often the ablation grid runs.
    generation_protocol
        Protocol whose reference the generation experiment uses.
    device
        Device of the energy-based models.
    command
        The command line, recorded in the Markdown.
    with_figures
        Draw the figures.
    verbose
        Progress bars.

    Returns
    -------
    (pandas.DataFrame, pathlib.Path)
        The tidy results and the Markdown file.
    """
    check_settings(data_dir, protocols=protocols, experiments=experiments, methods=methods,
                   loco_methods=loco_methods, ablation_protocols=ablation_protocols,
                   generation_protocol=generation_protocol,
                   counts={"seeds": ebm_seeds, "baseline seeds": baseline_seeds,
                           "epochs": epochs, "ablation epochs": ablation_epochs,
                           "ablation seeds": ablation_seeds})
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_threads = torch.get_num_threads()  # restored after every experiment (see runner.py)
    annotation_protocols = [p for p in protocols if p != LOCO]
    steps = []
    if "annotation" in experiments and annotation_protocols:
        steps.append(lambda: ex.annotation(
            data_dir, out, protocols=annotation_protocols, methods=methods,
            ebm_seeds=ebm_seeds, baseline_seeds=baseline_seeds, epochs=epochs, device=device,
            verbose=verbose))
    if "loco" in experiments and LOCO in protocols:
        steps.append(lambda: ex.loco(data_dir, out, methods=loco_methods, epochs=epochs,
                                     device=device, verbose=verbose))
    if "ablation" in experiments:
        steps.append(lambda: ex.ablation(data_dir, out, protocols=ablation_protocols,
                                         seeds=ablation_seeds, epochs=ablation_epochs,
                                         device=device, verbose=verbose))
    if "generation" in experiments:
        steps.append(lambda: ex.generation(data_dir, out, protocol=generation_protocol,
                                           epochs=epochs, device=device, verbose=verbose))
    frames = []
    for step in steps:
        torch.set_num_threads(n_threads)
        frames.append(step())
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["experiment", "protocol", "method", "family", "seed", "status", "reason"])
    notes = [_settings_note(protocols=protocols, experiments=experiments, methods=methods,
                            loco_methods=loco_methods, ebm_seeds=ebm_seeds,
                            baseline_seeds=baseline_seeds, epochs=epochs,
                            ablation_epochs=ablation_epochs,
                            ablation_protocols=ablation_protocols,
                            ablation_seeds=ablation_seeds,
                            generation_protocol=generation_protocol, device=device),
             ex.DEFAULT_PLAN_NOTE]
    title = f"pyclams benchmark ({_dt.date.today().isoformat()})"
    md = write_report(results, out, title=title, command=command, notes=notes,
                      elapsed_s=time.perf_counter() - start, with_figures=with_figures)
    logger.info("benchmark results in %s", md)
    return results, md
