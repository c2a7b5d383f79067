#' Annotate cells with CLAMS and flag unknown cell types
#'
#' Predicts, for every cell, the most probable reference cell type, a calibrated confidence
#' and whether the cell is of a type the reference lacks (out-of-distribution, OOD: conformal
#' p-values of the model's density log p(x) against held-out reference cells, flagged by
#' Benjamini-Hochberg at false discovery rate `ood.fdr`). Either trains a model on
#' `reference` first or uses a trained `model`.
#'
#' Everything is computed before anything is written: on an error (no gene overlap, a bad
#' argument, a Python failure) the error propagates and the object is not changed.
#'
#' For a Seurat object, writes the meta data columns
#' \describe{
#'   \item{`<prefix>_label`}{factor: predicted type; `"unknown"` for cells flagged OOD;}
#'   \item{`<prefix>_label_raw`}{factor: most probable reference type, whatever the OOD call;}
#'   \item{`<prefix>_confidence`}{calibrated (temperature-scaled) max p(y|x);}
#'   \item{`<prefix>_log_px`}{log p(x) up to a constant (higher = more typical);}
#'   \item{`<prefix>_ood_pvalue`}{conformal p-value;}
#'   \item{`<prefix>_is_ood`}{logical: flagged as an unknown type;}
#' }
#' the run's parameters in `Misc(object, "<prefix>")`, a command log entry
#' ([SeuratObject::LogSeuratCommand()]) and, with `reduction = TRUE`, a `DimReduc` named
#' `prefix` holding the network's penultimate-layer embedding (`DimPlot(object, reduction =
#' "clams")`, or `RunUMAP(object, reduction = "clams", dims = 1:d)`). A SingleCellExperiment
#' gets the same columns in `colData`, the embedding in `reducedDim(object, prefix)` and the
#' parameters in `metadata(object)[[prefix]]`. A matrix gives a data frame.
#'
#' Data go to Python as a sparse matrix (the three slots of a `dgCMatrix`); results come back
#' as a data frame and a dense embedding. Seurat v5 assays are read with
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
#' @param assay Seurat assay of `object` (and of `reference`, when it has it); default: the
#'   default assay.
#' @param layer `"counts"` (raw counts; default) or `"data"` (log-normalised values: passed
#'   to Python as `is_log = TRUE`).
#' @param prefix Prefix of the columns, the reduction and the `Misc` entry.
#' @param ood.fdr False discovery rate of the OOD calls, in (0, 1).
#' @param device `"auto"`, `"cpu"` or `"cuda"`.
#' @param seed Seed for training on `reference`.
#' @param verbose Show progress and a summary.
#' @param overwrite Replace existing columns / reduction of the same names (else an error).
#' @param reduction Store the embedding as a `DimReduc` / `reducedDim` named `prefix`.
#' @param .options Training settings ([clams_options()]) when training on `reference`.
#' @param ... Further settings of the OOD call: `ood.method` (`"conformal"` (default) or
#'   `"max_prob"`: flag cells whose confidence is below `min.confidence`), `calibration`
#'   (`"class"`: p-values against held-out cells of the predicted class, or `"pooled"`),
#'   `min.confidence` (0.5) and `min.gene.overlap` (0.5: the share of the model's genes the
#'   query must have).
#' @return The object with the annotation (a data frame for a matrix, with the embedding in
#'   `attr(, "embedding")` and the parameters in `attr(, "clams")`).
#' @seealso [TrainCLAMS()], [LoadCLAMS()], [clams_options()]
#' @examples
#' \dontrun{
#' library(Seurat)
#' ref <- subset(pbmc_small, idents = c("0", "1"))
#' q <- RunCLAMS(pbmc_small, reference = ref, labels.by = "RNA_snn_res.1")
#' table(q$clams_label, q$clams_is_ood)
#' DimPlot(q, reduction = "clams", group.by = "clams_label")
#' }
#' @export
RunCLAMS <- function(object, ...) {
  UseMethod("RunCLAMS")
}

