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
  why <- .config_inconsistency(cfg)
  if (!is.null(why)) {
    .input_error("{.file {file}}: {why}; the model directory is inconsistent (was {.file config.json} edited?).")
  }
  cfg
}

# What in a config.json contradicts the rest of it, or NULL: the classes and genes R shows
# against the network's outputs and inputs, unique names, a positive temperature. (Python
# checks them against the weights too, at load: pyclams.io.check_consistency.)
.config_inconsistency <- function(cfg) {
  classes <- cfg$classes$name
  genes <- cfg$preprocess$genes
  net <- cfg$network
  temp <- cfg$calibration$temperature
  n_out <- net$n_classes
  n_in <- net$n_input
  if (!is.character(classes) || anyNA(classes) || anyDuplicated(classes)) {
    "class names must be unique strings"
  } else if (anyDuplicated(genes)) {
    "gene names are not unique"
  } else if (!is.null(n_out) && !identical(as.numeric(n_out), as.numeric(length(classes)))) {
    sprintf("%d classes but the network has %s outputs", length(classes), format(n_out))
  } else if (is.null(cfg$integration) && !is.null(n_in) &&
             !identical(as.numeric(n_in), as.numeric(length(genes)))) {
    sprintf("%d genes but the network has %s inputs", length(genes), format(n_in))
  } else if (!is.null(cfg$calibration) &&
             !(is.numeric(temp) && length(temp) == 1L && is.finite(temp) && temp > 0)) {
    sprintf("calibration temperature must be a positive number, not %s",
            if (is.null(temp)) "null" else format(temp))
  }
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
                        what = "Cannot load the model")
    cache$device <- device
  }
  cache$py
}

#' Load or save a CLAMS model directory
#'
#' `LoadCLAMS()` reads a model directory written by [TrainCLAMS()], [SaveCLAMS()] or the
#' Python package (`CLAMS.save()` / `pyclams train`) and checks it in Python (format
#' version, SHA-256 of the weights, and that `config.json` agrees with them: an edited list
#' of classes or genes, or a temperature that is not positive, is refused). `SaveCLAMS()`
#' copies a model's directory to `path`: into a temporary directory beside it, renamed into
#' place only when complete (an error leaves a previous model at `path` intact and nothing
#' half-written), with the permissions of the user's umask.
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
  if (!dir.exists(model$path)) {
    .input_error("The model directory {.path {model$path}} no longer exists.")
  }
  .check_model_target(dest, overwrite)
  .copy_model_dir(model$path, dest)
  out <- .new_clams_model(dest)
  if (is.environment(model$.cache) && !is.null(model$.cache$py)) {
    out$.cache$py <- model$.cache$py
    out$.cache$device <- model$.cache$device
  }
  invisible(out)
}

# Whether a model can be written to `path` (checked before any training or copying), by
# Python's rule (pyclams.io.check_model_target): not a file, not a non-empty directory that
# holds no model, a model only with `overwrite`, and a place where something can be created.
.check_model_target <- function(path, overwrite = FALSE) {
  .py_try(.clams_py()$io$check_model_target(path, overwrite = overwrite))
  invisible(path)
}

# The files of a model directory, in the order they are written (weights first).
.model_files <- c("model.safetensors", "config.json")

# Copy the model directory `src` to `dest` as Python writes one (pyclams.io.write_model_dir):
# into a temporary directory beside `dest`, renamed into place only when complete, so that an
# error leaves any model at `dest` as it was and nothing half-written; the files get the
# user's umask (not the source's mode).
.copy_model_dir <- function(src, dest) {
  parent <- dirname(dest)
  fail <- function(why) {
    .input_error("Cannot write the model to {.path {dest}}: {why}; nothing was changed there.")
  }
  tmp <- tempfile(paste0(".", basename(dest), ".tmp-"), tmpdir = parent)
  on.exit(unlink(tmp, recursive = TRUE), add = TRUE)
  dir.create(parent, recursive = TRUE, showWarnings = FALSE)
  if (!dir.create(tmp, showWarnings = FALSE)) fail(paste("cannot create a directory in", parent))
  for (f in .model_files) {
    from <- file.path(src, f)
    to <- file.path(tmp, f)
    ok <- file.exists(from) && !dir.exists(from) && file.copy(from, to) &&
      identical(unname(tools::md5sum(from)), unname(tools::md5sum(to)))
    if (!ok) fail(sprintf("copying %s of %s failed", f, src))
    Sys.chmod(to, "666", use_umask = TRUE)
  }
  Sys.chmod(tmp, "777", use_umask = TRUE)
  rename <- function(from, to) suppressWarnings(file.rename(from, to))
  if (!dir.exists(dest)) {
    if (!rename(tmp, dest)) fail("cannot rename the copy into place")
    return(invisible(dest))
  }
  old <- tempfile(paste0(".", basename(dest), ".old-"), tmpdir = parent)
  if (!rename(dest, old)) fail("cannot move the previous model aside")
  if (!rename(tmp, dest)) {
    rename(old, dest)
    fail("cannot rename the copy into place")
  }
  unlink(old, recursive = TRUE)
  invisible(dest)
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
  cat("  OOD:    log p(x) against ", n_cal, " held-out reference cells, aligned to the ",
      "query's bulk; Benjamini-Hochberg at FDR ", fdr, " by default (RunCLAMS(ood.fdr = ))\n",
      sep = "")
  if (is.numeric(n_cal) && !is.na(n_cal) && 1 / (n_cal + 1) > fdr) {
    cat("          (too few calibration cells: no cell can be flagged at FDR ", fdr, ")\n",
        sep = "")
  }
  invisible(x)
}
