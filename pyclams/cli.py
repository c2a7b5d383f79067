"""Command line: pyclams train | annotate | evaluate | demo | info.

Exit status 0 on success, 2 on bad input (one line on stderr, no traceback). ``pyclams
train`` launched by torchrun trains data-parallel (:mod:`pyclams.training.distributed`).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from ._files import os_error_text
from ._logging import logger
from ._threads import thread_limit
from ._version import __version__
from .ebm.losses import PRESETS
from .errors import PyClamsInputError
from .ood.options import CALIBRATIONS, LABEL_MODES, OOD_METHODS, OODOptions
from .training.distributed import BACKENDS, Launch


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value
    return parse


def _share(*, open_ends: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = 0 < value < 1 if open_ends else 0 <= value <= 1
        if not ok:
            raise argparse.ArgumentTypeError(
                f"must be in {'(0, 1)' if open_ends else '[0, 1]'}, not {value}")
        return value
    return parse


def _check_input(path: str) -> Path:
    """``path`` if it names an existing .h5ad or .rds file (else a one-line error)."""
    p = Path(path)
    if not p.exists():
        raise PyClamsInputError(f"{path}: no such file")
    if p.suffix.lower() not in (".h5ad", ".rds"):
        raise PyClamsInputError(f"{path}: expected an .h5ad or .rds file")
    if p.is_dir():
        raise PyClamsInputError(f"{path} is a directory, not an .h5ad file")
    return p


def _read_h5ad(path: str, *, assay: str | None = None, layer: str = "counts"):
    """Read an .h5ad file, or a Seurat object saved as .rds (needs pyclams[r] and R)."""
    from ._h5ad_read import read_h5ad
    p = _check_input(path)
    if p.suffix.lower() == ".rds":
        from . import r_bridge
        return r_bridge.seurat_to_anndata(r_bridge.read_rds(p), assay=assay, layer=layer)
    return read_h5ad(p)


def _check_output_file(path: str, suffix: str) -> None:
    """Refuse an output that cannot be written, before any work is done."""
    out = Path(path)
    if out.is_dir():
        raise PyClamsInputError(f"-o {path} is a directory; give a {suffix} file name")
    if out.suffix.lower() != suffix:
        raise PyClamsInputError(f"-o {path}: the output must be a {suffix} file")


def _is_rds(path: str) -> bool:
    return Path(path).suffix.lower() == ".rds"


def cmd_train(args: argparse.Namespace) -> int:
    # under torchrun (WORLD_SIZE > 1) this joins the process group and trains data-parallel
    from .training.distributed import torchrun_group
    with torchrun_group(args.device, args.dist_backend) as run:
        if not run.main:  # rank 0 logs, reports and saves
            logger.setLevel(logging.WARNING)
        return _train(args, run)


def _train(args: argparse.Namespace, run: Launch) -> int:
    from .io import check_model_target
    from .model import CLAMS
    # before any training; only rank 0 writes the model
    run.on_main(lambda: check_model_target(args.output, overwrite=args.overwrite))
    ref = _read_h5ad(args.reference, assay=args.assay)
    query = None
    if args.integrate == "harmony":
        if not args.query:
            raise PyClamsInputError("--integrate harmony needs --query Q.h5ad")
        query = _read_h5ad(args.query, assay=args.assay)
    model = CLAMS(preset=args.preset, n_top_genes=args.n_top_genes)
    model.fit(ref, labels_key=args.labels_key, layer=args.layer, is_log=args.is_log,
              log_base=args.log_base, batch_key=args.batch_key, integrate=args.integrate, query=query,
              max_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
              device=run.device, verbose=run.main and not args.quiet)
    if not run.main:
        return 0
    model.save(args.output, overwrite=args.overwrite)
    m = model.metrics_
    print(f"trained {args.preset}: {len(model.classes)} classes, "
          f"{model.net.config['n_input']} features, best epoch {m.get('best_epoch')}, "
          f"diverged {m.get('diverged')}, held-out accuracy {m.get('test_accuracy', float('nan')):.3f}, "
          f"ECE {m.get('test_ece', float('nan')):.3f} -> {args.output}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from .h5ad_annotate import annotate_h5ad
    from .model import CLAMS
    model = CLAMS.load(args.model, device=args.device)
    if _is_rds(args.query) or _is_rds(args.output):
        if not (_is_rds(args.query) and _is_rds(args.output)):
            raise PyClamsInputError("an .rds query is annotated into an .rds output (and an "
                                    ".h5ad query into .h5ad): give both as .rds")
        from .r_bridge import annotate_rds
        df = annotate_rds(args.query, args.output, model, assay=args.assay,
                          layer=args.layer or "counts", key_added=args.key_added,
                          overwrite=args.overwrite, is_log=args.is_log,
                          log_base=args.log_base, ood_fdr=args.ood_fdr,
                          ood_method=args.ood_method, calibration=args.calibration,
                          n_neighbors=args.n_neighbors, label_mode=args.label_mode,
                          min_gene_overlap=args.min_gene_overlap)
        print(df["label"].value_counts().to_string())
        print(f"-> {args.output}")
        return 0
    _check_output_file(args.output, ".h5ad")
    _check_input(args.query)
    # X is read a block of rows at a time; the output is a copy of the query with the new
    # fields written into it (pyclams.h5ad_annotate)
    query = annotate_h5ad(args.query, args.output, model, key_added=args.key_added,
                          layer=args.layer, is_log=args.is_log, log_base=args.log_base,
                          ood_fdr=args.ood_fdr, ood_method=args.ood_method,
                          calibration=args.calibration, n_neighbors=args.n_neighbors,
                          label_mode=args.label_mode, min_gene_overlap=args.min_gene_overlap,
                          overwrite=args.overwrite)
    counts = query.obs[f"{args.key_added}_label"].value_counts()
    print(counts.to_string())
    print(f"-> {args.output}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .result import evaluate_annotated

    adata = _read_h5ad(args.annotated)
    ood = [c.strip() for c in args.ood_classes.split(",")] if args.ood_classes else None
    report = evaluate_annotated(adata, truth_key=args.truth_key, key_added=args.key_added,
                                ood_classes=ood)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for k, v in report.items():
            print(f"{k:>24}  {v:.4f}" if isinstance(v, float) else f"{k:>24}  {v}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    table = run_demo(args.output, seed=args.seed, device=args.device, verbose=not args.quiet)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"figures and model in {args.output}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .model import CLAMS
    m = CLAMS.load(args.model, device="cpu")
    info = {"model_id": m.model_id, "preset": m.preset, "classes": m.class_counts,
            "n_genes": len(m.preprocessor.genes), "input": m.preprocessor.input_kind,
            "integration": None if m.space.kind == "genes" else m.space.kind,
            "temperature": round(m.temperature, 4), "metrics": m.metrics_,
            "diverged": m.history_.diverged, "best_epoch": m.history_.best_epoch}
    print(json.dumps(info, indent=1, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyclams", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pyclams {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p, *, device=True):
        p.add_argument("--quiet", action="store_true", help="no progress bar or log")
        if device:
            p.add_argument("--device", default="auto", help="auto | cpu | cuda")

    def threads(p):
        p.add_argument("--threads", type=_whole(1), default=None,
                       help="CPU threads for torch (default: OMP_NUM_THREADS, else the cores "
                            "this process may run on; never more than those cores)")

    def bool_log(p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--is-log", dest="is_log", action="store_const", const=True,
                       help="input is already log-normalised")
        g.add_argument("--is-counts", dest="is_log", action="store_const", const=False,
                       help="input holds (possibly non-integer) counts")
        p.add_argument("--log-base", choices=["e", "2", "10"], default=None,
                       help="base of log-normalised input (default: detected)")

    p = sub.add_parser("train", help="train a model on a labelled reference")
    p.add_argument("reference", help="reference .h5ad (or a Seurat object in .rds)")
    p.add_argument("--labels-key", required=True, help="obs column with cell types")
    p.add_argument("-o", "--output", required=True, help="model directory to write")
    p.add_argument("--preset", default="clams", choices=sorted(PRESETS))
    p.add_argument("--epochs", type=_whole(1), default=None, help="maximum epochs")
    p.add_argument("--batch-size", type=_whole(2), default=None)
    p.add_argument("--seed", type=_whole(0), default=0)
    p.add_argument("--layer", default=None, help="layer with counts (default X)")
    p.add_argument("--batch-key", default=None, help="obs column with batches")
    p.add_argument("--n-top-genes", type=_whole(1), default=2000)
    p.add_argument("--integrate", choices=["harmony"], default=None)
    p.add_argument("--query", default=None, help="query .h5ad (for --integrate harmony)")
    p.add_argument("--overwrite", action="store_true", help="replace a model in OUTPUT")
    p.add_argument("--assay", default=None, help="Seurat assay of an .rds input (default: "
                   "the object's default assay)")
    p.add_argument("--dist-backend", choices=BACKENDS, default="auto",
                   help="under torchrun: torch.distributed backend (auto: nccl on CUDA, gloo "
                        "on the CPU)")
    bool_log(p)
    threads(p)
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("annotate", help="annotate a query with a trained model")
    p.add_argument("query", help="query .h5ad, or a Seurat object in .rds")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("-o", "--output", required=True,
                   help="annotated .h5ad to write (.rds for an .rds query: meta.data columns, "
                        "a reduction and misc entry named KEY_ADDED)")
    p.add_argument("--ood-fdr", type=_share(open_ends=True), default=0.05)
    p.add_argument("--ood-method", choices=OOD_METHODS, default=OODOptions.method)
    p.add_argument("--calibration", choices=CALIBRATIONS, default=OODOptions.calibration,
                   help="how OOD p-values are calibrated: 'query' (default) against the query's "
                        "own bulk per predicted type, robust to another lab or condition; "
                        "'class'/'pooled' against held-out reference cells alone")
    p.add_argument("--n-neighbors", type=_whole(0), default=OODOptions.n_neighbors,
                   help="query cells each cell's OOD score is averaged over and its type may "
                        "be taken from (0-30; 0: each cell alone)")
    p.add_argument("--label-mode", choices=LABEL_MODES, default=OODOptions.label_mode,
                   help="where types and confidences come from: 'auto' (default) the "
                        "neighbourhood's consensus for types the query's own graph keeps apart, "
                        "the cell's own otherwise; 'neighbourhood' always; 'cell' never")
    p.add_argument("--min-gene-overlap", type=_share(open_ends=False), default=0.5)
    p.add_argument("--key-added", default="clams")
    p.add_argument("--layer", default=None,
                   help="layer (h5ad) or Seurat slot/layer (.rds: counts [default] or data)")
    p.add_argument("--assay", default=None, help="Seurat assay of an .rds query")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing KEY_ADDED_* fields of the query (else an error)")
    bool_log(p)
    threads(p)
    common(p)
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("evaluate", help="score an annotated .h5ad against true labels")
    p.add_argument("annotated", help="annotated .h5ad")
    p.add_argument("--truth-key", required=True)
    p.add_argument("--key-added", default="clams")
    p.add_argument("--ood-classes", default=None, help="comma-separated OOD types")
    p.add_argument("--json", action="store_true")
    common(p, device=False)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="train, annotate and evaluate on the bundled data")
    p.add_argument("-o", "--output", default="pyclams_demo")
    p.add_argument("--seed", type=_whole(0), default=0)
    threads(p)
    common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="describe a model directory")
    p.add_argument("model")
    common(p, device=False)
    p.set_defaults(func=cmd_info)

    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad option (one line, status 2)
        return int(done.code or 0)
    if getattr(args, "quiet", False):
        logger.setLevel(logging.WARNING)
    if hasattr(signal, "SIGXFSZ"):
        # past a file-size limit, a write fails with an error (handled: the target is kept)
        # instead of the process being killed half-way
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with thread_limit(getattr(args, "threads", None)):  # train, annotate, demo
            return args.func(args)
    except PyClamsInputError as err:
        print(f"pyclams {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read or write the operating system refused
        where = f" ({err.filename})" if err.filename else ""
        print(f"pyclams {args.command}: error: {os_error_text(err)}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