#' @rdname RunCLAMS
#' @export
RunCLAMS.Seurat <- function(object, reference = NULL, model = NULL, labels.by = NULL,
                            assay = NULL, layer = "counts", prefix = "clams", ood.fdr = 0.05,
                            device = "auto", seed = 0, verbose = TRUE, overwrite = FALSE,
                            reduction = TRUE, .options = clams_options(), ...) {
  extra <- .check_run_args(prefix, ood.fdr, device, seed, verbose, overwrite, reduction, ...)
  assay <- assay %||% SeuratObject::DefaultAssay(object)
  cols <- .result_names(prefix)
  .check_clash(colnames(object[[]]), cols,
               reduction && prefix %in% SeuratObject::Reductions(object), prefix, overwrite,
               where = "meta.data")
  counts <- .seurat_matrix(object, assay, layer)
  mdl <- .resolve_model(reference, model, labels.by, assay, layer, device, seed, verbose,
                        .options)
  res <- .infer(mdl, counts, layer, ood.fdr, extra, device, verbose)
  # ---- everything is computed: write
  meta <- .result_frame(res, prefix, colnames(object))
  info <- .run_info(res, mdl, reference, labels.by, assay, layer, ood.fdr, extra, device, seed)
  object <- SeuratObject::AddMetaData(object, metadata = meta)
  if (reduction) {
    object[[prefix]] <- SeuratObject::CreateDimReducObject(
      embeddings = .embedding(res, prefix, colnames(object)), key = .key(prefix),
      assay = assay, misc = list(model.id = res$model_id))
  }
  object@misc[[prefix]] <- info
  # LogSeuratCommand() records the arguments of this frame: log the model's path, and the
  # reduction's name (it names the command "RunCLAMS.<assay>.<reduction>")
  model <- mdl$path
  reduction <- if (reduction) prefix
  object <- SeuratObject::LogSeuratCommand(object = object)
  object
}

#' @rdname RunCLAMS
#' @export
RunCLAMS.SingleCellExperiment <- function(object, reference = NULL, model = NULL,
                                          labels.by = NULL, assay = NULL, layer = "counts",
                                          prefix = "clams", ood.fdr = 0.05, device = "auto",
                                          seed = 0, verbose = TRUE, overwrite = FALSE,
                                          reduction = TRUE, .options = clams_options(), ...) {
  .need("SingleCellExperiment")
  .need("S4Vectors")
  extra <- .check_run_args(prefix, ood.fdr, device, seed, verbose, overwrite, reduction, ...)
  cols <- .result_names(prefix)
  have_red <- prefix %in% SingleCellExperiment::reducedDimNames(object)
  .check_clash(colnames(SummarizedExperiment::colData(object)), cols, reduction && have_red,
               prefix, overwrite, where = "colData")
  counts <- .sce_matrix(object, layer)
  mdl <- .resolve_model(reference, model, labels.by, assay, layer, device, seed, verbose,
                        .options)
  res <- .infer(mdl, counts, layer, ood.fdr, extra, device, verbose)
  cells <- colnames(object)
  meta <- .result_frame(res, prefix, cells)
  info <- .run_info(res, mdl, reference, labels.by, NULL, layer, ood.fdr, extra, device, seed)
  cd <- SummarizedExperiment::colData(object)
  for (col in names(meta)) cd[[col]] <- meta[[col]]
  SummarizedExperiment::colData(object) <- cd
  if (reduction) {
    SingleCellExperiment::reducedDim(object, prefix) <- .embedding(res, prefix, cells)
  }
  md <- S4Vectors::metadata(object)
  md[[prefix]] <- info
  S4Vectors::metadata(object) <- md
  object
}

#' @rdname RunCLAMS
#' @export
RunCLAMS.default <- function(object, reference = NULL, model = NULL, labels.by = NULL,
                             layer = "counts", ood.fdr = 0.05, device = "auto", seed = 0,
                             verbose = TRUE, .options = clams_options(), ...) {
  if (!is.matrix(object) && !methods::is(object, "Matrix") &&
      !methods::is(object, "DelayedArray")) {
    cli::cli_abort("{.fn RunCLAMS} takes a Seurat object, a SingleCellExperiment or a genes x cells matrix, not {.cls {class(object)}}.",
                   class = "pyclams_input_error", call = NULL)
  }
  extra <- .check_run_args("clams", ood.fdr, device, seed, verbose, FALSE, FALSE, ...)
  .check_dimnames(object, "The query matrix")
  mdl <- .resolve_model(reference, model, labels.by, NULL, layer, device, seed, verbose,
                        .options)
  res <- .infer(mdl, object, layer, ood.fdr, extra, device, verbose)
  df <- res$table
  df <- df[colnames(object), , drop = FALSE]
  df$label <- factor(df$label, levels = c(res$classes, "unknown"))
  df$label_raw <- factor(df$label_raw, levels = res$classes)
  attr(df, "embedding") <- .embedding(res, "clams", colnames(object))
  attr(df, "clams") <- .run_info(res, mdl, reference, labels.by, NULL, layer, ood.fdr, extra,
                                 device, seed)
  df
}

