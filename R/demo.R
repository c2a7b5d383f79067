# The bundled demo data (shipped with the Python package) as Seurat objects.

#' The demo data as Seurat objects
#'
#' The two real datasets bundled with the Python package `pyclams` (raw UMI counts of 3,253
#' genes; labels in the meta data column `cell_type`):
#' \describe{
#'   \item{`reference`}{800 FACS-sorted PBMC: B, CD4 T and CD8 T cells (Zheng et al. 2017,
#'     10x GemCode; as shipped in the R package garnett).}
#'   \item{`query`}{2,638 cells of 10x Genomics' pbmc3k (v1 chemistry) with the labels of the
#'     Seurat tutorial: the reference's three types plus monocytes, NK cells, dendritic cells
#'     and platelets, which the reference lacks.}
#' }
#' The genes are those the demo keeps: the reference's 2,000 and the query's 1,000 most
#' variable genes and the 500 most expressed. Provenance and licences: `README.md` beside the
#' files in the Python package (`pyclams/data/files/`).
#'
#' @param which `"reference"`, `"query"` or both (the default).
#' @return A Seurat object, or a named list of them when `which` has both names. Seurat changes
#'   `_` in gene names to `-`.
#' @examples
#' \dontrun{
#' demo <- clams_demo_data()
#' demo$reference
#' table(demo$query$cell_type)
#' }
#' @export
clams_demo_data <- function(which = c("reference", "query")) {
  if (!is.character(which) || !length(which) || anyNA(which) ||
      !all(which %in% c("reference", "query"))) {
    .input_error("{.arg which} must be {.val reference}, {.val query} or both.")
  }
  .clams_py()
  demo <- reticulate::import("pyclams.data.demo")
  objects <- lapply(stats::setNames(unique(which), unique(which)), function(w) {
    path <- as.character(reticulate::py_str(demo$demo_path(w)))
    .h5ad_to_seurat(path, project = paste0("pyclams_demo_", w))
  })
  if (length(objects) == 1L) objects[[1L]] else objects
}
