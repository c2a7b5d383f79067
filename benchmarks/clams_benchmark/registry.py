"""The registry of annotation methods compared in the benchmarks.

A method is any function with the baseline signature::

    fit_predict(ref: AnnData, query: AnnData, *, labels_key: str, seed: int = 0, **options)
        -> pandas.DataFrame

that trains on ``ref`` (labels in ``ref.obs[labels_key]``), annotates ``query`` (whose labels it
must never read) and returns a frame indexed by ``query.obs_names`` with the columns ``label``
(str; ``"unknown"`` for the method's own unassigned call), ``confidence`` (probability in [0, 1]
or NaN), ``ood_score`` (higher = more in-distribution; NaN if none) and ``rejected`` (bool).
Further columns are allowed (the energy-based models add ``label_raw`` and ``max_prob``), and
per-run facts such as divergence go in the frame's ``attrs["extra"]`` dictionary, which
:func:`run_method` copies to :attr:`MethodResult.extra`.
It must not modify ``ref`` or ``query``.

Register a method with the decorator::

    from clams_benchmark.registry import register

    @register("CLAMS", "ebm", requires=("torch",))
    def fit_predict(ref, query, *, labels_key, seed=0): ...

and run it, never raising, with :func:`run_method`::

    res = run_method("CLAMS", ref, query, labels_key="cell_type", seed=0)
    res.status, res.reason, res.wall_time_s, res.predictions

The built-in baselines (``clams_benchmark.baselines``) register themselves the first time the
registry is queried; a module that registers more methods must be imported before they are
looked up, or be listed in :data:`BUILTIN_MODULES`.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anndata as ad
import pandas as pd

logger = logging.getLogger("pyclams")

__all__ = ["FAMILIES", "BUILTIN_MODULES", "MethodSpec", "MethodResult", "register", "unregister",
           "get", "names", "available", "run_method"]

#: the method families of the benchmark tables
FAMILIES = ("classifier", "bio tool", "ebm")
#: modules imported on the first registry look-up; each registers its methods on import
BUILTIN_MODULES: list[str] = ["clams_benchmark.baselines", "clams_benchmark.ebm_methods"]

_REGISTRY: dict[str, MethodSpec] = {}
_loaded = False


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes
    ----------
    name
        Registry key, e.g. ``"svm_reject"``.
    func
        The ``fit_predict`` callable.
    family
        One of :data:`FAMILIES`.
    requires
        Python modules the method imports (checked by importing them).
    requires_r
        R packages the method loads through rpy2 (checked with ``requireNamespace``).
    install_hints
        Per-dependency install instructions used in the "not installed" reason.
    description
        One line for tables and reports (default: the first docstring line of ``func``).
    """

    name: str
    func: Callable[..., pd.DataFrame]
    family: str
    requires: tuple[str, ...] = ()
    requires_r: tuple[str, ...] = ()
    install_hints: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass
