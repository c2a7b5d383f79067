# Helpers shared by the R baselines of the benchmark (sourced with them by _r.py's r_call).

# A Seurat object of a genes x cells dgCMatrix: raw counts are NormalizeData-ed
# (LogNormalize, 1e4); log-normalised values go to both the counts and data slots.
seurat_object <- function(m, is_counts) {
  obj <- suppressWarnings(
    Seurat::CreateSeuratObject(counts = m, min.cells = 0, min.features = 0)
  )
  if (is_counts) {
    obj <- Seurat::NormalizeData(obj, verbose = FALSE)
  } else {
    obj <- Seurat::SetAssayData(obj, slot = "data", new.data = m)
  }
  obj
}
