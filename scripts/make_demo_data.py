"""Build the bundled demo data from the shared datasets (run once; output is committed).

Reference: Zheng et al. 2017 FACS-sorted B / CD4 T / CD8 T cells (800 cells, as shipped in the
R package garnett, MIT). Query: 10x Genomics pbmc3k with the Seurat tutorial labels (2638 cells,
counts from PyPI desc 2.1.1, labels from clustifyr, MIT); Naive and Memory CD4 T merged.
Both are trimmed to the same ~3,000 genes: the reference's 2,000 and the query's 1,000 most
variable genes plus the 500 most expressed ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scanpy as sc

# the shared protocols belong to the benchmark (benchmarks/clams_benchmark, not installed)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from clams_benchmark.protocols import pbmc_sorted_to_3k  # noqa: E402


def top_variable(adata, n):
    tmp = adata.copy()
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(tmp, n_top_genes=n, flavor="seurat")
    return set(tmp.var_names[tmp.var["highly_variable"]])


def main(data_dir: str, out_dir: str) -> None:
    proto = pbmc_sorted_to_3k(data_dir)
    ref, query = proto.ref, proto.query
    mean = np.asarray(query.X.mean(0)).ravel() + np.asarray(ref.X.mean(0)).ravel()
    expressed = set(query.var_names[np.argsort(-mean)[:500]])
    genes = top_variable(ref, 2000) | top_variable(query, 1000) | expressed
    keep = [g for g in ref.var_names if g in genes]
    out = Path(out_dir)
    for name, a in (("demo_reference", ref), ("demo_query", query)):
        b = a[:, keep].copy()
        b.obs = b.obs[["cell_type"]].copy()
        b.var = b.var.iloc[:, :0].copy()
        b.X = b.X.astype(np.float32)
        b.X.eliminate_zeros()
        b.uns = {"source": "see pyclams/data/files/README.md"}
        b.write_h5ad(out / f"{name}.h5ad", compression="gzip")
        print(name, b.shape)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
