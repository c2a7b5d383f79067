# Seurat objects: getting the matrix and the labels out, writing the results back. The methods
# extract, call the matrix engines (RunCLAMS.default, TrainCLAMS.default) and write back with
# .write_seurat_results(), which the Python side (pyclams.r_bridge, rpy2) calls too.

#' @rdname RunCLAMS
#' @order 2
#' @export
RunCLAMS.Seurat <- function(object, reference = NULL, model = NULL, labels.by = NULL,
                            assay = NULL, layer = "counts", prefix = "clams", ood.fdr = 0.05,
                            device = "auto", seed = 0, verbose = TRUE, overwrite = FALSE,
                            reduction = TRUE, .options = clams_options(), ...) {
  assay <- assay %||% SeuratObject::DefaultAssay(object)
  .check_seurat_clash(object, prefix, overwrite, reduction)
  counts <- .seurat_matrix(object, assay, layer)
  res <- RunCLAMS.default(counts, reference = reference, model = model, labels.by = labels.by,
                          assay = assay, layer = layer, ood.fdr = ood.fdr, device = device,
                          seed = seed, verbose = verbose, .options = .options, ...)
  .write_seurat_results(object, res, prefix, overwrite, reduction)
}

#' @rdname TrainCLAMS
#' @order 3
#' @export
TrainCLAMS.Seurat <- function(object, labels.by, assay = NULL, layer = "counts",
                              batch.by = NULL, path = NULL, overwrite = FALSE,
                              device = "auto", seed = 0, verbose = TRUE,
                              .options = clams_options(), ...) {
  .check_dots(...)
  .train_object(.seurat_matrix(object, assay, layer),
                function(name, what) .seurat_column(object, name, what))
}

# ---------------------------------------------------------------------------- extract
# The genes x cells matrix of `assay` / `layer` of a Seurat object. Seurat v5 assays (Assay5)
# are read with SeuratObject::LayerData (split layers must be joined first); v4 assays with
# GetAssayData(slot = ).
.seurat_matrix <- function(object, assay = NULL, layer = "counts") {
  assay <- assay %||% SeuratObject::DefaultAssay(object)
  .check_string(assay, "assay")
  .check_string(layer, "layer")
  if (!assay %in% SeuratObject::Assays(object)) {
    .input_error("Assay {.val {assay}} not found; the object has {.val {SeuratObject::Assays(object)}}.")
  }
  a <- object[[assay]]
  if (inherits(a, "Assay5")) {
    layers <- getExportedValue("SeuratObject", "Layers")(a)
    if (!layer %in% layers) {
      split <- grep(paste0("^", layer, "\\."), layers, value = TRUE)
      if (length(split)) {
        .input_error(c("Layer {.val {layer}} of assay {.val {assay}} is split into {.val {split}}.",
                       i = "Join the layers first: {.code object[[\"{assay}\"]] <- JoinLayers(object[[\"{assay}\"]])}."))
      }
      .input_error("Layer {.val {layer}} not found in assay {.val {assay}}; it has {.val {layers}}.")
    }
    m <- getExportedValue("SeuratObject", "LayerData")(a, layer = layer)
  } else {
    slots <- c("counts", "data", "scale.data")
    if (!layer %in% slots) {
      .input_error("{.arg layer} must be one of {.val {slots}} for a Seurat v4 assay, not {.val {layer}}.")
    }
    m <- SeuratObject::GetAssayData(object, assay = assay, slot = layer)
  }
  if (is.null(m) || (ncol(object) > 0L && prod(dim(m)) == 0)) {  # 0 cells: .check_matrix
    .input_error(c("Layer {.val {layer}} of assay {.val {assay}} is empty.",
                   i = if (layer == "counts") "Use {.code layer = \"data\"} for log-normalised values."))
  }
  m
}

# One value per cell (in the object's cell order) of a meta data column, or the identities.
.seurat_column <- function(object, column, what) {
  if (is.null(column) || (is.character(column) && length(column) == 1L && !nzchar(column))) {
    .input_error(c("{.arg {what}} is required: name a column of the reference's meta.data or {.val ident}.",
                   i = "Columns: {.val {colnames(object[[]])}}."))
  }
  .check_string(column, what)
  if (identical(column, "ident")) return(as.character(SeuratObject::Idents(object)))
  meta <- object[[]]
  if (!column %in% colnames(meta)) {
    .input_error(c("{.arg {what}} = {.val {column}} is not a column of the meta.data.",
                   i = "Columns: {.val {colnames(meta)}} (or {.val ident})."))
  }
  out <- as.character(meta[[column]])
  names(out) <- rownames(meta)
  unname(out[colnames(object)])
}

