"""The bundled demo data: sorted Zheng B/CD4/CD8 reference, pbmc3k query (see files/README.md).

The demo run itself (train, annotate, evaluate, figures) is :func:`pyclams.demo.run_demo`.
"""

from __future__ import annotations

from importlib.resources import files

import anndata as ad

LABELS_KEY = "cell_type"


def demo_reference() -> ad.AnnData:
    """800 FACS-sorted PBMC (B, CD4 T, CD8 T; Zheng et al. 2017), raw counts."""
    return ad.read_h5ad(str(files("pyclams.data") / "files" / "demo_reference.h5ad"))


def demo_query() -> ad.AnnData:
    """2,638 pbmc3k cells with the Seurat tutorial labels, raw counts."""
    return ad.read_h5ad(str(files("pyclams.data") / "files" / "demo_query.h5ad"))