# ---------------------------------------------------------------------------- helpers
.result_names <- function(prefix) {
  paste0(prefix, "_", c("label", "label_raw", "confidence", "log_px", "ood_pvalue", "is_ood"))
}

.key <- function(prefix) paste0(gsub("[^[:alnum:]]", "", prefix), "_")

.check_run_args <- function(prefix, ood.fdr, device, seed, verbose, overwrite, reduction, ...) {
  .check_string(prefix, "prefix")
  if (!grepl("^[A-Za-z][A-Za-z0-9._]*$", prefix)) {
    cli::cli_abort("{.arg prefix} must start with a letter and hold only letters, digits, '.' and '_', not {.val {prefix}}.",
                   class = "pyclams_input_error", call = NULL)
  }
  .check_number(ood.fdr, "ood.fdr", lower = 0, upper = 1, lower.open = TRUE, upper.open = TRUE)
  .check_string(device, "device")
  .check_whole(seed, "seed", min = 0)
  .check_flag(verbose, "verbose")
  .check_flag(overwrite, "overwrite")
  .check_flag(reduction, "reduction")
  extra <- list(...)
  known <- c("ood.method", "calibration", "min.confidence", "min.gene.overlap")
  if (length(extra)) {
    nm <- names(extra) %||% rep("", length(extra))
    bad <- nm[!nm %in% known]
    if (length(bad)) {
      bad[!nzchar(bad)] <- "<unnamed>"
      cli::cli_abort(c("Unknown {qty(length(bad))}argument{?s} {.arg {bad}}.",
                       i = "Further settings are {.arg {known}}."),
                     class = "pyclams_input_error", call = NULL)
    }
  }
  .check_choice(extra$ood.method, "ood.method", c("conformal", "max_prob"))
  .check_choice(extra$calibration, "calibration", c("class", "pooled"))
  .check_number(extra$min.confidence, "min.confidence", lower = 0, upper = 1)
  .check_number(extra$min.gene.overlap, "min.gene.overlap", lower = 0, upper = 1)
  utils::modifyList(list(ood.method = "conformal", calibration = "class",
                         min.confidence = 0.5, min.gene.overlap = 0.5), extra)
}

.check_clash <- function(existing, cols, red_exists, prefix, overwrite, where) {
  clash <- intersect(cols, existing)
  if (overwrite) return(invisible())
  if (length(clash)) {
    cli::cli_abort(c("The {where} already has {qty(length(clash))}column{?s} {.val {clash}}.",
                     i = "Pass {.code overwrite = TRUE} to replace them, or choose another {.arg prefix}."),
                   class = "pyclams_input_error", call = NULL)
  }
  if (red_exists) {
    cli::cli_abort(c("A reduction named {.val {prefix}} exists already.",
                     i = "Pass {.code overwrite = TRUE}, {.code reduction = FALSE} or another {.arg prefix}."),
                   class = "pyclams_input_error", call = NULL)
  }
  invisible()
}

.resolve_model <- function(reference, model, labels.by, assay, layer, device, seed, verbose,
                           .options) {
  if (!is.null(reference) && !is.null(model)) {
    cli::cli_abort("Give either {.arg reference} (to train a model) or {.arg model}, not both.",
                   class = "pyclams_input_error", call = NULL)
  }
  if (is.null(reference) && is.null(model)) {
    cli::cli_abort(c("Give a {.arg model} ({.fn TrainCLAMS}, {.fn LoadCLAMS} or a model directory) or a {.arg reference} with {.arg labels.by}.",
                     i = "E.g. {.code RunCLAMS(query, reference = ref, labels.by = \"cell_type\")}."),
                   class = "pyclams_input_error", call = NULL)
  }
  if (!is.null(model)) {
    if (is.character(model)) return(LoadCLAMS(model, device = device))
    if (!inherits(model, "clams_model")) {
      cli::cli_abort("{.arg model} must be a {.cls clams_model} or a model directory, not {.cls {class(model)}}.",
                     class = "pyclams_input_error", call = NULL)
    }
    .py_model(model, device)
    return(model)
  }
  if (inherits(reference, "Seurat")) {
    if (is.null(labels.by)) {
      cli::cli_abort(c("{.arg labels.by} is required with {.arg reference}: name a column of the reference's meta.data (or {.val ident}).",
                       i = "Columns: {.val {colnames(reference[[]])}}."),
                     class = "pyclams_input_error", call = NULL)
    }
    ref_assay <- if (!is.null(assay) && assay %in% SeuratObject::Assays(reference)) assay
    return(TrainCLAMS(reference, labels.by = labels.by, assay = ref_assay, layer = layer,
                      device = device, seed = seed, verbose = verbose, .options = .options))
  }
  if (is.null(labels.by)) {
    cli::cli_abort("{.arg labels.by} is required with {.arg reference}.",
                   class = "pyclams_input_error", call = NULL)
  }
  TrainCLAMS(reference, labels.by = labels.by, layer = layer, device = device, seed = seed,
             verbose = verbose, .options = .options)
}

