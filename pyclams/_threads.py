"""How many CPU threads torch uses while pyclams trains or annotates.

The choice, first match wins:

1. the ``n_threads`` argument of a call (``fit``, ``infer``, ``annotate``, ``predict``,
   ``sample``; the CLI's ``--threads``);
2. :attr:`settings.n_threads <Settings.n_threads>` (``pyclams.settings.n_threads = 2``);
3. ``OMP_NUM_THREADS`` in the environment (the first number of a list);
4. the number of cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count``
   where the platform lacks it): a job pinned to 4 cores of a 64-core node (``taskset``,
   cgroups, SLURM's ``--cpus-per-task``) uses 4 threads, not 64.

Whatever the source, the count never exceeds the cores the process may run on: more threads
than cores only makes them wait on each other. The previous torch setting is restored when the
call returns, so pyclams leaves a caller's thread count as it found it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from ._logging import logger
from .errors import PyClamsInputError

F = TypeVar("F", bound=Callable[..., Any])


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def env_threads(environ: dict[str, str] | None = None) -> int | None:
    """``OMP_NUM_THREADS`` as a whole number >= 1 (its first entry), or None when it is unset
    or not a positive whole number."""
    text = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    first = text.split(",")[0].strip()
    try:
        value = int(first)
    except ValueError:
        return None
    return value if value >= 1 else None


def check_threads(value: Any, name: str = "n_threads") -> int | None:
    """``value`` as a whole number >= 1, or None (no preference); anything else is an error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PyClamsInputError(f"{name} must be a whole number >= 1 or None, not {value!r}")
    return int(value)


class Settings:
    """Package-wide settings: ``pyclams.settings``.

    Attributes
    ----------
    n_threads
        CPU threads torch may use during pyclams' calls (None: ``OMP_NUM_THREADS``, else the
        cores this process may run on). A call's own ``n_threads`` argument takes precedence.
    """

    def __init__(self) -> None:
        self._n_threads: int | None = None

    @property
    def n_threads(self) -> int | None:
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value: int | None) -> None:
        self._n_threads = check_threads(value, "settings.n_threads")

    def __repr__(self) -> str:
        return f"pyclams.settings(n_threads={self._n_threads!r})"


settings = Settings()

#: the count chosen by the innermost running :func:`thread_limit` (None outside any)
_active: contextvars.ContextVar[int | None] = contextvars.ContextVar("pyclams_threads",
                                                                    default=None)


def resolve_threads(n_threads: int | None = None, *, cores: int | None = None,
                    environ: dict[str, str] | None = None) -> int:
    """The thread count a pyclams call uses (see the module's docstring for the order).

    ``cores`` and ``environ`` stand in for :func:`available_cores` and ``os.environ``.
    """
    cores = available_cores() if cores is None else max(1, int(cores))
    for source, value in (("n_threads", check_threads(n_threads)),
                          ("pyclams.settings.n_threads", settings.n_threads),
                          ("OMP_NUM_THREADS", env_threads(environ))):
        if value is not None:
            if value > cores:
                logger.debug("%s=%d capped at the %d core(s) this process may use", source,
                             value, cores)
            return min(value, cores)
    return cores


@contextlib.contextmanager
def thread_limit(n_threads: int | None = None) -> Iterator[int]:
    """Run the block with torch's intra-op thread count set by :func:`resolve_threads`;
    the previous count is restored afterwards. Yields the count used.

    Inside another :func:`thread_limit` block, ``n_threads=None`` keeps the outer choice.
    """
    outer = _active.get()
    chosen = outer if n_threads is None and outer is not None else resolve_threads(n_threads)
    token = _active.set(chosen)
    previous = torch.get_num_threads()
    torch.set_num_threads(chosen)  # also when equal: it sets MKL's count for this thread too
    try:
        yield chosen
    finally:
        _active.reset(token)
        torch.set_num_threads(previous)


def enforce_threads() -> None:
    """Set torch's thread count back to the running :func:`thread_limit` choice if another
    library changed it (no-op outside such a block).

    scanpy's gene selection runs numba's OpenMP pool, which sets the process's OpenMP thread
    count to all cores; torch (and MKL inside it) then trains with that many threads whatever
    ``OMP_NUM_THREADS`` said. Called before the training loop and each inference pass.
    """
    chosen = _active.get()
    if chosen is not None and torch.get_num_threads() != chosen:
        logger.debug("torch's thread count was changed to %d (by another library): reset to "
                     "%d", torch.get_num_threads(), chosen)
        torch.set_num_threads(chosen)


def with_threads(method: F) -> F:
    """Give ``method`` a keyword-only ``n_threads=None`` argument that runs it under
    :func:`thread_limit` (shown in its signature; nested calls keep the outer choice when
    they get no ``n_threads`` of their own)."""

    @functools.wraps(method)
    def wrapper(*args: Any, n_threads: int | None = None, **kwargs: Any) -> Any:
        with thread_limit(n_threads):
            return method(*args, **kwargs)

    sig = inspect.signature(method)
    params = list(sig.parameters.values())
    extra = inspect.Parameter("n_threads", inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation="int | None")
    var_kw = [i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD]
    params.insert(var_kw[0] if var_kw else len(params), extra)
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
