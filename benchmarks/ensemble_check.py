"""Would a deep ensemble calibrate better under shift? Measured on cached CLI models (issue 12).

Averages the calibrated p(y|x) of the models ``cli_calibration.py`` trained for one protocol
at several seeds (a deep ensemble of independently seeded networks, Lakshminarayanan 2017) and
prints accuracy and ECE on the query's known cells: each member alone and the ensemble, with
the cell's own label and with the label rules of ``pyclams.ood.labels`` (``auto``,
``neighbourhood``). Inference only; the models and queries come from the ``-o`` folder of
``cli_calibration.py`` (``models/<protocol>_s<seed>``, ``data/<protocol>_query.h5ad``).

    .venv/bin/python benchmarks/ensemble_check.py --dir RUN_DIR --protocols P1 P2 P3 P5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np

from pyclams import CLAMS
from pyclams.metrics import ece
from pyclams.nn.inference import logits_and_embedding
from pyclams.ood.labels import cell_labels
from pyclams.ood.neighbours import feature_pcs, nearest_neighbours


def member_probabilities(model_dir: Path, query: ad.AnnData):
    """Calibrated p(y|x) of one model on ``query``, its classes and its feature matrix."""
    model = CLAMS.load(model_dir, device="cpu")
    feats, _ = model.space.transform(query, layer=None)
    logits, _ = logits_and_embedding(model.net, feats, batch_size=1024, device=model.device)
    return model.calibrator.probabilities(logits), np.asarray(model.classes), feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="the -o folder of cli_calibration.py")
    ap.add_argument("--protocols", nargs="+", default=["P1", "P2", "P3", "P5"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    print("| protocol | probabilities | label rule | ID accuracy | ECE |")
    print("|---|---|---|---|---|")
    for name in args.protocols:
        query = ad.read_h5ad(args.dir / "data" / f"{name}_query.h5ad")
        truth = query.obs["cell_type"].astype(str).to_numpy()
        members = [member_probabilities(args.dir / "models" / f"{name}_s{s}", query)
                   for s in args.seeds]
        classes, feats = members[0][1], members[0][2]
        if any(list(m[1]) != list(classes) for m in members):
            raise SystemExit(f"{name}: the seed models have different classes")
        known = np.isin(truth, classes)
        neighbours = nearest_neighbours(feature_pcs(feats), 10)
        sets = [(f"seed {s} alone", m[0]) for s, m in zip(args.seeds, members, strict=True)]
        sets.append((f"ensemble of {len(members)}", np.mean([m[0] for m in members], axis=0)))
        for tag, probs in sets:
            for rule in ("cell", "auto", "neighbourhood"):
                if rule == "cell":
                    label, conf = probs.argmax(1), probs.max(1)
                else:
                    label, conf, _ = cell_labels(probs, neighbours, rule)
                correct = classes[label] == truth
                print(f"| {name} | {tag} | {rule} | {correct[known].mean():.3f} | "
                      f"{ece(conf[known], correct[known]):.3f} |")


if __name__ == "__main__":
    main()
