# SingleR with fine-tuning on log-normalised matrices; see singler.py.
# Returns one row per query cell: label, pruned_na (1 when pruned), score_max.
singler_annotate <- function(ref_mat, query_mat, labels, de_method, seed) {
  suppressPackageStartupMessages({
    library(SingleR)
    library(scran)
  })
  set.seed(seed)
  pred <- SingleR(test = query_mat, ref = ref_mat, labels = labels, de.method = de_method)
  scores <- as.matrix(pred$scores)
  data.frame(label = as.character(pred$labels),
             pruned_na = as.integer(is.na(pred$pruned.labels)),
             score_max = apply(scores, 1, max),
             stringsAsFactors = FALSE)
}