.infer <- function(model, counts, layer, ood.fdr, extra, device, verbose) {
  adata <- .to_anndata(counts)
  py <- .clams_py()
  pm <- .py_model(model, device)
  res <- .py_try(py$bridge$infer_for_r(
    pm, adata, is_log = .is_log(layer), ood_fdr = ood.fdr, ood_method = extra$ood.method,
    calibration = extra$calibration, min_confidence = extra$min.confidence,
    min_gene_overlap = extra$min.gene.overlap, verbose = verbose, as_frame = FALSE),
    what = "Annotation failed.")
  res$table <- as.data.frame(lapply(res$table, as.vector), stringsAsFactors = FALSE,
                             check.names = FALSE, row.names = as.character(unlist(res$cells)))
  res$embedding <- as.matrix(res$embedding)
  if (is.null(dim(res$embedding)) || nrow(res$embedding) != nrow(res$table)) {
    res$embedding <- matrix(res$embedding, nrow = nrow(res$table))
  }
  res$classes <- as.character(unlist(res$classes))
  n_cal <- res$n_calibration
  if (identical(extra$ood.method, "conformal") && 1 / (n_cal + 1) > ood.fdr) {
    cli::cli_warn(c(
      "Only {n_cal} held-out reference cell{?s} calibrate the OOD p-values: rank p-values cannot go below 1/{n_cal + 1} = {signif(1 / (n_cal + 1), 3)}, above {.arg ood.fdr} = {ood.fdr}, so the OOD calls rest on a normal-tail extrapolation of log p(x); treat them as approximate.",
      i = "A larger reference (20% of it is held out: {ceiling(5 * (1 / ood.fdr - 1))} cells reach {.arg ood.fdr} by rank alone) gives exact conformal calls."
    ), class = "pyclams_calibration_warning")
  }
  if (verbose) {
    n_ood <- sum(res$table$is_ood)
    cli::cli_inform("CLAMS annotated {nrow(res$table)} cells ({round(100 * res$gene_overlap)}% of the model's genes found): {n_ood} flagged OOD (unknown).")
  }
  res
}

.result_frame <- function(res, prefix, cells) {
  t <- res$table
  if (!setequal(rownames(t), cells)) {
    cli::cli_abort("Internal error: the results do not match the cells.", call = NULL)
  }
  t <- t[cells, , drop = FALSE]
  out <- data.frame(
    factor(t$label, levels = c(res$classes, "unknown")),
    factor(t$label_raw, levels = res$classes),
    as.numeric(t$confidence), as.numeric(t$log_px), as.numeric(t$ood_pvalue),
    as.logical(t$is_ood), row.names = cells, stringsAsFactors = FALSE)
  names(out) <- .result_names(prefix)
  out
}

.embedding <- function(res, prefix, cells) {
  e <- res$embedding
  rownames(e) <- rownames(res$table)
  e <- e[cells, , drop = FALSE]
  colnames(e) <- paste0(.key(prefix), seq_len(ncol(e)))
  e
}

.run_info <- function(res, mdl, reference, labels.by, assay, layer, ood.fdr, extra, device,
                      seed) {
  list(model.id = res$model_id, model.path = mdl$path,
       pyclams.version = res$pyclams_version, r.version = as.character(utils::packageVersion("pyclams")),
       preset = mdl$preset, classes = res$classes, trained.here = !is.null(reference),
       labels.by = if (!is.null(reference)) labels.by, gene.overlap = res$gene_overlap,
       n.calibration = res$n_calibration, diverged = res$diverged, assay = assay,
       layer = layer, ood.fdr = ood.fdr, ood.method = extra$ood.method,
       calibration = extra$calibration, min.confidence = extra$min.confidence,
       min.gene.overlap = extra$min.gene.overlap, device = device, seed = seed,
       n.ood = sum(res$table$is_ood), time = Sys.time())
}