class MethodResult:
    """What :func:`run_method` measured.

    Attributes
    ----------
    name
        The method's registry name.
    predictions
        The method's frame (see the module docstring), or ``None`` when it did not run.
    wall_time_s
        Seconds of fit + predict (0 when it did not start).
    status
        ``"ok"``, ``"failed"`` or ``"not installed"``.
    reason
        Empty when ``status == "ok"``; else why it did not run or how it failed.
    extra
        Per-run facts the method reported besides its predictions (e.g. ``{"diverged":
        False, "best_epoch": 7}`` for the energy-based models): a method returns them in
        ``predictions.attrs["extra"]``.
    """

    name: str
    predictions: pd.DataFrame | None
    wall_time_s: float
    status: str
    reason: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the method ran and returned valid predictions."""
        return self.status == "ok"


def register(name: str, family: str, *, requires: Sequence[str] = (),
             requires_r: Sequence[str] = (), install_hints: dict[str, str] | None = None,
             description: str = "", replace: bool = False
             ) -> Callable[[Callable[..., pd.DataFrame]], Callable[..., pd.DataFrame]]:
    """Decorator that registers a ``fit_predict`` function under ``name``.

    Parameters
    ----------
    name
        Registry key.
    family
        ``"classifier"``, ``"bio tool"`` or ``"ebm"``.
    requires
        Importable Python module names the method needs (``"celltypist"``, ``"scvi"``).
    requires_r
        R package names the method needs (implies rpy2 and R).
    install_hints
        ``{dependency: how to install it}`` for the "not installed" reason.
    description
        One-line description (default: first line of the function's docstring).
    replace
        Allow replacing an existing registration (otherwise a name clash raises).

    Returns
    -------
    The decorator; it returns the function unchanged.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def deco(func: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        if name in _REGISTRY and not replace and _REGISTRY[name].func is not func:
            raise ValueError(f"method {name!r} is already registered; pass replace=True")
        doc = (func.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = MethodSpec(
            name=name, func=func, family=family, requires=tuple(requires),
            requires_r=tuple(requires_r), install_hints=dict(install_hints or {}),
            description=description or (doc[0] if doc else ""))
        return func

    return deco


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (no error when absent)."""
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def get(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered under ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"no method {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def names(family: str | None = None) -> list[str]:
    """Registered method names, in registration order, optionally of one family."""
    _load_builtin()
    return [n for n, s in _REGISTRY.items() if family is None or s.family == family]


def _missing_python(modules: Sequence[str]) -> list[tuple[str, str]]:
    missing = []
    for mod in modules:
        try:
            importlib.import_module(mod)
        except Exception as exc:  # a broken install fails with any error, not only ImportError
            missing.append((mod, f"{type(exc).__name__}: {exc}"))
    return missing


def available(name: str) -> tuple[bool, str]:
    """Whether the dependencies of method ``name`` are installed, without running it.

    Python dependencies are imported; R dependencies are checked with
    ``requireNamespace(pkg, quietly = TRUE)`` in embedded R.

    Returns
    -------
    ``(True, "")`` or ``(False, reason)`` where ``reason`` names what is missing and how to
    install it.
    """
    spec = get(name)
    reasons = []
    for mod, err in _missing_python(spec.requires):
        hint = spec.install_hints.get(mod, f"pip install {mod}")
        reasons.append(f"Python module {mod} is not importable ({err}); {hint}")
    if spec.requires_r:
        from .baselines._r import r_available, r_packages_missing

        ok, why = r_available()
        if not ok:
            reasons.append(f"{why}; the method needs the R packages {', '.join(spec.requires_r)}")
        else:
            for pkg in r_packages_missing(spec.requires_r):
                hint = spec.install_hints.get(pkg, f'install it in R with install.packages("{pkg}")'
                                                   f' or BiocManager::install("{pkg}")')
                reasons.append(f"{pkg} is not installed; {hint}")
    return (not reasons, "; ".join(reasons))


def run_method(name: str, ref: ad.AnnData, query: ad.AnnData, *, labels_key: str,
               seed: int = 0, **options) -> MethodResult:
    """Fit method ``name`` on ``ref`` and annotate ``query``; never raises for method problems.

    Parameters
    ----------
    name
        A registered method.
    ref, query
        Reference (labelled) and query AnnData over the same genes.
    labels_key
        Column of ``ref.obs`` with the labels.
    seed
        Random seed passed to the method.
    **options
        Extra keyword options for the method (epochs, thresholds...).

    Returns
    -------
    MethodResult
        ``status="not installed"`` when a dependency is missing, ``"failed"`` when the method
        raised or returned malformed predictions (``reason`` holds the error), else ``"ok"``.
    """
    from .baselines._common import validate_predictions

    try:
        spec = get(name)
        ok, why = available(name)
    except Exception as exc:
        return MethodResult(name, None, 0.0, "failed", f"{type(exc).__name__}: {exc}")
    if not ok:
        logger.info("%s: not installed: %s", name, why)
        return MethodResult(name, None, 0.0, "not installed", why)
    start = time.perf_counter()
    try:
        pred = spec.func(ref, query, labels_key=labels_key, seed=seed, **options)
        wall = time.perf_counter() - start
        validate_predictions(pred, query)
    except Exception as exc:
        wall = time.perf_counter() - start
        reason = f"{type(exc).__name__}: {exc}"
        logger.warning("%s failed after %.1f s: %s", name, wall, reason)
        return MethodResult(name, None, wall, "failed", reason)
    extra = dict(pred.attrs.get("extra", {})) if isinstance(pred.attrs, dict) else {}
    return MethodResult(name, pred, wall, "ok", "", extra)
