# RunCLAMS / TrainCLAMS on SeuratObject::pbmc_small (230 genes x 80 cells)

cols <- paste0("clams_", c("label", "label_raw", "confidence", "log_px", "ood_pvalue",
                           "is_ood"))

test_that("RunCLAMS trains on a reference and annotates a Seurat object", {
  skip_if_no_pyclams()
  q <- SeuratObject::pbmc_small
  expect_warning(
    out <- RunCLAMS(q, reference = pbmc_ref(), labels.by = "RNA_snn_res.1", verbose = FALSE,
                    device = "cpu", .options = tiny_options()),
    class = "pyclams_calibration_warning")   # 61 reference cells: 14 calibration cells
  meta <- out[[]]
  expect_true(all(cols %in% colnames(meta)))
  expect_identical(meta[, colnames(q[[]])], q[[]])          # existing metadata kept
  expect_s3_class(meta$clams_label, "factor")
  expect_identical(levels(meta$clams_label), c("0", "1", "unknown"))
  expect_identical(levels(meta$clams_label_raw), c("0", "1"))
  expect_type(meta$clams_is_ood, "logical")
  expect_false(anyNA(meta[, cols]))
  expect_true(all(meta$clams_confidence >= 0.5 & meta$clams_confidence <= 1))
  expect_true(all(meta$clams_ood_pvalue > 0 & meta$clams_ood_pvalue <= 1))
  expect_true(all(is.finite(meta$clams_log_px)))
  expect_identical(as.character(meta$clams_label) == "unknown", meta$clams_is_ood)
  # the reference clusters are recognised
  ref_cells <- q$RNA_snn_res.1 %in% c("0", "1")
  acc <- mean(as.character(meta$clams_label_raw[ref_cells]) ==
                as.character(q$RNA_snn_res.1[ref_cells]))
  expect_gt(acc, 0.8)
  # embedding, parameters, command log
  expect_true("clams" %in% SeuratObject::Reductions(out))
  emb <- SeuratObject::Embeddings(out, "clams")
  expect_identical(rownames(emb), colnames(q))
  expect_identical(colnames(emb), paste0("clams_", seq_len(32)))
  expect_identical(SeuratObject::Key(out[["clams"]]), "clams_")
  info <- SeuratObject::Misc(out, "clams")
  expect_identical(info$classes, c("0", "1"))
  expect_identical(info$labels.by, "RNA_snn_res.1")
  expect_equal(info$ood.fdr, 0.05)
  # what the OOD test did (80 cells: enough for the query-aware calibration)
  expect_identical(info$calibration.used, "query")
  expect_true(is.numeric(info$query.shift) && info$query.shift >= 0 && info$query.shift <= 1)
  expect_type(info$suspect.types, "character")
  expect_type(info$known.mode.types, "character")
  expect_type(info$absorbing.types, "character")
  expect_true(all(c(info$suspect.types, info$known.mode.types, info$absorbing.types)
                  %in% info$classes))
  expect_true(dir.exists(info$model.path))
  expect_match(info$model.id, "^[0-9a-f]{16}$")
  expect_true("RunCLAMS.RNA.clams" %in% names(out@commands))
  expect_identical(out@commands[["RunCLAMS.RNA.clams"]]@params$labels.by, "RNA_snn_res.1")
  expect_null(out@commands[["RunCLAMS.RNA.clams"]]@params$reference)  # no object copy
})

test_that("some cells are flagged with max_prob, and ood.fdr is honoured", {
  skip_if_no_pyclams()
  m <- tiny_model()
  q <- SeuratObject::pbmc_small
  out <- RunCLAMS(q, model = m, ood.method = "max_prob", min.confidence = 0.999,
                  verbose = FALSE)
  expect_gt(sum(out$clams_is_ood), 0)
  expect_true(all(out$clams_label[out$clams_is_ood] == "unknown"))
  expect_true(all(out$clams_confidence[out$clams_is_ood] < 0.999))
  expect_warning(out2 <- RunCLAMS(q, model = m, ood.fdr = 0.5, verbose = FALSE), NA)
  expect_equal(SeuratObject::Misc(out2, "clams")$ood.fdr, 0.5)
  out3 <- suppressWarnings(RunCLAMS(q, model = m, calibration = "class", verbose = FALSE))
  info3 <- SeuratObject::Misc(out3, "clams")
  expect_identical(info3$calibration.used, "class")
  expect_true(is.na(info3$query.shift))
  expect_identical(info3$known.mode.types, character(0))
})

