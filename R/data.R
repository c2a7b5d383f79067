# Getting expression matrices out of Seurat / SingleCellExperiment objects and into Python.

# The genes x cells matrix of `assay` / `layer` of a Seurat object. Seurat v5 assays (Assay5)
# are read with SeuratObject::LayerData (split layers must be joined first); v4 assays with
# GetAssayData(slot = ).
.seurat_matrix <- function(object, assay = NULL, layer = "counts") {
  assay <- assay %||% SeuratObject::DefaultAssay(object)
  .check_string(assay, "assay")
  .check_string(layer, "layer")
  if (!assay %in% SeuratObject::Assays(object)) {
    cli::cli_abort("Assay {.val {assay}} not found; the object has {.val {SeuratObject::Assays(object)}}.",
                   class = "pyclams_input_error", call = NULL)
  }
  a <- object[[assay]]
  if (inherits(a, "Assay5")) {
    layers <- getExportedValue("SeuratObject", "Layers")(a)
    if (!layer %in% layers) {
      split <- grep(paste0("^", layer, "\\."), layers, value = TRUE)
      if (length(split)) {
        cli::cli_abort(c("Layer {.val {layer}} of assay {.val {assay}} is split into {.val {split}}.",
                         i = "Join the layers first: {.code object[[\"{assay}\"]] <- JoinLayers(object[[\"{assay}\"]])}."),
                       class = "pyclams_input_error", call = NULL)
      }
      cli::cli_abort("Layer {.val {layer}} not found in assay {.val {assay}}; it has {.val {layers}}.",
                     class = "pyclams_input_error", call = NULL)
    }
    m <- getExportedValue("SeuratObject", "LayerData")(a, layer = layer)
  } else {
    slots <- c("counts", "data", "scale.data")
    if (!layer %in% slots) {
      cli::cli_abort("{.arg layer} must be one of {.val {slots}} for a Seurat v4 assay, not {.val {layer}}.",
                     class = "pyclams_input_error", call = NULL)
    }
    m <- SeuratObject::GetAssayData(object, assay = assay, slot = layer)
  }
  if (is.null(m) || prod(dim(m)) == 0) {
    cli::cli_abort(c("Layer {.val {layer}} of assay {.val {assay}} is empty.",
                     i = if (layer == "counts") "Use {.code layer = \"data\"} for log-normalised values."),
                   class = "pyclams_input_error", call = NULL)
  }
  m
}

# The genes x cells matrix of a SingleCellExperiment: layer "counts" -> assay "counts",
# "data" -> "logcounts", anything else -> that assay.
.sce_matrix <- function(object, layer = "counts") {
  .need("SummarizedExperiment")
  .check_string(layer, "layer")
  name <- if (identical(layer, "data")) "logcounts" else layer
  have <- SummarizedExperiment::assayNames(object)
  if (!name %in% have) {
    cli::cli_abort("Assay {.val {name}} not found in the SingleCellExperiment; it has {.val {have}}.",
                   class = "pyclams_input_error", call = NULL)
  }
  m <- SummarizedExperiment::assay(object, name, withDimnames = TRUE)
  m
}

.need <- function(pkg) {
  if (!requireNamespace(pkg, quietly = TRUE)) {
    cli::cli_abort("This needs the R package {.pkg {pkg}} (Debian: r-bioc-{tolower(pkg)}).",
                   call = NULL)
  }
}

# Any genes x cells matrix as a dgCMatrix (sparse input stays sparse; no dense copy of
# sparse data is ever made).
.as_dgc <- function(m) {
  if (inherits(m, "dgCMatrix")) return(m)
  if (is.data.frame(m)) m <- as.matrix(m)
  out <- tryCatch({
    if (!methods::is(m, "Matrix")) {
      if (methods::is(m, "DelayedArray")) m <- methods::as(m, "dgCMatrix")
      else m <- Matrix::Matrix(m, sparse = TRUE)
    }
    methods::as(methods::as(methods::as(m, "CsparseMatrix"), "generalMatrix"), "dMatrix")
  }, error = function(e) {
    cli::cli_abort("Cannot use a {.cls {class(m)}} as an expression matrix: {conditionMessage(e)}",
                   class = "pyclams_input_error", call = NULL)
  })
  if (!inherits(out, "dgCMatrix")) out <- methods::as(out, "dgCMatrix")
  out
}

.check_dimnames <- function(m, what = "the expression matrix") {
  if (is.null(rownames(m)) || is.null(colnames(m))) {
    cli::cli_abort("{what} needs gene names (rows) and cell names (columns).",
                   class = "pyclams_input_error", call = NULL)
  }
  if (anyDuplicated(colnames(m))) {
    cli::cli_abort("{what} has duplicated cell names.", class = "pyclams_input_error",
                   call = NULL)
  }
  invisible(m)
}

# A genes x cells matrix -> AnnData (cells x genes, CSR) in Python, through the three slots
# of the dgCMatrix. `obs`: optional named list of per-cell vectors (NA -> None).
.to_anndata <- function(m, obs = NULL) {
  m <- .as_dgc(m)
  .check_dimnames(m)
  py <- .clams_py()
  obs_py <- NULL
  if (length(obs)) {
    obs_py <- lapply(obs, function(v) {
      v <- as.character(v)
      out <- as.list(v)
      out[is.na(v)] <- list(NULL)
      out
    })
  }
  .py_try(py$bridge$anndata_from_csc(
    reticulate::np_array(m@x, dtype = "float64"),
    reticulate::np_array(m@i, dtype = "int32"),
    reticulate::np_array(m@p, dtype = "int64"),
    nrow(m), ncol(m), as.list(rownames(m)), as.list(colnames(m)), obs_py))
}

# An .h5ad file -> Seurat object (counts from X or `layer`; obs -> meta.data). Used by the
# tests on real data; gene names with '_' are changed to '-' by Seurat.
.h5ad_to_seurat <- function(path, layer = NULL, assay = "RNA", project = "pyclams") {
  py <- .clams_py()
  parts <- .py_try(py$bridge$anndata_parts(path, layer))
  m <- methods::new("dgCMatrix", x = as.numeric(parts$data), i = as.integer(parts$indices),
                    p = as.integer(parts$indptr), Dim = as.integer(unlist(parts$shape)),
                    Dimnames = list(unlist(parts$genes), unlist(parts$cells)))
  meta <- lapply(parts$obs, function(v) {
    if (is.list(v)) vapply(v, function(e) if (is.null(e)) NA_character_ else e, "") else as.vector(v)
  })
  meta <- as.data.frame(meta, stringsAsFactors = FALSE, check.names = FALSE,
                        row.names = colnames(m))
  SeuratObject::CreateSeuratObject(counts = m, meta.data = meta, assay = assay,
                                   project = project, min.cells = 0, min.features = 0)
}
