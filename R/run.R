# RunCLAMS: the generic and its engine, RunCLAMS.default (a genes x cells matrix in, a data frame
# of results with attributes out). The Seurat and SingleCellExperiment methods (seurat.R, sce.R)
# extract a matrix, call the engine and write its result back.

#' Annotate cells with CLAMS and flag unknown cell types
#'
#' Predicts, for every cell, its reference cell type, a confidence and whether the cell is of a
#' type the reference lacks (out-of-distribution, OOD). By default each cell is read with its 10
#' nearest query cells: for types that the query's own neighbourhood graph keeps apart its type
#' is their consensus and its confidence the share of them called the same (`label.mode =
#' "auto"`), otherwise the network's own call; its OOD p-value compares the model's density
#' log p(x), averaged over them and aligned per predicted type to the query's own bulk, with
#' held-out reference cells; cells are
#' flagged by Benjamini-Hochberg at false discovery rate `ood.fdr` (see the README for what this
#' assumes). Either trains a model on `reference` first or uses a trained `model`.
#'
#' Everything is computed before anything is written: on an error (no gene overlap, a bad
#' argument, a Python failure) the error propagates and the object is not changed. A user's
#' error is one line of class `pyclams_input_error` (Python's own messages included, in R's
#' terms); the query is checked first: cells, gene and cell names, and genes as rows (a
#' transposed, cells x genes, matrix is said to be one).
#'
#' The per-cell fields are those of the Python package (`pyclams.result.RESULT_FIELDS`):
#' \describe{
#'   \item{`label`}{factor: predicted type; `"unknown"` for cells flagged OOD;}
#'   \item{`label_raw`}{factor: the type whatever the OOD call (the cell's own most probable
#'     type, or its neighbourhood's consensus where `label.mode` allows);}
#'   \item{`confidence`}{temperature-scaled max p(y|x) of a cell labelled alone; the share of
#'     the neighbourhood called the same type for a cell labelled by its neighbourhood; for a
#'     cell that keeps its own type where the query's graph does not back it (a type that
#'     absorbs another, or a cell between two types), its type's p(y|x) averaged over its
#'     neighbourhood;}
#'   \item{`log_px`}{the cell's own log p(x) up to a constant (higher = more typical);}
#'   \item{`ood_pvalue`}{p-value of the OOD test;}
#'   \item{`is_ood`}{logical: flagged as an unknown type.}
#' }
#' A Seurat object gets them as meta data columns `<prefix>_<field>` (`prefix` is what Python
#' calls `key_added`: `CLAMS.annotate(adata, key_added = "clams")` writes the same names to
#' `adata.obs`), the run's parameters in `Misc(object, "<prefix>")` (with what the OOD test
#' did: `calibration.used`, `query.shift`, and the types reported as `suspect.types` or
#' calibrated on a small group of known-looking cells, `known.mode.types`; see the README's
#' section on what the unknown call guarantees; and the types whose cells kept their own call
#' because the query's neighbourhood graph mixes another type into them, `absorbing.types`), a
#' command log entry
#' (`object@commands`, named `RunCLAMS.<assay>.<prefix>`) and, with `reduction = TRUE`, a
#' `DimReduc` named `prefix` holding the network's penultimate-layer embedding
#' (`DimPlot(object, reduction = "clams")`, or `RunUMAP(object, reduction = "clams", dims =
#' 1:d)`). A SingleCellExperiment gets the same columns in `colData`, the embedding in
#' `reducedDim(object, prefix)` and the parameters in `metadata(object)[[prefix]]`. A matrix
#' gives a data frame: one row per cell, the fields (without prefix) and one probability
#' column `p_<class>` per class, with the embedding in `attr(, "embedding")` and the run's
#' parameters in `attr(, "clams")`. The Seurat and SingleCellExperiment methods compute with
#' the matrix method and write its result.
#'
#' Data go to Python as a sparse matrix (the three slots of a `dgCMatrix`); results come back
#' as plain columns and a dense embedding. Seurat v5 assays are read with
#' `SeuratObject::LayerData()` (join split layers first); v4 assays with
#' `GetAssayData(slot = layer)`. Only Seurat v4 is tested.
#'
#' @param object Query cells: a Seurat object, a SingleCellExperiment or a genes x cells
#'   matrix (raw counts or log-normalised; genes matched by name).
#' @param reference Labelled reference (same kinds as `object`) to train a model on; needs
#'   `labels.by`. The model is saved in a temporary directory (its path is in the run's
#'   parameters); use [TrainCLAMS()] and [SaveCLAMS()] to keep one.
#' @param model A `clams_model` ([TrainCLAMS()], [LoadCLAMS()]) or the path of a model
#'   directory (also one written by the Python package).
#' @param labels.by Column of `reference`'s meta data with the cell types (or `"ident"`).
#' @param assay Seurat assay of `object` (and of a Seurat `reference`, when it has it);
#'   default: the default assay. For a matrix or a SingleCellExperiment only the Seurat
#'   `reference`'s assay.
#' @param layer `"counts"` (raw counts; default) or `"data"` (log-normalised values: passed
#'   to Python as `is_log = TRUE`). Counts must be whole numbers: round non-integer counts
#'   (e.g. ambient-corrected ones) first, with `round()`.
#' @param prefix Prefix of the columns, the reduction and the `Misc` entry (Python's
#'   `key_added`).
#' @param ood.fdr False discovery rate of the OOD calls, in (0, 1).
#' @param device `"auto"`, `"cpu"` or `"cuda"`.
#' @param seed Seed for training on `reference`.
#' @param verbose Show progress and a summary.
#' @param overwrite Replace existing columns / reduction of the same names (else an error).
#' @param reduction Store the embedding as a `DimReduc` / `reducedDim` named `prefix`.
#' @param .options Training settings ([clams_options()]) when training on `reference`.
#' @param ... Further settings of the OOD call: `ood.method` (`"conformal"` (default) or
#'   `"max_prob"`: flag cells whose confidence is below `min.confidence`), `calibration`
#'   (`"query"` (default): p-values relative to the query's own bulk per predicted type,
#'   robust to another lab or condition; `"class"`: against held-out reference cells of the
#'   predicted class alone, or `"pooled"`),
#'   `min.confidence` (0.5), `n.neighbors` (10: the query cells each cell's OOD score is
#'   averaged over and its type may be taken from; 0: each cell alone), `label.mode`
#'   (`"auto"` (default): the neighbourhood's consensus for types the query's graph keeps
#'   apart, the cell's own call otherwise; `"neighbourhood"`: always; `"cell"`: never) and
#'   `min.gene.overlap` (0.5: the share of the model's genes the query must have).
#' @return The object with the annotation (a data frame for a matrix).
#' @seealso [TrainCLAMS()], [LoadCLAMS()], [clams_options()]
#' @examples
#' \dontrun{
#' library(Seurat)
#' ref <- subset(pbmc_small, idents = c("0", "1"))
#' q <- RunCLAMS(pbmc_small, reference = ref, labels.by = "RNA_snn_res.1")
#' table(q$clams_label, q$clams_is_ood)
#' DimPlot(q, reduction = "clams", group.by = "clams_label")
#' }
#' @order 1
#' @export
RunCLAMS <- function(object, ...) {
  UseMethod("RunCLAMS")
}