test_that("a model directory path, layer = 'data' and another prefix work", {
  skip_if_no_pyclams()
  m <- tiny_model()
  q <- SeuratObject::pbmc_small
  out <- suppressWarnings(RunCLAMS(q, model = m$path, prefix = "ebm", layer = "data",
                                   reduction = FALSE, verbose = FALSE))
  expect_true(all(sub("^clams", "ebm", cols) %in% colnames(out[[]])))
  expect_false("ebm" %in% SeuratObject::Reductions(out))
  expect_identical(SeuratObject::Misc(out, "ebm")$layer, "data")
})

test_that("existing columns are protected unless overwrite = TRUE", {
  skip_if_no_pyclams()
  m <- tiny_model()
  q <- suppressWarnings(RunCLAMS(SeuratObject::pbmc_small, model = m, verbose = FALSE))
  before <- q
  expect_error(q <- RunCLAMS(q, model = m, verbose = FALSE), "overwrite = TRUE",
               class = "pyclams_input_error")
  expect_identical(q, before)
  q2 <- SeuratObject::pbmc_small
  q2$clams_label <- "x"
  expect_error(RunCLAMS(q2, model = m, reduction = FALSE, verbose = FALSE), "clams_label")
  q3 <- suppressWarnings(RunCLAMS(q, model = m, overwrite = TRUE, ood.fdr = 0.2,
                                  verbose = FALSE))
  expect_equal(SeuratObject::Misc(q3, "clams")$ood.fdr, 0.2)
})

test_that("errors leave the object unchanged and name the problem", {
  skip_if_no_pyclams()
  q <- SeuratObject::pbmc_small
  before <- q
  ref <- pbmc_ref()
  expect_error(q <- RunCLAMS(q, reference = ref), "labels.by", class = "pyclams_input_error")
  expect_error(q <- RunCLAMS(q, reference = ref, labels.by = "no_such_column",
                             .options = tiny_options()), "no_such_column")
  expect_error(q <- RunCLAMS(q), "model")
  expect_error(q <- RunCLAMS(q, reference = ref, model = tiny_model()), "not both")
  expect_error(q <- RunCLAMS(q, model = tiny_model(), ood.fdr = 1.5), "ood.fdr")
  expect_error(q <- RunCLAMS(q, model = tiny_model(), prefix = "1x"), "prefix")
  expect_error(q <- RunCLAMS(q, model = tiny_model(), ood.method = "energy"), "ood.method")
  expect_error(q <- RunCLAMS(q, model = tiny_model(), bogus = 1), "bogus")
  expect_error(q <- RunCLAMS(q, model = tiny_model(), assay = "ADT"), "ADT")
  expect_error(q <- RunCLAMS(q, model = tiny_model(), device = "tpu"), "device")
  expect_error(q <- RunCLAMS(q, reference = ref, labels.by = "RNA_snn_res.1",
                             .options = list(max.epochs = 3)), "clams_options")
  # a Python error (a single-cell class) surfaces with its message
  ref2 <- ref
  ref2$one <- ifelse(seq_len(ncol(ref2)) == 1, "lonely", "many")
  expect_error(q <- RunCLAMS(q, reference = ref2, labels.by = "one", verbose = FALSE,
                             .options = tiny_options()), "single cell")
  expect_identical(q, before)
})

test_that("a gene overlap below the threshold is an error that names the overlap", {
  skip_if_no_pyclams()
  m <- tiny_model()
  counts <- SeuratObject::GetAssayData(SeuratObject::pbmc_small, slot = "counts")
  rownames(counts) <- paste0("ENSG", seq_len(nrow(counts)))
  q <- SeuratObject::CreateSeuratObject(counts)
  before <- q
  err <- expect_error(q <- RunCLAMS(q, model = m, verbose = FALSE),
                      class = "pyclams_input_error")
  expect_match(conditionMessage(err), "overlap|shares|genes")
  expect_match(conditionMessage(err), "0 of|0%|0\\.0")
  expect_identical(q, before)
})

