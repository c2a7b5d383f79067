# Seurat v4 label transfer (FindTransferAnchors + TransferData); see seurat.py.
# Needs common.R. Returns one row per query cell: predicted_id, score_max.
seurat_transfer <- function(ref_mat, query_mat, labels, is_counts, dims, nfeatures, k_weight,
                            seed) {
  suppressPackageStartupMessages(library(Seurat))
  options(future.globals.maxSize = 8 * 1024^3)
  set.seed(seed)
  ref <- seurat_object(ref_mat, is_counts)
  ref$label <- labels
  query <- seurat_object(query_mat, is_counts)
  ref <- FindVariableFeatures(ref, nfeatures = nfeatures, verbose = FALSE)
  ref <- ScaleData(ref, verbose = FALSE)
  npcs <- max(dims)
  ref <- RunPCA(ref, npcs = npcs, verbose = FALSE, seed.use = seed)
  anchors <- FindTransferAnchors(reference = ref, query = query, dims = 1:npcs,
                                 reference.reduction = "pca", verbose = FALSE)
  pred <- TransferData(anchorset = anchors, refdata = ref$label, dims = 1:npcs,
                       k.weight = k_weight, verbose = FALSE)
  data.frame(predicted_id = as.character(pred$predicted.id),
             score_max = as.numeric(pred$prediction.score.max),
             stringsAsFactors = FALSE)
}
