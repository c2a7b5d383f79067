# clams_model objects: a model directory (model.safetensors + config.json, the format of the
# Python package) plus its parsed metadata; the Python model is loaded on demand and cached.

# ---------------------------------------------------------------------------- config.json
# The one reader of a model's config.json (its schema: the docstring of pyclams/io.py). Python
# writes strict JSON; files written before it may hold NaN / Infinity, read as null. Checks
# the fields R uses: format, classes (name, n_cells), preprocess$genes, model_id, preset and
# pyclams_version.
.read_config <- function(path) {
  file <- file.path(path, "config.json")
  if (!file.exists(file)) {
    .input_error("{.path {path}} is not a pyclams model directory ({.file config.json} is missing).")
  }
  txt <- paste(readLines(file, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
  strings <- gregexpr('"(?:[^"\\\\]|\\\\.)*"', txt, perl = TRUE)
  rest <- regmatches(txt, strings, invert = TRUE)[[1]]
  if (any(grepl("NaN|Infinity", rest))) {   # an older file: non-finite numbers outside strings
    regmatches(txt, strings, invert = TRUE) <- list(gsub("-?Infinity|NaN", "null", rest))
  }
  cfg <- tryCatch(jsonlite::fromJSON(txt, simplifyVector = TRUE, simplifyDataFrame = TRUE),
                  error = function(e) {
                    .input_error("{.file {file}} is not valid JSON: {conditionMessage(e)}")
                  })
  if (!is.list(cfg) || !identical(cfg$format, "pyclams-model")) {
    .input_error("{.file {file}} is not a pyclams model configuration.")
  }
  classes <- cfg$classes
  bad <- c(
    classes = !is.data.frame(classes) || !all(c("name", "n_cells") %in% names(classes)) ||
      !nrow(classes),
    `preprocess$genes` = !is.character(cfg$preprocess$genes) || !length(cfg$preprocess$genes),
    model_id = !is.character(cfg$model_id) || length(cfg$model_id) != 1L,
    preset = !is.character(cfg$preset) || length(cfg$preset) != 1L,
    pyclams_version = !is.character(cfg$pyclams_version) || length(cfg$pyclams_version) != 1L)
  if (any(bad)) {
    missing <- names(bad)[bad]
    .input_error("{.file {file}} has no valid {qty(length(missing))}field{?s} {.field {missing}}.")
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
                 model.id = cfg$model_id, preset = cfg$preset,
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
      .input_error("The model directory {.path {model$path}} no longer exists.")
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
    .input_error("{.path {path}} is not a directory: a model is a directory with {.file model.safetensors} and {.file config.json}.")
  }
  model <- .new_clams_model(path)
  .py_model(model, device)
  model
}

#' @rdname LoadCLAMS
#' @export
SaveCLAMS <- function(model, path, overwrite = FALSE) {
  if (!inherits(model, "clams_model")) {
    .input_error("{.arg model} must be a {.cls clams_model}, not {.cls {class(model)}}.")
  }
  .check_string(path, "path")
  .check_flag(overwrite, "overwrite")
  dest <- normalizePath(path, winslash = "/", mustWork = FALSE)
  if (identical(dest, model$path)) return(invisible(model))
  if (file.exists(dest) && !dir.exists(dest)) {
    .input_error("{.path {path}} exists and is not a directory.")
  }
  if (file.exists(file.path(dest, "config.json")) && !overwrite) {
    .input_error("{.path {path}} already holds a model; pass {.code overwrite = TRUE} to replace it.")
  }
  dir.create(dest, recursive = TRUE, showWarnings = FALSE)
  files <- c("model.safetensors", "config.json")  # weights first, config last (as Python)
  for (f in files) {
    src <- file.path(model$path, f)
    if (!file.exists(src)) {
      .input_error("{.path {model$path}} is incomplete: {.file {f}} is missing.")
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
  fdr <- formals(.ood_options)$fdr
  cat("  OOD:    conformal p-values of log p(x) against ", n_cal,
      " held-out reference cells; Benjamini-Hochberg at FDR ", fdr,
      " by default (RunCLAMS(ood.fdr = ))\n", sep = "")
  if (is.numeric(n_cal) && !is.na(n_cal) && 1 / (n_cal + 1) > fdr) {
    cat("          (too few calibration cells: no cell can be flagged at FDR ", fdr, ")\n",
        sep = "")
  }
  invisible(x)
}
