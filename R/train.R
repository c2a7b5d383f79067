# TrainCLAMS: the generic and the engine (a genes x cells matrix and one label per cell). The
# Seurat and SingleCellExperiment methods (seurat.R, sce.R) extract the matrix and the labels
# and call TrainCLAMS.default.

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
#'   Counts must be whole numbers: round non-integer counts first, with `round()`.
#' @param batch.by Optional meta data column with batches (batch-aware gene selection).
#' @param path Directory to write the model to (default: a new temporary directory; use
#'   [SaveCLAMS()] to keep it). It is checked before training: a file, a directory holding
#'   something other than a model, a model (without `overwrite`) or a place where nothing can
#'   be created is an error.
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
#' @order 1
#' @export
TrainCLAMS <- function(object, labels.by, ...) {
  UseMethod("TrainCLAMS")
}

#' @rdname TrainCLAMS
#' @order 2
#' @export
TrainCLAMS.default <- function(object, labels.by, layer = "counts", batch.by = NULL,
                               path = NULL, overwrite = FALSE, device = "auto", seed = 0,
                               verbose = TRUE, .options = clams_options(), ...) {
  .check_dots(...)
  if (!is.matrix(object) && !methods::is(object, "Matrix") &&
      !methods::is(object, "DelayedArray")) {
    .input_error("{.fn TrainCLAMS} takes a Seurat object, a SingleCellExperiment or a genes x cells matrix, not {.cls {class(object)}}.")
  }
  n_labels <- if (!missing(labels.by) && !is.null(labels.by)) length(labels.by)
  .check_matrix(object, "The reference matrix", n.labels = n_labels)
  if (is.null(n_labels) || n_labels != ncol(object)) {
    .input_error("For a matrix, {.arg labels.by} must be a vector with one label per cell (column): {ncol(object)} values.")
  }
  if (!is.null(batch.by) && length(batch.by) != ncol(object)) {
    .input_error("For a matrix, {.arg batch.by} must have one value per cell.")
  }
  .check_string(layer, "layer")
  .check_flag(overwrite, "overwrite")
  .check_flag(verbose, "verbose")
  .check_whole(seed, "seed", min = 0)
  .check_string(device, "device")
  opts <- .options_to_py(.options)
  path <- path %||% tempfile("clams_model_")
  .check_string(path, "path")
  path <- normalizePath(path, winslash = "/", mustWork = FALSE)
  .check_model_target(path, overwrite)   # before any training
  labels <- as.character(labels.by)
  obs <- list(labels = labels)
  if (!is.null(batch.by)) obs$batch <- as.character(batch.by)
  adata <- .to_anndata(object, obs)
  if (verbose) {
    known <- labels[!is.na(labels)]
    cli::cli_inform("Training CLAMS ({opts$preset}) on {length(known)} cells, {length(unique(known))} labels.")
  }
  py <- .clams_py()
  fitted <- .py_try(py$bridge$fit_for_r(
    adata, labels_key = "labels", options = opts, path = path, is_log = .is_log(layer),
    batch_key = if (!is.null(batch.by)) "batch", seed = as.integer(seed), device = device,
    verbose = verbose, overwrite = overwrite),
    what = "Training failed")
  .new_clams_model(path, py_model = fitted, device = device)
}

# The Seurat and SingleCellExperiment methods: TrainCLAMS.default on the matrix `m`, with the
# labels (and batches) that `column(name, what)` reads from the object, and the method's other
# arguments (its frame's variables of those names).
.train_object <- function(m, column) {
  args <- mget(c("labels.by", "layer", "batch.by", "path", "overwrite", "device", "seed",
                 "verbose", ".options"), envir = parent.frame())
  args$labels.by <- column(args$labels.by, "labels.by")
  if (!is.null(args$batch.by)) args$batch.by <- column(args$batch.by, "batch.by")
  do.call(TrainCLAMS.default, c(list(m), args))
}

# Python's is_log for a layer: TRUE for log-normalised values, NULL (detect) otherwise.
.is_log <- function(layer) {
  if (identical(layer, "data") || identical(layer, "logcounts")) TRUE else NULL
}
