"""The bundled demo data: sorted Zheng B/CD4/CD8 reference, pbmc3k query (see files/README.md).

The demo run itself (train, annotate, evaluate, figures) is :func:`pyclams.demo.run_demo`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import anndata as ad

LABELS_KEY = "cell_type"
DEMO_FILES = {"reference": "demo_reference.h5ad", "query": "demo_query.h5ad"}


def demo_path(which: str) -> Path:
    """Path of a bundled demo file: ``which`` is ``"reference"`` or ``"query"``.

    The R package's ``clams_demo_data()`` reads the files from here.
    """
    if which not in DEMO_FILES:
        raise ValueError(f"which must be one of {sorted(DEMO_FILES)}, not {which!r}")
    return Path(str(files("pyclams.data") / "files" / DEMO_FILES[which]))


def demo_reference() -> ad.AnnData:
    """800 FACS-sorted PBMC (B, CD4 T, CD8 T; Zheng et al. 2017), raw counts."""
    return ad.read_h5ad(demo_path("reference"))


def demo_query() -> ad.AnnData:
    """2,638 pbmc3k cells with the Seurat tutorial labels, raw counts."""
    return ad.read_h5ad(demo_path("query"))
