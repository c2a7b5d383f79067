# SingleCellExperiment objects: the matrix and the labels out, the results back (colData,
# reducedDim, metadata). The methods extract, call the matrix engines (RunCLAMS.default,
# TrainCLAMS.default) and write back.

#' @rdname RunCLAMS
#' @order 3
#' @export
RunCLAMS.SingleCellExperiment <- function(object, reference = NULL, model = NULL,
                                          labels.by = NULL, assay = NULL, layer = "counts",
                                          prefix = "clams", ood.fdr = 0.05, device = "auto",
                                          seed = 0, verbose = TRUE, overwrite = FALSE,
                                          reduction = TRUE, .options = clams_options(), ...) {
  .need("SingleCellExperiment")
  .need("S4Vectors")
  .check_sce_clash(object, prefix, overwrite, reduction)
  counts <- .sce_matrix(object, layer)
  res <- RunCLAMS.default(counts, reference = reference, model = model, labels.by = labels.by,
                          assay = assay, layer = layer, ood.fdr = ood.fdr, device = device,
                          seed = seed, verbose = verbose, .options = .options, ...)
  .write_sce_results(object, res, prefix, overwrite, reduction)
}

#' @rdname TrainCLAMS
#' @order 4
#' @export
TrainCLAMS.SingleCellExperiment <- function(object, labels.by, layer = "counts",
                                            batch.by = NULL, path = NULL, overwrite = FALSE,
                                            device = "auto", seed = 0, verbose = TRUE,
                                            .options = clams_options(), ...) {
  .check_dots(...)
  .train_object(.sce_matrix(object, layer),
                function(name, what) .coldata_column(object, name, what))
}

# ---------------------------------------------------------------------------- extract
# The genes x cells matrix of a SingleCellExperiment: layer "counts" -> assay "counts",
# "data" -> "logcounts", anything else -> that assay.
.sce_matrix <- function(object, layer = "counts") {
  .need("SummarizedExperiment")
  .check_string(layer, "layer")
  name <- if (identical(layer, "data")) "logcounts" else layer
  have <- SummarizedExperiment::assayNames(object)
  if (!name %in% have) {
    .input_error("Assay {.val {name}} not found in the SingleCellExperiment; it has {.val {have}}.")
  }
  SummarizedExperiment::assay(object, name, withDimnames = TRUE)
}

.coldata_column <- function(object, column, what) {
  .need("SummarizedExperiment")
  cd <- SummarizedExperiment::colData(object)
  if (is.null(column)) {
    .input_error(c("{.arg {what}} is required: name a column of colData.",
                   i = "Columns: {.val {colnames(cd)}}."))
  }
  .check_string(column, what)
  if (!column %in% colnames(cd)) {
    .input_error(c("{.arg {what}} = {.val {column}} is not a column of colData.",
                   i = "Columns: {.val {colnames(cd)}}."))
  }
  as.character(cd[[column]])
}

# ---------------------------------------------------------------------------- write back
.check_sce_clash <- function(object, prefix, overwrite, reduction, fields = NULL) {
  .check_clash(colnames(SummarizedExperiment::colData(object)),
               SingleCellExperiment::reducedDimNames(object), prefix, overwrite, reduction,
               fields, where = "colData")
}

# colData columns `<prefix>_<field>`, reducedDim `prefix`, metadata(object)[[prefix]].
.write_sce_results <- function(object, results, prefix = "clams", overwrite = FALSE,
                               reduction = TRUE, info = attr(results, "clams")) {
  .check_sce_clash(object, prefix, overwrite, reduction, attr(results, "fields"))
  meta <- .prefixed_fields(results, prefix, colnames(object))
  emb <- if (reduction) .prefixed_embedding(results, prefix, colnames(object))
  cd <- SummarizedExperiment::colData(object)
  for (col in names(meta)) cd[[col]] <- meta[[col]]
  SummarizedExperiment::colData(object) <- cd
  if (reduction) SingleCellExperiment::reducedDim(object, prefix) <- emb
  md <- S4Vectors::metadata(object)
  md[[prefix]] <- info
  S4Vectors::metadata(object) <- md
  object
}
