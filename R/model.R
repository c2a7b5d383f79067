# clams_model objects: a model directory (model.safetensors + config.json, the format of the
# Python package) plus its parsed metadata; the Python model is loaded on demand and cached.

#' Train a CLAMS model on a labelled reference
#'
#' Trains the energy-based classifier of pyclams on the cells of `object` and saves it as a
#' model directory (`model.safetensors` + `config.json`, the format of the Python package: a
#' model trained here works in Python and vice versa).
#'
#' @param object A Seurat object, a SingleCellExperiment or a genes x cells matrix (sparse
#'   `dgCMatrix` preferred) of raw counts or log-normalised values.
#' @param labels.by Cell types: a column of the meta data (`colData` for a
#'   SingleCellExperiment), or `"ident"` for a Seurat object's identities; for a matrix, a
#'   vector with one label per cell. Cells with `NA` labels are left out.
#' @param assay Seurat assay (default: the default assay).
#' @param layer Layer (Seurat v5) or slot (v4) with the data: `"counts"` (raw counts; the
#'   default) or `"data"` (log-normalised values). For a SingleCellExperiment `"counts"` and
#'   `"data"` mean the assays `counts` and `logcounts`; any other name is used as is.
#' @param batch.by Optional meta data column with batches (batch-aware gene selection).
#' @param path Directory to write the model to (default: a new temporary directory; use
#'   [SaveCLAMS()] to keep it).
#' @param overwrite Replace a model already in `path`.
#' @param device `"auto"` (a CUDA GPU when torch sees one), `"cpu"` or `"cuda"`.
#' @param seed Seed of the split, initialisation and sampler (a CPU run is repeatable).
#' @param verbose Show progress.
#' @param .options Training settings from [clams_options()].
#' @param ... Not used.
#' @return A `clams_model`: a list with `path`, `config` (the parsed `config.json`),
#'   `classes`, `class.counts`, `genes`, `model.id`, `preset` and `pyclams.version`.
#' @seealso [RunCLAMS()], [LoadCLAMS()], [SaveCLAMS()], [clams_options()]
#' @examples
#' \dontrun{
#' ref <- subset(SeuratObject::pbmc_small, idents = c("0", "1"))
#' model <- TrainCLAMS(ref, labels.by = "RNA_snn_res.1")
#' model
#' SaveCLAMS(model, "pbmc_small_model")
#' }
#' @export
TrainCLAMS <- function(object, labels.by, ...) {
  UseMethod("TrainCLAMS")
}

#' @rdname TrainCLAMS
#' @export
TrainCLAMS.Seurat <- function(object, labels.by, assay = NULL, layer = "counts",
                              batch.by = NULL, path = NULL, overwrite = FALSE,
                              device = "auto", seed = 0, verbose = TRUE,
                              .options = clams_options(), ...) {
  .check_dots(...)
  labels <- .seurat_column(object, labels.by, "labels.by")
  batches <- if (!is.null(batch.by)) .seurat_column(object, batch.by, "batch.by")
  m <- .seurat_matrix(object, assay, layer)
  .train(m, labels, batches, layer = layer, path = path, overwrite = overwrite,
         device = device, seed = seed, verbose = verbose, .options = .options)
}

#' @rdname TrainCLAMS
#' @export
TrainCLAMS.SingleCellExperiment <- function(object, labels.by, layer = "counts",
                                            batch.by = NULL, path = NULL, overwrite = FALSE,
                                            device = "auto", seed = 0, verbose = TRUE,
                                            .options = clams_options(), ...) {
  .check_dots(...)
  labels <- .coldata_column(object, labels.by, "labels.by")
  batches <- if (!is.null(batch.by)) .coldata_column(object, batch.by, "batch.by")
  m <- .sce_matrix(object, layer)
  .train(m, labels, batches, layer = layer, path = path, overwrite = overwrite,
         device = device, seed = seed, verbose = verbose, .options = .options)
}

