# Real data (skipped when /work/shared/data is absent): pbmc3k (10x v1, raw counts) read from
# .h5ad into a Seurat object; train on four types, annotate held-out cells of those types
# and three types the reference lacks.

test_that("RunCLAMS on pbmc3k: known types recognised, unseen types scored lower", {
  skip_if_no_pyclams()
  path <- shared_data("pbmc3k_10x_v1.h5ad")
  skip_if(!nzchar(path), "real data (pbmc3k_10x_v1.h5ad) not available")
  obj <- suppressWarnings(pyclams:::.h5ad_to_seurat(path))
  expect_identical(dim(obj), c(32738L, 2638L))
  known <- c("B", "CD14+ Mono", "NK", "CD8 T")
  unseen <- c("FCGR3A+ Mono", "DC", "Platelet")
  set.seed(1)
  types <- as.character(obj$cell_type)
  ref_cells <- unlist(lapply(known, function(k) {
    cells <- colnames(obj)[types == k]
    sample(cells, min(150, length(cells)))
  }))
  q_cells <- unlist(lapply(c(known, unseen), function(k) {
    cells <- setdiff(colnames(obj)[types == k], ref_cells)
    sample(cells, min(80, length(cells)))
  }))
  ref <- obj[, ref_cells]
  q <- obj[, q_cells]
  opts <- clams_options(n.top.genes = 500, max.epochs = 8, buffer.size = 500,
                        sgld.steps = 10, network = list(widths = 64, blocks_per_stage = 1),
                        train = list(min_epochs = 2, min_steps_per_epoch = 10))
  q <- RunCLAMS(q, reference = ref, labels.by = "cell_type", verbose = FALSE, .options = opts)
  truth <- as.character(q$cell_type)
  is_known <- truth %in% known
  acc <- mean(as.character(q$clams_label_raw[is_known]) == truth[is_known])
  expect_gt(acc, 0.85)
  # log p(x) ranks known-type cells above unseen-type cells (AUROC)
  s <- q$clams_log_px
  auroc <- mean(outer(s[is_known], s[!is_known], ">") + 0.5 * outer(s[is_known], s[!is_known], "=="))
  expect_gt(auroc, 0.6)
  expect_true(all(q$clams_ood_pvalue > 0 & q$clams_ood_pvalue <= 1))
  expect_gte(mean(q$clams_is_ood[!is_known]), mean(q$clams_is_ood[is_known]))
  expect_identical(SeuratObject::Misc(q, "clams")$gene.overlap, 1)
  message(sprintf("pbmc3k: ID accuracy %.3f, log p(x) AUROC %.3f, flagged OOD: %.2f of unseen, %.2f of known",
                  acc, auroc, mean(q$clams_is_ood[!is_known]), mean(q$clams_is_ood[is_known])))
})
