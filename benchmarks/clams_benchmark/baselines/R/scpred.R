# scPred's vignette workflow (Seurat v4); see scpred.py.
# Needs common.R. Returns one row per query cell: prediction, best, score_max.
scpred_annotate <- function(ref_mat, query_mat, labels, is_counts, npcs, threshold, seed) {
  suppressPackageStartupMessages({
    library(Seurat)
    library(scPred)
  })
  set.seed(seed)
  ref <- seurat_object(ref_mat, is_counts)
  ref$label <- labels
  ref <- FindVariableFeatures(ref, verbose = FALSE)
  ref <- ScaleData(ref, verbose = FALSE)
  ref <- RunPCA(ref, npcs = npcs, verbose = FALSE, seed.use = seed)
  ref <- getFeatureSpace(ref, "label")
  ref <- trainModel(ref, seed = seed)
  query <- seurat_object(query_mat, is_counts)
  query <- scPredict(query, ref, threshold = threshold)
  best <- if ("scpred_no_rejection" %in% colnames(query[[]])) {
    query$scpred_no_rejection
  } else {
    query$scpred_prediction
  }
  data.frame(prediction = as.character(query$scpred_prediction),
             best = as.character(best),
             score_max = as.numeric(query$scpred_max),
             stringsAsFactors = FALSE)
}
