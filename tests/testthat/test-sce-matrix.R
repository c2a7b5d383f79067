# RunCLAMS / TrainCLAMS on a SingleCellExperiment and on a plain matrix

cols <- paste0("clams_", c("label", "label_raw", "confidence", "log_px", "ood_pvalue",
                           "is_ood"))

test_that("RunCLAMS annotates a SingleCellExperiment like the Seurat object", {
  skip_if_no_pyclams()
  skip_if_not_installed("SingleCellExperiment")
  skip_if_not_installed("Seurat")
  m <- tiny_model()
  q <- SeuratObject::pbmc_small
  sce <- suppressWarnings(Seurat::as.SingleCellExperiment(q))
  out <- suppressWarnings(RunCLAMS(sce, model = m, verbose = FALSE))
  cd <- SummarizedExperiment::colData(out)
  expect_true(all(cols %in% colnames(cd)))
  expect_true("clams" %in% SingleCellExperiment::reducedDimNames(out))
  expect_identical(S4Vectors::metadata(out)$clams$model.id, m$model.id)
  ref <- suppressWarnings(RunCLAMS(q, model = m, verbose = FALSE))
  expect_identical(as.character(cd$clams_label), as.character(ref$clams_label))
  expect_equal(cd$clams_log_px, unname(ref$clams_log_px), tolerance = 1e-6)
  expect_error(RunCLAMS(out, model = m, verbose = FALSE), "overwrite")
  # training on a SingleCellExperiment
  ref_sce <- sce[, sce$RNA_snn_res.1 %in% c("0", "1")]
  m2 <- TrainCLAMS(ref_sce, labels.by = "RNA_snn_res.1", verbose = FALSE,
                   .options = tiny_options())
  expect_identical(m2$classes, c("0", "1"))
  expect_error(TrainCLAMS(ref_sce, labels.by = "nope"), "colData")
})

test_that("RunCLAMS on a matrix returns a data frame; TrainCLAMS takes label vectors", {
  skip_if_no_pyclams()
  m <- tiny_model()
  counts <- SeuratObject::GetAssayData(SeuratObject::pbmc_small, slot = "counts")
  df <- suppressWarnings(RunCLAMS(counts, model = m, verbose = FALSE))
  expect_s3_class(df, "data.frame")
  expect_identical(rownames(df), colnames(counts))
  expect_identical(colnames(df), c("label", "label_raw", "confidence", "log_px",
                                   "ood_pvalue", "is_ood", "p_0", "p_1"))
  expect_equal(unname(rowSums(df[, c("p_0", "p_1")])), rep(1, ncol(counts)),
               tolerance = 1e-5)
  expect_identical(dim(attr(df, "embedding")), c(ncol(counts), 32L))
  dense <- suppressWarnings(RunCLAMS(as.matrix(counts), model = m, verbose = FALSE))
  expect_equal(dense$log_px, df$log_px, tolerance = 1e-6)
  labels <- as.character(SeuratObject::pbmc_small$RNA_snn_res.1)
  keep <- labels %in% c("0", "1")
  m2 <- TrainCLAMS(counts[, keep], labels.by = labels[keep], verbose = FALSE,
                   .options = tiny_options())
  expect_identical(m2$classes, c("0", "1"))
  # NA labels are left out of training
  lab_na <- labels[keep]
  lab_na[1:3] <- NA
  m3 <- TrainCLAMS(counts[, keep], labels.by = lab_na, verbose = FALSE,
                   .options = tiny_options())
  expect_identical(sum(m3$class.counts), sum(keep) - 3L)
  # a matrix reference: labels are a vector, not recorded in the run's parameters
  trained <- suppressWarnings(RunCLAMS(counts, reference = counts[, keep],
                                       labels.by = labels[keep], verbose = FALSE,
                                       .options = tiny_options()))
  info <- attr(trained, "clams")
  expect_true(info$trained.here)
  expect_null(info$labels.by)
  expect_identical(info$seed, 0)
  expect_error(TrainCLAMS(counts, labels.by = labels[1:5]), "one label per cell")
  expect_error(RunCLAMS(list(1), model = m), "matrix")
  expect_error(RunCLAMS(suppressMessages(unname(counts)), model = m), "gene names")
})

test_that("the Seurat and SCE methods write the matrix engine's result for the same cells", {
  skip_if_no_pyclams()
  skip_if_not_installed("SingleCellExperiment")
  skip_if_not_installed("Seurat")
  m <- tiny_model()
  q <- SeuratObject::pbmc_small
  df <- suppressWarnings(RunCLAMS(SeuratObject::GetAssayData(q, slot = "counts"), model = m,
                                  verbose = FALSE))
  fields <- attr(df, "fields")
  expect_identical(fields, sub("^clams_", "", cols))        # Python's RESULT_FIELDS
  so <- suppressWarnings(RunCLAMS(q, model = m, prefix = "x", verbose = FALSE))
  sce <- suppressWarnings(RunCLAMS(Seurat::as.SingleCellExperiment(q), model = m,
                                   prefix = "x", verbose = FALSE))
  written <- list(seurat = so[[paste0("x_", fields)]],
                  sce = as.data.frame(SummarizedExperiment::colData(sce))[paste0("x_", fields)])
  for (w in written) {
    expect_identical(rownames(w), rownames(df))
    expect_identical(unname(as.list(w)), unname(as.list(df[fields])))
  }
  emb <- unname(attr(df, "embedding"))
  expect_identical(unname(SeuratObject::Embeddings(so, "x")), emb)
  expect_identical(unname(SingleCellExperiment::reducedDim(sce, "x")), emb)
  info <- attr(df, "clams")
  for (written_info in list(SeuratObject::Misc(so, "x"), S4Vectors::metadata(sce)$x)) {
    expect_identical(names(written_info), names(info))
    keep <- setdiff(names(info), c("assay", "time"))
    expect_identical(written_info[keep], info[keep])
  }
  expect_identical(SeuratObject::Misc(so, "x")$assay, "RNA")
})
