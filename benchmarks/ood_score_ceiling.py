"""How well can a density score computed from the reference alone rank OOD query cells?

For each protocol: pyclams's preprocessing (HVGs, per-gene standardisation with the reference's
mean and sd), 80% of the reference cells fit each score, and the query is scored. No network is
trained: the table bounds what a base measure of that kind gives, and shows how far the
calibrated threshold is from the best one. Columns: AUROC (ID = positive); ``recall_at_id10``:
share of OOD cells below the 10% quantile of the ID cells' scores (the best any threshold could
flag while flagging 10% of ID cells); ``ood_flagged`` / ``id_flagged``: conformal p-values per
predicted class against the other 20% of the reference, Benjamini-Hochberg at 0.05 (as
``annotate``).

    .venv/bin/python benchmarks/ood_score_ceiling.py --data ../shared/data \
        --protocols P1 P2 P3 P5 -o benchmarks/results/ood_score_ceiling
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from clams_benchmark.protocols import load_protocol
from pyclams.data.preprocess import Preprocessor
from pyclams.metrics import auroc, ood_recall_at_id_rate
from pyclams.nn.base_measure import ClassGaussianBase
from pyclams.ood.conformal import benjamini_hochberg, classwise_pvalues


def class_gaussian(x_tr, y_tr, n_classes, sd, n_pcs):
    """pyclams's default base measure (one Gaussian per class on ``n_pcs`` PCs)."""
    base = ClassGaussianBase(x_tr.shape[1], n_classes, n_pcs)
    base.fit(lambda: [(x_tr, y_tr)], feature_scale=sd, shrinkage=0.1)

    @torch.no_grad()
    def score(x):
        """log-density, PC coordinates and most likely class of cells ``x``."""
        t = torch.as_tensor(x)
        per_class = base.class_log_density(t)
        return (torch.logsumexp(per_class, 1).numpy(), base.project(t).numpy(),
                per_class.argmax(1).numpy())
    return score


def gene_diagonal(x_tr, y_tr, n_classes):
    """A Gaussian per class with a diagonal covariance over all model genes."""
    params = []
    for c in range(n_classes):
        xc = x_tr[y_tr == c]
        params.append((xc.mean(0), xc.var(0) + 0.1, np.log(len(xc))))

    def score(x):
        return logsumexp(np.stack([-0.5 * (((x - m) ** 2) / v).sum(1) - 0.5 * np.log(v).sum()
                                   + w for m, v, w in params], 1), 1)
    return score


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--protocols", nargs="+", default=["P1", "P2", "P3", "P5"])
    ap.add_argument("-o", "--out", default="benchmarks/results/ood_score_ceiling")
    args = ap.parse_args()
    rows = []
    for name in args.protocols:
        pr = load_protocol(name, args.data)
        pre, logx = Preprocessor.fit_transform(pr.ref)
        x = pre.standardise(logx.toarray())
        qlog, missing, _ = pre.log_normalised(pr.query)
        q = pre.standardise(qlog.toarray(), missing)
        cats = pd.Categorical(pr.ref.obs[pr.labels_key].astype(str))
        y, n_classes = cats.codes.astype(np.int64), len(cats.categories)
        perm = np.random.default_rng(0).permutation(len(y))
        tr, cal = perm[: int(0.8 * len(y))], perm[int(0.8 * len(y)):]
        is_id = ~pr.is_ood
        base30 = class_gaussian(x[tr], y[tr], n_classes, pre.sd, 30)
        # the predicted class that groups cells for class-wise calibration: the default
        # class Gaussian's own argmax (no classifier is trained here)
        s_q, z_q, p_q = base30(q)
        s_c, z_c, p_c = base30(x[cal])
        z_t = base30(x[tr])[1]

        scores = {"class Gaussian, 30 PCs (default)": (s_q, s_c)}
        base50 = class_gaussian(x[tr], y[tr], n_classes, pre.sd, 50)
        scores["class Gaussian, 50 PCs"] = (base50(q)[0], base50(x[cal])[0])
        nn = NearestNeighbors(n_neighbors=15).fit(z_t)
        scores["kNN distance (k=15), 30 PCs"] = (-nn.kneighbors(z_q)[0].mean(1),
                                                 -nn.kneighbors(z_c)[0].mean(1))
        lq = np.full((len(q), n_classes), -np.inf)
        lc = np.full((len(cal), n_classes), -np.inf)
        for c in range(n_classes):
            zc = z_t[y[tr] == c]
            gm = GaussianMixture(max(1, min(3, len(zc) // 50)), covariance_type="full",
                                 reg_covar=1e-2, random_state=0).fit(zc)
            lq[:, c] = gm.score_samples(z_q) + np.log(len(zc))
            lc[:, c] = gm.score_samples(z_c) + np.log(len(zc))
        scores["3-component mixture per class, 30 PCs"] = (logsumexp(lq, 1), logsumexp(lc, 1))
        g = gene_diagonal(x[tr], y[tr], n_classes)
        scores["diagonal Gaussian per class, all model genes"] = (g(q), g(x[cal]))
        for score_name, (sq, sc) in scores.items():
            flagged = benjamini_hochberg(classwise_pvalues(sq, p_q, sc, p_c), 0.05)
            rows.append({"protocol": name, "score": score_name,
                         "auroc": auroc(sq, is_id),
                         "recall_at_id10": ood_recall_at_id_rate(sq, is_id, id_rate=0.1),
                         "ood_flagged": float(flagged[~is_id].mean()),
                         "id_flagged": float(flagged[is_id].mean())})
            print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "scores.csv", index=False)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r)
              + " |" for r in df.itertuples(index=False)]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print(df.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