#' @rdname RunCLAMS
#' @order 4
#' @export
RunCLAMS.default <- function(object, reference = NULL, model = NULL, labels.by = NULL,
                             assay = NULL, layer = "counts", ood.fdr = 0.05, device = "auto",
                             seed = 0, verbose = TRUE, .options = clams_options(), ...) {
  if (!is.matrix(object) && !methods::is(object, "Matrix") &&
      !methods::is(object, "DelayedArray")) {
    .input_error("{.fn RunCLAMS} takes a Seurat object, a SingleCellExperiment or a genes x cells matrix, not {.cls {class(object)}}.")
  }
  settings <- .run_settings(layer, ood.fdr, device, seed, verbose, assay, ...)
  .check_matrix(object, "The query matrix", genes = rownames(reference),
                genes.of = "the reference")   # before any training
  mdl <- .resolve_model(reference, model, labels.by, assay, layer, device, seed, verbose,
                        .options)
  .check_matrix(object, "The query matrix", genes = mdl$genes)
  adata <- .to_anndata(object)
  plain <- .py_try(.clams_py()$bridge$infer_for_r(
    .py_model(mdl, device), adata, is_log = .is_log(layer), ood = unclass(settings$ood),
    min_gene_overlap = settings$min.gene.overlap, verbose = verbose),
    what = "Annotation failed")
  res <- .as_results(plain, settings, model.path = mdl$path,
                     trained.here = !is.null(reference), labels.by = labels.by)
  if (!identical(rownames(res), colnames(object))) {
    cli::cli_abort("Internal error: the results do not match the query's cells.", call = NULL)
  }
  .report_run(res, plain, settings)
  res
}

# ---------------------------------------------------------------------------- helpers
.resolve_model <- function(reference, model, labels.by, assay, layer, device, seed, verbose,
                           .options) {
  if (!is.null(reference) && !is.null(model)) {
    .input_error("Give either {.arg reference} (to train a model) or {.arg model}, not both.")
  }
  if (is.null(reference) && is.null(model)) {
    .input_error(c("Give a {.arg model} ({.fn TrainCLAMS}, {.fn LoadCLAMS} or a model directory) or a {.arg reference} with {.arg labels.by}.",
                   i = "E.g. {.code RunCLAMS(query, reference = ref, labels.by = \"cell_type\")}."))
  }
  if (!is.null(model)) {
    if (is.character(model)) return(LoadCLAMS(model, device = device))
    if (!inherits(model, "clams_model")) {
      .input_error("{.arg model} must be a {.cls clams_model} or a model directory, not {.cls {class(model)}}.")
    }
    .py_model(model, device)
    return(model)
  }
  if (is.null(labels.by)) {
    hint <- if (inherits(reference, "Seurat")) "Columns: {.val {colnames(reference[[]])}}."
    .input_error(c("{.arg labels.by} is required with {.arg reference}: name a column of the reference's meta data (or {.val ident}).",
                   i = hint))
  }
  if (inherits(reference, "Seurat")) {
    ref_assay <- if (!is.null(assay) && assay %in% SeuratObject::Assays(reference)) assay
    return(TrainCLAMS(reference, labels.by = labels.by, assay = ref_assay, layer = layer,
                      device = device, seed = seed, verbose = verbose, .options = .options))
  }
  TrainCLAMS(reference, labels.by = labels.by, layer = layer, device = device, seed = seed,
             verbose = verbose, .options = .options)
}