#' @rdname TrainCLAMS
#' @export
TrainCLAMS.default <- function(object, labels.by, layer = "counts", batch.by = NULL,
                               path = NULL, overwrite = FALSE, device = "auto", seed = 0,
                               verbose = TRUE, .options = clams_options(), ...) {
  .check_dots(...)
  if (!is.matrix(object) && !methods::is(object, "Matrix")) {
    cli::cli_abort("{.fn TrainCLAMS} takes a Seurat object, a SingleCellExperiment or a genes x cells matrix, not {.cls {class(object)}}.",
                   class = "pyclams_input_error", call = NULL)
  }
  if (missing(labels.by) || is.null(labels.by) || length(labels.by) != ncol(object)) {
    cli::cli_abort("For a matrix, {.arg labels.by} must be a vector with one label per cell (column): {ncol(object)} values.",
                   class = "pyclams_input_error", call = NULL)
  }
  if (!is.null(batch.by) && length(batch.by) != ncol(object)) {
    cli::cli_abort("For a matrix, {.arg batch.by} must have one value per cell.",
                   class = "pyclams_input_error", call = NULL)
  }
  .train(object, labels.by, batch.by, layer = layer, path = path, overwrite = overwrite,
         device = device, seed = seed, verbose = verbose, .options = .options)
}

.check_dots <- function(...) {
  if (...length()) {
    nm <- names(list(...))
    nm <- if (is.null(nm)) rep("", ...length()) else nm
    nm[!nzchar(nm)] <- "<unnamed>"
    cli::cli_abort("Unknown {qty(length(nm))}argument{?s} {.arg {nm}}.", class = "pyclams_input_error",
                   call = NULL)
  }
}

.seurat_column <- function(object, column, what) {
  if (is.null(column) || (is.character(column) && length(column) == 1L && !nzchar(column))) {
    cli::cli_abort(c("{.arg {what}} is required: name a column of the reference's meta.data or {.val ident}.",
                     i = "Columns: {.val {colnames(object[[]])}}."),
                   class = "pyclams_input_error", call = NULL)
  }
  .check_string(column, what)
  if (identical(column, "ident")) return(as.character(SeuratObject::Idents(object)))
  meta <- object[[]]
  if (!column %in% colnames(meta)) {
    cli::cli_abort(c("{.arg {what}} = {.val {column}} is not a column of the meta.data.",
                     i = "Columns: {.val {colnames(meta)}} (or {.val ident})."),
                   class = "pyclams_input_error", call = NULL)
  }
  v <- meta[[column]]
  out <- as.character(v)
  names(out) <- rownames(meta)
  out[colnames(object)]
}

.coldata_column <- function(object, column, what) {
  .need("SummarizedExperiment")
  cd <- SummarizedExperiment::colData(object)
  if (is.null(column)) {
    cli::cli_abort(c("{.arg {what}} is required: name a column of colData.",
                     i = "Columns: {.val {colnames(cd)}}."),
                   class = "pyclams_input_error", call = NULL)
  }
  .check_string(column, what)
  if (!column %in% colnames(cd)) {
    cli::cli_abort(c("{.arg {what}} = {.val {column}} is not a column of colData.",
                     i = "Columns: {.val {colnames(cd)}}."),
                   class = "pyclams_input_error", call = NULL)
  }
  as.character(cd[[column]])
}

.train <- function(m, labels, batches, layer, path, overwrite, device, seed, verbose,
                   .options) {
  .check_flag(overwrite, "overwrite")
  .check_flag(verbose, "verbose")
  .check_whole(seed, "seed", min = 0)
  .check_string(device, "device")
  opts <- .options_to_py(.options)
  path <- path %||% tempfile("clams_model_")
  .check_string(path, "path")
  path <- normalizePath(path, winslash = "/", mustWork = FALSE)
  obs <- list(labels = labels)
  if (!is.null(batches)) obs$batch <- batches
  adata <- .to_anndata(m, obs)
  if (verbose) {
    cli::cli_inform("Training CLAMS ({opts$preset}) on {sum(!is.na(labels))} cells, {length(unique(stats_na_omit(labels)))} labels.")
  }
  py <- .clams_py()
  fitted <- .py_try(py$bridge$fit_for_r(
    adata, labels_key = "labels", options = opts, path = path,
    is_log = .is_log(layer), batch_key = if (!is.null(batches)) "batch",
    seed = as.integer(seed), device = device, verbose = verbose, overwrite = overwrite),
    what = "Training failed.")
  .new_clams_model(path, py_model = fitted, device = device)
}

