"""pyclams: energy-based cell-type annotation (CLAMS) with calibrated OOD detection.

The whole API in a few names::

    import pyclams
    model = pyclams.train(ref, labels_key="cell_type")   # a CLAMS model
    pyclams.annotate(query, model)                       # writes obs["clams_label"], ...
    model.save("model_dir"); model = pyclams.load("model_dir")
"""

from __future__ import annotations

import os as _os

# OpenMP threads that wait for work sleep instead of spinning: beside other jobs, spinning
# threads hold the cores the working ones need (a training epoch took 10-30x longer, see
# pyclams._threads). Read when torch's OpenMP runtime loads, so set before torch is imported;
# a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import anndata as _ad  # noqa: E402

from . import metrics, pl
from ._threads import settings
from ._version import __version__
from .errors import ModelFormatError, PyClamsInputError
from .h5ad_annotate import annotate_h5ad
from .model import CLAMS
from .ood.options import OODOptions
from .result import AnnotationResult

__all__ = ["CLAMS", "AnnotationResult", "OODOptions", "train", "annotate", "annotate_h5ad",
           "load", "metrics",
           "pl", "settings", "PyClamsInputError", "ModelFormatError", "__version__"]


def train(adata: _ad.AnnData, *, labels_key: str, preset: str = "clams", **kwargs) -> CLAMS:
    """Train a :class:`CLAMS` model on a labelled reference.

    Keyword arguments go to :meth:`CLAMS.fit` (``layer``, ``is_log``, ``max_epochs``, ``seed``,
    ``device``, ``n_threads``, ...) or, for ``n_top_genes``, ``network``, ``train``, ``sgld`` and
    ``generative``, to the :class:`CLAMS` constructor.
    """
    init_keys = ("n_top_genes", "network", "train", "sgld", "generative")
    init = {k: kwargs.pop(k) for k in init_keys if k in kwargs}
    return CLAMS(preset=preset, **init).fit(adata, labels_key=labels_key, **kwargs)


def annotate(adata: _ad.AnnData, model: CLAMS | str, *, key_added: str = "clams",
             copy: bool = False, **kwargs) -> _ad.AnnData | None:
    """Annotate ``adata`` with ``model`` (a :class:`CLAMS` or a model directory).

    See :meth:`CLAMS.annotate` for the fields written.
    """
    if not isinstance(model, CLAMS):
        model = CLAMS.load(model)
    return model.annotate(adata, key_added=key_added, copy=copy, **kwargs)


def load(path: str, *, device: str = "auto") -> CLAMS:
    """Load a model directory written by :meth:`CLAMS.save`."""
    return CLAMS.load(path, device=device)
