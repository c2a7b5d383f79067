"""Command line of the benchmark: ``python benchmarks/run.py --data DIR -o OUT [...]`` (or
``python -m clams_benchmark`` with ``benchmarks/`` as the working directory).

Exit status 0 on success, 2 on bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import warnings

from pyclams.errors import PyClamsInputError

from . import defaults as ex

PROG = "benchmarks/run.py"


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's arguments (defaults in :mod:`clams_benchmark.defaults`)."""
    p = argparse.ArgumentParser(
        prog=PROG, description="Run the benchmark experiments (annotation: Table 2, loco: "
        "Table 3 on protocol L1, ablation: Tables 5/6, generation: Figs. 5/9) and write "
        "results.csv, README.md and figures/ to OUTPUT. Finished runs are cached in "
        "OUTPUT/cache: rerunning resumes.")
    p.add_argument("--data", required=True, help="folder with the shared .h5ad files")
    p.add_argument("-o", "--output", required=True, help="results folder")
    p.add_argument("--protocols", nargs="+", default=list(ex.ALL_PROTOCOLS),
                   help="P1 P2 P3 P5 (annotation) and L1 (leave-one-class-out)")
    p.add_argument("--experiments", nargs="+", default=list(ex.EXPERIMENTS),
                   help=f"any of {' '.join(ex.EXPERIMENTS)}")
    p.add_argument("--methods", nargs="+", default=None,
                   help="annotation methods (default: every registered method except the "
                        "ablation variants)")
    p.add_argument("--loco-methods", nargs="+", default=list(ex.LOCO_METHODS))
    p.add_argument("--seeds", type=int, default=None,
                   help=f"seeds of every energy-based model (default: {ex.FAST_EBM_SEEDS} for "
                        f"{', '.join(ex.FAST_EBMS)}, {ex.SLOW_EBM_SEEDS} for the others)")
    p.add_argument("--baseline-seeds", type=int, default=ex.BASELINE_SEEDS)
    p.add_argument("--epochs", type=int, default=ex.DEFAULT_EPOCHS,
                   help="bound on the training epochs of each energy-based run")
    p.add_argument("--ablation-epochs", type=int, default=ex.ABLATION_EPOCHS)
    p.add_argument("--ablation-protocols", nargs="+", default=list(ex.ABLATION_PROTOCOLS))
    p.add_argument("--ablation-seeds", type=int, default=ex.ABLATION_SEEDS)
    p.add_argument("--generation-protocol", default=ex.GENERATION_PROTOCOL)
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    return p


def full_argv(args: argparse.Namespace) -> list[str]:
    """The full command of ``args`` (every setting spelled out), for the report."""
    argv = ["python", PROG, "--data", str(args.data), "-o", str(args.output),
            "--protocols", *args.protocols, "--experiments", *args.experiments]
    if args.methods:
        argv += ["--methods", *args.methods]
    argv += ["--loco-methods", *args.loco_methods]
    if args.seeds is not None:
        argv += ["--seeds", str(args.seeds)]
    argv += ["--baseline-seeds", str(args.baseline_seeds), "--epochs", str(args.epochs),
             "--ablation-epochs", str(args.ablation_epochs), "--ablation-protocols",
             *args.ablation_protocols, "--ablation-seeds", str(args.ablation_seeds),
             "--generation-protocol", args.generation_protocol, "--device", args.device]
    return argv + (["--no-figures"] if args.no_figures else [])


def run(args: argparse.Namespace) -> int:
    """Run the benchmark experiments and print the accuracy table."""
    from .harness import run_benchmark
    from .report import annotation_tables

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    results, md = run_benchmark(
        args.data, args.output, protocols=args.protocols, experiments=args.experiments,
        methods=args.methods, loco_methods=args.loco_methods, ebm_seeds=args.seeds,
        baseline_seeds=args.baseline_seeds, epochs=args.epochs,
        ablation_epochs=args.ablation_epochs, ablation_protocols=args.ablation_protocols,
        ablation_seeds=args.ablation_seeds, generation_protocol=args.generation_protocol,
        device=args.device, command=shlex.join(full_argv(args)),
        with_figures=not args.no_figures, verbose=not args.quiet)
    counts = results["status"].value_counts().to_dict() if len(results) else {}
    annotation = results[results["experiment"] == "annotation"] if len(results) else results
    if len(annotation):
        print(annotation_tables(annotation, metrics=("accuracy", "auroc_score")))
    print(f"{len(results)} runs ({', '.join(f'{v} {k}' for k, v in counts.items())}) -> {md}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quiet:
        logging.getLogger("pyclams").setLevel(logging.WARNING)
    try:
        return run(args)
    except PyClamsInputError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
