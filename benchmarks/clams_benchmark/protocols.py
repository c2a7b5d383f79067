"""The benchmark protocols of ``shared/data/README.md`` as reference/query AnnData pairs.

Every protocol harmonises labels into ``obs["cell_type"]``, keeps the genes shared by reference
and query (Ensembl ids mapped to symbols through ``var["gene_symbol"]``) and records which query
types the reference never saw. The data directory is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np

from pyclams.errors import PyClamsInputError

from .defaults import LOCO

LABELS_KEY = "cell_type"

_PBMC_NAMES = {
    "Naive CD4 T": "CD4 T", "Memory CD4 T": "CD4 T", "CD4 T cells": "CD4 T",
    "CD8 T cells": "CD8 T", "B cells": "B", "CD14+ Monocytes": "CD14+ Mono",
    "FCGR3A+ Monocytes": "FCGR3A+ Mono", "NK cells": "NK", "Dendritic cells": "DC",
    "Megakaryocytes": "Platelet",
}


@dataclass
class Protocol:
    """A reference/query pair with harmonised labels in ``obs["cell_type"]``."""

    name: str
    ref: ad.AnnData
    query: ad.AnnData
    ood_classes: list[str]
    description: str = ""
    labels_key: str = LABELS_KEY
    extra: dict = field(default_factory=dict)

    @property
    def is_ood(self) -> np.ndarray:
        """Boolean mask of query cells whose type is absent from the reference."""
        known = set(self.ref.obs[self.labels_key].astype(str))
        return ~self.query.obs[self.labels_key].astype(str).isin(known).to_numpy()


def _read(data_dir: str | Path, stem: str) -> ad.AnnData:
    path = Path(data_dir) / f"{stem}.h5ad"
    if not path.exists():
        raise PyClamsInputError(f"{path} not found: pass the folder that holds the shared data")
    return ad.read_h5ad(path)


def _relabel(adata: ad.AnnData, mapping: dict[str, str]) -> None:
    adata.obs[LABELS_KEY] = adata.obs[LABELS_KEY].astype(str).replace(mapping).astype("category")


def _symbols_from_ensembl(adata: ad.AnnData) -> ad.AnnData:
    """Rename Ensembl ids to ``var["gene_symbol"]``; drop genes whose symbol repeats."""
    sym = adata.var["gene_symbol"].astype(str)
    keep = ~sym.duplicated(keep=False).to_numpy() & (sym != "nan").to_numpy()
    out = adata[:, keep].copy()
    out.var_names = sym[keep].to_numpy()
    return out


def _shared_genes(ref: ad.AnnData, query: ad.AnnData) -> tuple[ad.AnnData, ad.AnnData]:
    genes = ref.var_names.intersection(query.var_names)
    return ref[:, genes].copy(), query[:, genes].copy()


def pbmc_sorted_to_3k(data_dir: str | Path) -> Protocol:
    """P1: sorted Zheng B/CD4/CD8 reference, pbmc3k query."""
    ref = _read(data_dir, "zheng_sorted_BT_garnett")
    query = _read(data_dir, "pbmc3k_10x_v1")
    _relabel(ref, _PBMC_NAMES)
    _relabel(query, _PBMC_NAMES)
    ref, query = _shared_genes(ref, query)
    return Protocol("P1", ref, query, ["CD14+ Mono", "FCGR3A+ Mono", "NK", "DC", "Platelet"],
                    "Zheng sorted B/CD4/CD8 (10x) -> pbmc3k (10x v1)")


def kang_to_3k_holdout(data_dir: str | Path) -> Protocol:
    """P2: Kang lupus PBMC without NK and DC as reference, pbmc3k query."""
    ref = _symbols_from_ensembl(_read(data_dir, "kang_8types_muscat_se"))
    query = _read(data_dir, "pbmc3k_10x_v1")
    _relabel(ref, _PBMC_NAMES)
    _relabel(query, _PBMC_NAMES)
    ref = ref[~ref.obs[LABELS_KEY].isin(["NK", "DC"]).to_numpy()].copy()
    ref.obs[LABELS_KEY] = ref.obs[LABELS_KEY].cat.remove_unused_categories()
    ref, query = _shared_genes(ref, query)
    return Protocol("P2", ref, query, ["NK", "DC"], "Kang lupus PBMC w/o NK, DC -> pbmc3k")


def pancreas_xin_to_wang(data_dir: str | Path) -> Protocol:
    """P3: Xin islets (log data) as reference, Wang pancreas as query."""
    ref = _read(data_dir, "pancreas_xin_scclassify")
    query = _read(data_dir, "pancreas_wang_scclassify")
    ref, query = _shared_genes(ref, query)
    return Protocol("P3", ref, query, ["ductal", "stellate", "acinar"],
                    "Xin islets -> Wang pancreas (log data)")


def symphony_crosstech(data_dir: str | Path) -> Protocol:
    """P5: 10x 3pv2 + 5p without B cells as reference, 3pv1 as query (log data)."""
    full = _read(data_dir, "pbmc_3tech_symphony")
    batch = full.obs["batch"].astype(str)
    is_b = full.obs[LABELS_KEY].astype(str) == "B"
    ref = full[(batch.isin(["3pv2", "5p"]) & ~is_b).to_numpy()].copy()
    query = full[(batch == "3pv1").to_numpy()].copy()
    # a reference type with a single cell (HSC) cannot be learned or validated: drop the type
    # from both sides so that B stays the only OOD type, as the protocol states
    counts = ref.obs[LABELS_KEY].astype(str).value_counts()
    lone = counts.index[counts < 2].tolist()
    ref = ref[~ref.obs[LABELS_KEY].astype(str).isin(lone).to_numpy()].copy()
    query = query[~query.obs[LABELS_KEY].astype(str).isin(lone).to_numpy()].copy()
    for a in (ref, query):
        a.obs[LABELS_KEY] = a.obs[LABELS_KEY].astype(str).astype("category")
    return Protocol("P5", ref, query, ["B"], "PBMC 3pv2 + 5p w/o B -> 3pv1 (log data)",
                    extra={"dropped_types": lone})


def _loco_pbmc3k(data_dir: str | Path) -> ad.AnnData:
    adata = _read(data_dir, "pbmc3k_10x_v1")
    _relabel(adata, _PBMC_NAMES)
    return adata


def _loco_kang(data_dir: str | Path) -> ad.AnnData:
    adata = _symbols_from_ensembl(_read(data_dir, "kang_8types_muscat_se"))
    _relabel(adata, _PBMC_NAMES)
    return adata


#: L1 datasets: name -> loader of the labelled AnnData (labels harmonised as in P1/P2)
LOCO_DATASETS = {"pbmc3k": _loco_pbmc3k, "kang": _loco_kang}


def load_loco_dataset(name: str, data_dir: str | Path) -> ad.AnnData:
    """An L1 dataset (``"pbmc3k"`` or ``"kang"``) with harmonised labels and only the genes
    detected in at least one cell."""
    if name not in LOCO_DATASETS:
        raise PyClamsInputError(f"unknown L1 dataset {name!r}; choose from {sorted(LOCO_DATASETS)}")
    adata = LOCO_DATASETS[name](data_dir)
    x = adata.X
    detected = np.asarray((x != 0).sum(axis=0)).ravel() > 0
    return adata[:, detected].copy() if not detected.all() else adata


def loco_split(adata: ad.AnnData, held_out: str, *, seed: int = 0, train_fraction: float = 0.8,
               name: str = LOCO) -> Protocol:
    """One L1 fold: class ``held_out`` is OOD, the other classes are split per class.

    The reference holds ``train_fraction`` of every other class's cells (at least one); the
    query holds the remaining cells of those classes (ID) and every cell of ``held_out``.
    """
    labels = adata.obs[LABELS_KEY].astype(str).to_numpy()
    if held_out not in set(labels):
        raise PyClamsInputError(f"{held_out!r} is not a class of the dataset")
    if not 0 < train_fraction < 1:
        raise PyClamsInputError(f"train_fraction must be in (0, 1), not {train_fraction}")
    rng = np.random.default_rng(seed)
    in_ref = np.zeros(len(labels), dtype=bool)
    for c in sorted(set(labels) - {held_out}):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n_ref = min(len(rows) - 1, max(1, int(round(train_fraction * len(rows)))))
        in_ref[rows[:n_ref]] = True
    ref, query = adata[in_ref].copy(), adata[~in_ref].copy()
    for a in (ref, query):
        a.obs[LABELS_KEY] = a.obs[LABELS_KEY].astype(str).astype("category")
    return Protocol(name, ref, query, [held_out],
                    f"leave-one-class-out: {held_out} held out, {train_fraction:.0%} of the "
                    "other classes as reference", extra={"held_out": held_out, "seed": seed})


PROTOCOLS = {
    "P1": pbmc_sorted_to_3k,
    "P2": kang_to_3k_holdout,
    "P3": pancreas_xin_to_wang,
    "P5": symphony_crosstech,
}


def load_protocol(name: str, data_dir: str | Path) -> Protocol:
    """Load protocol ``name`` (P1, P2, P3 or P5) from ``data_dir``.

    L1 is a family of folds, not one pair: see :func:`load_loco_dataset` and
    :func:`loco_split`.
    """
    if name == LOCO:
        raise PyClamsInputError("L1 is a set of leave-one-class-out folds: use "
                                "load_loco_dataset() and loco_split()")
    if name not in PROTOCOLS:
        raise PyClamsInputError(f"unknown protocol {name!r}; choose from {sorted(PROTOCOLS)}")
    return PROTOCOLS[name](data_dir)


def write_protocol(name: str, data_dir: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``ref.h5ad`` and ``query.h5ad`` of a protocol for use with the command line."""
    proto = load_protocol(name, data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref_path, query_path = out / f"{name}_ref.h5ad", out / f"{name}_query.h5ad"
    proto.ref.write_h5ad(ref_path, compression="gzip")
    proto.query.write_h5ad(query_path, compression="gzip")
    return ref_path, query_path