test_that("TrainCLAMS, print, SaveCLAMS and LoadCLAMS", {
  skip_if_no_pyclams()
  m <- tiny_model()
  expect_s3_class(m, "clams_model")
  expect_identical(m$classes, c("0", "1"))
  expect_identical(unname(m$class.counts), c(36L, 25L))
  expect_gt(length(m$genes), 100)
  out <- capture.output(print(m))
  expect_true(any(grepl("0  36", out, fixed = TRUE)))
  expect_true(any(grepl(m$model.id, out, fixed = TRUE)))
  expect_true(any(grepl(paste0("pyclams ", m$pyclams.version), out, fixed = TRUE)))
  expect_true(any(grepl(paste0("genes:  ", length(m$genes)), out, fixed = TRUE)))
  expect_true(any(grepl("FDR 0.05", out, fixed = TRUE)))

  dest <- file.path(tempdir(), "saved_clams_model")
  unlink(dest, recursive = TRUE)
  m2 <- SaveCLAMS(m, dest)
  expect_identical(sort(list.files(dest)), c("config.json", "model.safetensors"))
  expect_error(SaveCLAMS(m, dest), "overwrite")
  expect_silent(SaveCLAMS(m, dest, overwrite = TRUE))
  m3 <- LoadCLAMS(dest)
  expect_identical(m3$model.id, m$model.id)
  expect_identical(m3$genes, m$genes)
  q <- SeuratObject::pbmc_small
  a <- suppressWarnings(RunCLAMS(q, model = m, verbose = FALSE))
  b <- suppressWarnings(RunCLAMS(q, model = m3, verbose = FALSE))
  expect_identical(a[[cols]], b[[cols]])

  expect_error(LoadCLAMS(file.path(tempdir(), "nope")), "not a directory")
  bad <- file.path(tempdir(), "tampered_model")
  unlink(bad, recursive = TRUE)
  SaveCLAMS(m, bad)
  w <- file.path(bad, "model.safetensors")
  bytes <- readBin(w, "raw", file.size(w))
  bytes[length(bytes)] <- as.raw(bitwXor(as.integer(bytes[length(bytes)]), 1L))
  writeBin(bytes, w)
  expect_error(LoadCLAMS(bad), "checksum", class = "pyclams_input_error")
})

test_that("TrainCLAMS checks labels and accepts idents", {
  skip_if_no_pyclams()
  ref <- pbmc_ref()
  expect_error(TrainCLAMS(ref, labels.by = NULL), "labels.by")
  expect_error(TrainCLAMS(ref, labels.by = "nope"), "not a column")
  expect_error(TrainCLAMS(ref, labels.by = "groups", foo = 1), "foo")
  m <- TrainCLAMS(ref, labels.by = "ident", verbose = FALSE, .options = tiny_options(),
                  path = file.path(tempdir(), "ident_model"), overwrite = TRUE)
  expect_identical(m$classes, c("0", "1"))
  expect_error(TrainCLAMS(ref, labels.by = "ident", verbose = FALSE,
                          .options = tiny_options(), path = m$path), "overwrite")
})

test_that("the README quick start flags cells of the cluster the reference lacks", {
  skip_if_no_pyclams()
  q <- SeuratObject::pbmc_small
  ref <- subset(q, idents = c("0", "1"))
  out <- suppressWarnings(RunCLAMS(q, reference = ref, labels.by = "RNA_snn_res.1",
                                   verbose = FALSE, device = "cpu"))
  unseen <- as.character(SeuratObject::Idents(q)) == "2"
  expect_gt(sum(out$clams_is_ood[unseen]), 0)
  expect_gt(mean(out$clams_is_ood[unseen]), mean(out$clams_is_ood[!unseen]) + 0.2)
})
