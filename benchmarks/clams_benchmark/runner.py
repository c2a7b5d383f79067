"""Run a grid of (protocol, method, seed) tasks through the registry, with the run cache.

Every task becomes one tidy row: its key, the method's family, ``status`` / ``reason`` /
``wall_s`` from :func:`clams_benchmark.registry.run_method` (and ``cpu_s``, the process's
CPU seconds over the same call: far below ``wall_s`` on a busy machine), the metrics of
:func:`clams_benchmark.scoring.score_table` when it ran, and the method's extra facts
(``diverged``, ``best_epoch``...). A task whose ``ok`` result is in the cache is not run again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from pyclams._progress import progress

from . import registry
from .cache import RunCache, RunKey
from .protocols import Protocol
from .scoring import prediction_table, score_table

logger = logging.getLogger("pyclams")

__all__ = ["Task", "run_tasks"]


@dataclass(frozen=True)
class Task:
    """One run of the grid.

    Attributes
    ----------
    key
        Experiment, protocol, method and seed.
    options
        Keyword options passed to the method (part of the cache identity).
    source
        What the loader needs to build the protocol, e.g. ``("P1",)`` or
        ``("L1", "kang", "NK", 0)``; tasks with the same source share one loaded protocol
        (default: ``(protocol,)``).
    columns
        Extra columns of the row (e.g. ``{"held_out": "NK"}``).
    """

    key: RunKey
    options: dict = field(default_factory=dict)
    source: tuple = ()
    columns: dict = field(default_factory=dict)

    @property
    def load_key(self) -> tuple:
        """Tasks with the same ``load_key`` share one loaded protocol."""
        return self.source or (self.key.protocol,)


def _family(method: str) -> str:
    try:
        return registry.get(method).family
    except KeyError:
        return ""


def _base_row(task: Task) -> dict:
    k = task.key
    row = {"experiment": k.experiment, "protocol": k.protocol, "method": k.method,
           "family": _family(k.method), "seed": k.seed}
    row.update(task.columns)
    if "max_epochs" in task.options:
        row["epochs"] = task.options["max_epochs"]
    return row


def _restore_threads(n_threads: int) -> None:
    """Put torch's intra-op thread count back: a method that runs numba/OpenMP code (scanpy's
    ingest via pynndescent) can raise it for the whole process, which made the next torch
    runs 20x slower on a 2-core machine."""
    import torch

    if torch.get_num_threads() != n_threads:
        logger.debug("restoring torch threads %d -> %d", torch.get_num_threads(), n_threads)
        torch.set_num_threads(n_threads)


def _run_one(task: Task, load: Callable[[Task], Protocol], cache: RunCache,
             loaded: dict, n_threads: int) -> dict:
    row = _base_row(task)
    hit = cache.load(task.key, task.options)
    if hit is not None:
        stored, table = hit
        row.update({k: v for k, v in stored.items() if k not in row})
        if table is not None:
            row.update(score_table(table))
        row["cached"] = True
        return row
    if task.load_key not in loaded:
        loaded.clear()  # one protocol in memory at a time
        loaded[task.load_key] = load(task)
    proto = loaded[task.load_key]
    k = task.key
    _restore_threads(n_threads)
    cpu0 = time.process_time()
    res = registry.run_method(k.method, proto.ref, proto.query, labels_key=proto.labels_key,
                              seed=k.seed, **task.options)
    # CPU seconds of this process (all its threads): tells a slow method from a busy machine
    row.update({"status": res.status, "reason": res.reason,
                "wall_s": round(res.wall_time_s, 2),
                "cpu_s": round(time.process_time() - cpu0, 2), "cached": False})
    _restore_threads(n_threads)
    row.update({kk: v for kk, v in res.extra.items() if kk not in row})
    table = None
    if res.ok:
        known = sorted(set(proto.ref.obs[proto.labels_key].astype(str)))
        table = prediction_table(res.predictions, proto.query, proto.labels_key, known)
        row.update(score_table(table))
    logger.info("%s %s %s seed %d: %s in %.1f s%s", k.experiment, k.protocol, k.method, k.seed,
                res.status, res.wall_time_s, f" ({res.reason[:200]})" if res.reason else "")
    cache.save(task.key, task.options, {c: v for c, v in row.items() if c != "cached"}, table)
    return row


def run_tasks(tasks: Sequence[Task], load: Callable[[Task], Protocol], cache: RunCache, *,
              desc: str, verbose: bool = True) -> pd.DataFrame:
    """Run (or fetch from ``cache``) every task; one row per task.

    Parameters
    ----------
    tasks
        The grid; keep tasks of one protocol together (one protocol is held in memory).
    load
        Builds the :class:`Protocol` of a task (called once per :attr:`Task.load_key` run).
    cache
        Where finished runs are kept.
    desc
        Label of the progress bar (methods x seeds).
    verbose
        Show the progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per task, in order.
    """
    import torch

    loaded: dict = {}
    n_threads = torch.get_num_threads()  # as set by OMP_NUM_THREADS / the caller
    rows = [_run_one(t, load, cache, loaded, n_threads)
            for t in progress(tasks, desc=desc, total=len(tasks), verbose=verbose)]
    return pd.DataFrame(rows)
