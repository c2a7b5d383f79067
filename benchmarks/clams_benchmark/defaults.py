"""Default settings of the benchmark (constants only, cheap to import for the CLI).

They are sized so that the whole default run (every experiment, every protocol) fits in about
an hour on a shared 2-core CPU with ``OMP_NUM_THREADS=1``; see :data:`DEFAULT_PLAN_NOTE`.
"""

from __future__ import annotations

EXPERIMENTS = ("annotation", "loco", "ablation", "generation")
ANNOTATION_PROTOCOLS = ("P1", "P2", "P3", "P5")
#: the leave-one-class-out protocol (a family of folds)
LOCO = "L1"
ALL_PROTOCOLS = (*ANNOTATION_PROTOCOLS, LOCO)
#: bound on the training epochs of every energy-based run (annotation, L1, generation)
DEFAULT_EPOCHS = 8
#: epochs of each ablation variant
ABLATION_EPOCHS = 4
#: energy-based methods cheap enough for five seeds
FAST_EBMS = ("resnet", "clams")
FAST_EBM_SEEDS = 5
#: seeds of the other energy-based methods (SGLD at every step: 3-4x the cost of CLAMS)
SLOW_EBM_SEEDS = 1
#: seeds of the baselines (mostly deterministic; Seurat alone takes ~10 min on P1 + P2)
BASELINE_SEEDS = 1
LOCO_METHODS = ("clams", "knn_ingest")
LOCO_DATASETS = ("pbmc3k", "kang")
ABLATION_PROTOCOLS = ("P1", "P2")
ABLATION_SEEDS = 1
GENERATION_PROTOCOL = "P2"
#: options of baselines in the benchmark (scANVI: shorter training, one thread)
BASELINE_OPTIONS: dict[str, dict] = {
    "scanvi": {"n_threads": 1, "scvi_epochs": 50, "scanvi_epochs": 20, "query_epochs": 20},
}

DEFAULT_PLAN_NOTE = (
    "Defaults sized for one hour on a shared 2-core CPU (OMP_NUM_THREADS=1), from smoke runs "
    "there (seconds per training epoch, P3 to P2: resnet 0.5-1.0, hdge about the same, clams "
    "0.8-2.6, vera about 2x clams, jem 2.4-8; Seurat about 10 min on P1 + P2, scANVI about "
    f"2.5 min): every energy-based run is bounded to {DEFAULT_EPOCHS} epochs "
    f"({ABLATION_EPOCHS} in the ablation grid); {FAST_EBM_SEEDS} seeds for "
    f"{' and '.join(FAST_EBMS)}, {SLOW_EBM_SEEDS} seed for the other energy-based models "
    f"(jem, vera, hdge, hdge_jem) and {BASELINE_SEEDS} seed for the baselines; L1 with "
    f"{' and '.join(LOCO_METHODS)} at one seed; the ablation grid (16 variants) on "
    f"{' and '.join(ABLATION_PROTOCOLS)} at {ABLATION_SEEDS} seed; generation on "
    f"{GENERATION_PROTOCOL}; scANVI trains 50 + 20 + 20 epochs. Estimated time of the "
    "default run on an otherwise idle 2-core machine: about 50 min (annotation 31: baselines "
    "14, energy-based models 17; L1 7; ablation 9; generation and figures 2); other jobs on "
    "the machine slow it down proportionally. Rerunning the same command resumes from the "
    "cache.")