# Python's plain result (pyclams.r_bridge.plain_result) as the engine's data frame: one row
# per cell, the fields (factors with Python's levels, numbers, logicals) and the probability
# columns, with attributes `embedding` (cells x d), `fields` and, given the run's `settings`,
# `clams` (the run's parameters: what Misc / metadata hold). Also called from Python
# (pyclams.r_bridge.annotate_rds) so that both paths write the same things.
.as_results <- function(plain, settings = NULL, model.path = NA_character_,
                        trained.here = FALSE, labels.by = NULL) {
  cells <- as.character(unlist(plain$cells))
  classes <- as.character(unlist(plain$classes))
  fields <- as.character(unlist(plain$fields))
  cols <- lapply(stats::setNames(fields, fields), function(f) {
    v <- as.vector(unlist(plain[[f]]))
    levels <- plain$levels[[f]]
    if (is.null(levels)) v else factor(as.character(v), levels = as.character(unlist(levels)))
  })
  probs <- matrix(as.numeric(plain$probabilities), nrow = length(cells))
  colnames(probs) <- as.character(unlist(plain$probability_columns))
  df <- data.frame(cols, probs, row.names = cells, check.names = FALSE,
                   stringsAsFactors = FALSE)
  emb <- matrix(as.numeric(plain$embedding), nrow = length(cells))
  dimnames(emb) <- list(cells, sprintf("clams_%d", seq_len(ncol(emb))))
  attr(df, "embedding") <- emb
  attr(df, "fields") <- fields
  if (!is.null(settings)) {
    attr(df, "clams") <- .run_info(plain, classes, settings, model.path, trained.here,
                                   labels.by)
  }
  df
}

# The run's parameters (Misc(object, prefix) of a Seurat object); `labels.by` (a column name,
# not a matrix reference's label vector) and `seed` only when the model was trained here.
.run_info <- function(plain, classes, settings, model.path, trained.here, labels.by) {
  info <- plain$info
  ood <- settings$ood
  if (!trained.here || !is.character(labels.by) || length(labels.by) != 1L) labels.by <- NULL
  list(model.id = as.character(info$model_id), model.path = model.path,
       pyclams.version = as.character(info$pyclams_version),
       r.version = as.character(utils::packageVersion("pyclams")),
       preset = as.character(info$preset), classes = classes, trained.here = trained.here,
       labels.by = labels.by,
       gene.overlap = as.numeric(info$gene_overlap),
       n.calibration = as.integer(info$n_calibration), diverged = as.logical(info$diverged),
       assay = settings$assay, layer = settings$layer, ood.fdr = ood$fdr,
       ood.method = ood$method, calibration = ood$calibration,
       min.confidence = ood$min_confidence, n.neighbors = ood$n_neighbors,
       label.mode = ood$label_mode,
       min.gene.overlap = settings$min.gene.overlap,
       device = settings$device, seed = if (trained.here) settings$seed,
       calibration.used = as.character(info$calibration_used %||% ood$calibration),
       query.shift = as.numeric(info$query_shift %||% NA_real_),
       suspect.types = as.character(unlist(info$suspect_classes)),
       known.mode.types = as.character(unlist(info$known_mode_classes)),
       absorbing.types = as.character(unlist(info$graph_absorbing)),
       n.ood = as.integer(plain$n_ood), time = Sys.time())
}

# The warning about too few calibration cells, and the summary line.
.report_run <- function(res, plain, settings) {
  info <- attr(res, "clams")
  fdr <- info$ood.fdr
  n_cal <- info$n.calibration
  if (identical(info$ood.method, "conformal") && 1 / (n_cal + 1) > fdr) {
    cli::cli_warn(c(
      "Only {n_cal} held-out reference cell{?s} calibrate the OOD p-values: rank p-values cannot go below 1/{n_cal + 1} = {signif(1 / (n_cal + 1), 3)}, above {.arg ood.fdr} = {fdr}, so the OOD calls rest on a normal-tail extrapolation of log p(x); treat them as approximate.",
      i = "A larger reference (20% of it is held out: {ceiling(5 * (1 / fdr - 1))} cells reach {.arg ood.fdr} by rank alone) gives exact conformal calls."
    ), class = "pyclams_calibration_warning")
  }
  if (settings$verbose) {
    cli::cli_inform("CLAMS annotated {nrow(res)} cells ({round(100 * info$gene.overlap)}% of the model's genes found): {info$n.ood} flagged OOD ({plain$unknown}).")
  }
  invisible()
}