stats_na_omit <- function(x) x[!is.na(x)]

.is_log <- function(layer) {
  if (identical(layer, "data") || identical(layer, "logcounts")) TRUE else NULL
}

# ---------------------------------------------------------------------------- clams_model
.read_config <- function(path) {
  file <- file.path(path, "config.json")
  if (!file.exists(file)) {
    cli::cli_abort("{.path {path}} is not a pyclams model directory ({.file config.json} is missing).",
                   class = "pyclams_input_error", call = NULL)
  }
  txt <- paste(readLines(file, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
  # Python writes NaN / Infinity (not JSON): make them null outside of strings
  strings <- gregexpr('"(?:[^"\\\\]|\\\\.)*"', txt, perl = TRUE)
  rest <- regmatches(txt, strings, invert = TRUE)[[1]]
  rest <- gsub("-?Infinity|NaN", "null", rest, perl = TRUE)
  regmatches(txt, strings, invert = TRUE) <- list(rest)
  cfg <- tryCatch(jsonlite::fromJSON(txt, simplifyVector = TRUE, simplifyDataFrame = TRUE),
                  error = function(e) {
                    cli::cli_abort("{.file {file}} is not valid JSON: {conditionMessage(e)}",
                                   class = "pyclams_input_error", call = NULL)
                  })
  if (!identical(cfg$format, "pyclams-model")) {
    cli::cli_abort("{.file {file}} is not a pyclams model configuration.",
                   class = "pyclams_input_error", call = NULL)
  }
  cfg
}

.new_clams_model <- function(path, py_model = NULL, device = "auto") {
  path <- normalizePath(path, winslash = "/", mustWork = TRUE)
  cfg <- .read_config(path)
  classes <- cfg$classes
  counts <- stats::setNames(as.integer(classes$n_cells), classes$name)
  cache <- new.env(parent = emptyenv())
  if (!is.null(py_model)) {
    cache$py <- py_model
    cache$device <- device
  }
  structure(list(path = path, config = cfg, classes = as.character(classes$name),
                 class.counts = counts, genes = as.character(cfg$preprocess$genes),
                 model.id = cfg$model_id %||% NA_character_, preset = cfg$preset,
                 pyclams.version = cfg$pyclams_version, .cache = cache),
            class = "clams_model")
}

# The Python CLAMS object of a clams_model (loaded from its directory; cached per device).
.py_model <- function(model, device = "auto") {
  cache <- model$.cache
  if (!is.environment(cache)) cache <- new.env(parent = emptyenv())
  ok <- !is.null(cache$py) && identical(cache$device, device) &&
    !reticulate::py_is_null_xptr(cache$py)
  if (!ok) {
    if (!dir.exists(model$path)) {
      cli::cli_abort("The model directory {.path {model$path}} no longer exists.",
                     class = "pyclams_input_error", call = NULL)
    }
    py <- .clams_py()
    cache$py <- .py_try(py$pyclams$CLAMS$load(model$path, device = device),
                        what = "Cannot load the model.")
    cache$device <- device
  }
  cache$py
}

#' Load or save a CLAMS model directory
#'
#' `LoadCLAMS()` reads a model directory written by [TrainCLAMS()], [SaveCLAMS()] or the
#' Python package (`CLAMS.save()` / `pyclams train`) and checks it in Python (format
#' version, SHA-256 of the weights). `SaveCLAMS()` copies a model's directory to `path`.
#'
#' @param path Model directory.
#' @param device Device on which the model runs (`"auto"`, `"cpu"`, `"cuda"`).
#' @param model A `clams_model`.
#' @param overwrite Replace a model already in `path`.
#' @param x A `clams_model`.
#' @param ... Not used.
#' @return `LoadCLAMS()`: a `clams_model`. `SaveCLAMS()`: the `clams_model` pointing at
#'   `path` (invisibly).
#' @examples
#' \dontrun{
#' model <- LoadCLAMS("my_model")   # e.g. written by `pyclams train`
#' model
#' q <- RunCLAMS(SeuratObject::pbmc_small, model = model)
#' }
#' @export
LoadCLAMS <- function(path, device = "auto") {
  .check_string(path, "path")
  .check_string(device, "device")
  if (!dir.exists(path)) {
    cli::cli_abort("{.path {path}} is not a directory: a model is a directory with {.file model.safetensors} and {.file config.json}.",
                   class = "pyclams_input_error", call = NULL)
  }
  model <- .new_clams_model(path)
  .py_model(model, device)
  model
}

#' @rdname LoadCLAMS
#' @export
SaveCLAMS <- function(model, path, overwrite = FALSE) {
  if (!inherits(model, "clams_model")) {
    cli::cli_abort("{.arg model} must be a {.cls clams_model}, not {.cls {class(model)}}.",
                   class = "pyclams_input_error", call = NULL)
  }
  .check_string(path, "path")
  .check_flag(overwrite, "overwrite")
  dest <- normalizePath(path, winslash = "/", mustWork = FALSE)
  if (identical(dest, model$path)) return(invisible(model))
  if (file.exists(dest) && !dir.exists(dest)) {
    cli::cli_abort("{.path {path}} exists and is not a directory.",
                   class = "pyclams_input_error", call = NULL)
  }
  if (file.exists(file.path(dest, "config.json")) && !overwrite) {
    cli::cli_abort("{.path {path}} already holds a model; pass {.code overwrite = TRUE} to replace it.",
                   class = "pyclams_input_error", call = NULL)
  }
  dir.create(dest, recursive = TRUE, showWarnings = FALSE)
  files <- c("model.safetensors", "config.json")  # weights first, config last (as Python)
  for (f in files) {
    src <- file.path(model$path, f)
    if (!file.exists(src)) {
      cli::cli_abort("{.path {model$path}} is incomplete: {.file {f}} is missing.",
                     class = "pyclams_input_error", call = NULL)
    }
    if (!file.copy(src, file.path(dest, f), overwrite = TRUE, copy.date = TRUE) ||
        !identical(unname(tools::md5sum(src)), unname(tools::md5sum(file.path(dest, f))))) {
      cli::cli_abort("Copying {.file {f}} to {.path {dest}} failed.", call = NULL)
    }
  }
  out <- .new_clams_model(dest)
  if (is.environment(model$.cache) && !is.null(model$.cache$py)) {
    out$.cache$py <- model$.cache$py
    out$.cache$device <- model$.cache$device
  }
  invisible(out)
}

#' @rdname LoadCLAMS
#' @export
print.clams_model <- function(x, ...) {
  cfg <- x$config
  n_genes <- length(x$genes)
  cat("<clams_model> CLAMS model ", x$model.id, " (preset ", x$preset, ", pyclams ",
      x$pyclams.version, ")\n", sep = "")
  cat("  path:   ", x$path, "\n", sep = "")
  integ <- cfg$integration
  cat("  genes:  ", n_genes, " (input: ", cfg$preprocess$input_kind %||% "?", ")",
      if (length(integ)) paste0("; integrated with ", integ$method, " (tied to its query)"),
      "\n", sep = "")
  counts <- x$class.counts
  cat("  labels: ", length(counts), " classes, ", sum(counts), " reference cells\n", sep = "")
  w <- max(nchar(names(counts)))
  for (k in seq_along(counts)) {
    cat("    ", formatC(names(counts)[k], width = -w), "  ", counts[k], "\n", sep = "")
  }
  m <- cfg$metrics
  num <- function(v) if (is.null(v) || !is.numeric(v) || is.na(v)) "NA" else format(round(v, 3), nsmall = 3)
  cat("  held-out accuracy ", num(m$test_accuracy), ", ECE ", num(m$test_ece),
      ", temperature ", num(cfg$calibration$temperature),
      if (isTRUE(m$diverged)) ", DIVERGED" else "", "\n", sep = "")
  n_cal <- cfg$calibration$n_scores %||% NA
  fdr <- formals(RunCLAMS.Seurat)$ood.fdr
  cat("  OOD:    conformal p-values of log p(x) against ", n_cal,
      " held-out reference cells; Benjamini-Hochberg at FDR ", fdr,
      " by default (RunCLAMS(ood.fdr = ))\n", sep = "")
  if (is.numeric(n_cal) && !is.na(n_cal) && 1 / (n_cal + 1) > fdr) {
    cat("          (too few calibration cells: no cell can be flagged at FDR ", fdr, ")\n",
        sep = "")
  }
  invisible(x)
}