# ---------------------------------------------------------------------------- write back
.check_seurat_clash <- function(object, prefix, overwrite, reduction, fields = NULL) {
  .check_clash(colnames(object[[]]), SeuratObject::Reductions(object), prefix, overwrite,
               reduction, fields, where = "meta.data")
}

# Write the engine's result (RunCLAMS.default, or .as_results() from Python) into a Seurat
# object: meta data columns `<prefix>_<field>`, a DimReduc `prefix` (with `reduction`), the
# run's parameters `info` in Misc(object, prefix) and a command log entry. All or nothing: the
# object is returned changed only when everything succeeded.
.write_seurat_results <- function(object, results, prefix = "clams", overwrite = FALSE,
                                  reduction = TRUE, info = attr(results, "clams")) {
  .check_seurat_clash(object, prefix, overwrite, reduction, attr(results, "fields"))
  meta <- .prefixed_fields(results, prefix, colnames(object))
  emb <- if (reduction) .prefixed_embedding(results, prefix, colnames(object))
  assay <- info$assay %||% SeuratObject::DefaultAssay(object)
  object <- SeuratObject::AddMetaData(object, metadata = meta)
  if (reduction) {
    object[[prefix]] <- SeuratObject::CreateDimReducObject(
      embeddings = emb, key = .key(prefix), assay = assay,
      misc = list(model.id = info$model.id))
  }
  if (!is.null(info)) {
    object@misc[[prefix]] <- info
    command <- .clams_command(info, prefix, overwrite, reduction, assay)
    object[[command@name]] <- command
  }
  object
}

# The result fields as columns `<prefix>_<field>`, one row per cell of `cells`, in that order.
.prefixed_fields <- function(results, prefix, cells) {
  if (!setequal(rownames(results), cells) || nrow(results) != length(cells)) {
    .input_error("The results must hold exactly one row per cell of the object ({length(cells)} cells, {nrow(results)} rows).")
  }
  fields <- attr(results, "fields")
  out <- results[cells, fields, drop = FALSE]
  names(out) <- paste0(prefix, "_", fields)
  out
}

# The embedding, rows in the order of `cells`, columns `<key>1`, `<key>2`, ...
.prefixed_embedding <- function(results, prefix, cells) {
  emb <- attr(results, "embedding")
  if (is.null(emb)) .input_error("The results hold no embedding: pass {.code reduction = FALSE}.")
  emb <- emb[cells, , drop = FALSE]
  colnames(emb) <- sprintf("%s%d", .key(prefix), seq_len(ncol(emb)))
  emb
}

.key <- function(prefix) paste0(gsub("[^[:alnum:]]", "", prefix), "_")

# The command log entry of a run, as SeuratObject::LogSeuratCommand() would name it
# ("RunCLAMS.<assay>.<reduction>"), built from the run's parameters so that RunCLAMS and the
# Python side log the same thing (LogSeuratCommand() reads the calling frame, which a call
# from Python does not have).
.clams_command <- function(info, prefix, overwrite, reduction, assay) {
  params <- list(model = info$model.path, labels.by = info$labels.by, assay = info$assay,
                 layer = info$layer, prefix = prefix, ood.fdr = info$ood.fdr,
                 ood.method = info$ood.method, calibration = info$calibration,
                 min.confidence = info$min.confidence, n.neighbors = info$n.neighbors,
                 label.mode = info$label.mode,
                 min.gene.overlap = info$min.gene.overlap, device = info$device,
                 seed = info$seed, overwrite = overwrite,
                 reduction = if (reduction) prefix)
  params <- Filter(Negate(is.null), params)
  name <- paste(c("RunCLAMS", assay, if (reduction) prefix), collapse = ".")
  shown <- vapply(params, function(v) paste(deparse(v, width.cutoff = 500L), collapse = ""), "")
  methods::new("SeuratCommand", name = name, params = params, time.stamp = Sys.time(),
               assay.used = assay,
               call.string = sprintf("RunCLAMS(object, %s)",
                                     paste(names(params), shown, sep = " = ", collapse = ", ")))
}

# ---------------------------------------------------------------------------- .h5ad files
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
