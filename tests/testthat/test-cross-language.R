# Models move between Python and R: the same model directory gives the same labels and
# scores (to 1e-6) through Python's CLAMS.predict() and R's RunCLAMS().

run_python <- function(code, ...) {
  py <- pyclams:::.clams_py()$python
  script <- tempfile(fileext = ".py")
  writeLines(code, script)
  out <- suppressWarnings(system2(py, c(script, ...), stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0) {
    stop("Python failed (status ", status, "):\n", paste(out, collapse = "\n"))
  }
  out
}

write_pbmc_small <- function(dir) {
  obj <- SeuratObject::pbmc_small
  counts <- SeuratObject::GetAssayData(obj, slot = "counts")
  Matrix::writeMM(counts, file.path(dir, "x.mtx"))
  writeLines(rownames(counts), file.path(dir, "genes.txt"))
  writeLines(colnames(counts), file.path(dir, "cells.txt"))
  writeLines(as.character(obj$RNA_snn_res.1), file.path(dir, "labels.txt"))
}

py_common <- '
import sys
import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import pyclams

d = sys.argv[1]
read = lambda f: open(f"{d}/{f}").read().split("\\n")[:-1]
x = scipy.io.mmread(f"{d}/x.mtx").T.tocsr()
a = ad.AnnData(x, obs=pd.DataFrame({"labels": read("labels.txt")}, index=read("cells.txt")),
               var=pd.DataFrame(index=read("genes.txt")))
'

compare <- function(r_meta, py_csv, prefix = "clams") {
  py <- utils::read.csv(py_csv, row.names = 1, check.names = FALSE,
                        stringsAsFactors = FALSE)
  py <- py[rownames(r_meta), ]
  expect_identical(as.character(r_meta[[paste0(prefix, "_label")]]), as.character(py$label))
  expect_identical(as.character(r_meta[[paste0(prefix, "_label_raw")]]),
                   as.character(py$label_raw))
  expect_identical(r_meta[[paste0(prefix, "_is_ood")]], as.logical(py$is_ood))
  for (col in c("confidence", "log_px", "ood_pvalue")) {
    expect_lt(max(abs(r_meta[[paste0(prefix, "_", col)]] - py[[col]])), 1e-6)
  }
}

test_that("a model trained and saved in Python is used in R with the same results", {
  skip_if_no_pyclams()
  dir <- withr::local_tempdir()
  write_pbmc_small(dir)
  run_python(paste0(py_common, '
ref = a[a.obs["labels"].isin(["0", "1"])].copy()
m = pyclams.CLAMS(n_top_genes=200, network={"widths": [32], "blocks_per_stage": 1},
                  train={"max_epochs": 3, "min_epochs": 1, "min_steps_per_epoch": 5},
                  sgld={"buffer_size": 200, "n_steps": 5})
m.fit(ref, labels_key="labels", seed=0, device="cpu", verbose=False)
m.save(f"{d}/py_model")
m.predict(a, ood_fdr=0.3).to_csv(f"{d}/py_pred.csv", float_format="%.17g")
emb = m.infer(a).embedding
pd.DataFrame(emb, index=a.obs_names).to_csv(f"{d}/py_emb.csv", float_format="%.17g")
'), dir)
  model <- LoadCLAMS(file.path(dir, "py_model"), device = "cpu")
  expect_identical(model$classes, c("0", "1"))
  q <- suppressWarnings(RunCLAMS(SeuratObject::pbmc_small, model = model, ood.fdr = 0.3,
                                 verbose = FALSE))
  compare(q[[]], file.path(dir, "py_pred.csv"))
  emb <- utils::read.csv(file.path(dir, "py_emb.csv"), row.names = 1)
  r_emb <- SeuratObject::Embeddings(q, "clams")
  expect_lt(max(abs(unname(r_emb) - unname(as.matrix(emb[rownames(r_emb), ])))), 1e-5)
})

test_that("a model trained in R is used in Python with the same results", {
  skip_if_no_pyclams()
  dir <- withr::local_tempdir()
  write_pbmc_small(dir)
  model <- TrainCLAMS(pbmc_ref(), labels.by = "RNA_snn_res.1", verbose = FALSE,
                      path = file.path(dir, "r_model"), .options = tiny_options())
  q <- suppressWarnings(RunCLAMS(SeuratObject::pbmc_small, model = model,
                                 verbose = FALSE))
  out <- run_python(paste0(py_common, '
m = pyclams.load(f"{d}/r_model", device="cpu")
m.predict(a).to_csv(f"{d}/py_pred.csv", float_format="%.17g")
print("MODEL_ID", m.model_id)
'), dir)
  expect_true(any(grepl(paste("MODEL_ID", model$model.id), out, fixed = TRUE)))
  compare(q[[]], file.path(dir, "py_pred.csv"))
})

test_that("the rpy2 path (pyclams annotate Q.rds) writes what RunCLAMS writes", {
  skip_if_no_pyclams()
  skip_if_not_installed("Seurat")
  skip_if_not_installed("SingleCellExperiment")
  has_rpy2 <- tryCatch({
    run_python("import rpy2.robjects, anndata2ri")
    TRUE
  }, error = function(e) FALSE)
  skip_if_not(has_rpy2, "rpy2 / anndata2ri not available to Python")
  dir <- withr::local_tempdir()
  m <- tiny_model()
  q <- SeuratObject::pbmc_small
  saveRDS(q, file.path(dir, "q.rds"))
  run_python('
import sys
from pyclams import r_bridge
r_bridge.annotate_rds(sys.argv[1], sys.argv[2], sys.argv[3], ood_fdr=0.3)
', file.path(dir, "q.rds"), file.path(dir, "out.rds"), m$path)
  py <- readRDS(file.path(dir, "out.rds"))
  r <- suppressWarnings(RunCLAMS(q, model = m, ood.fdr = 0.3, verbose = FALSE))
  # the same columns, reduction, Misc keys and command log
  expect_identical(colnames(py[[]]), colnames(r[[]]))
  fields <- grep("^clams_", colnames(r[[]]), value = TRUE)
  for (f in fields) expect_equal(py[[f]], r[[f]], tolerance = 1e-6)
  expect_identical(SeuratObject::Reductions(py), SeuratObject::Reductions(r))
  expect_equal(SeuratObject::Embeddings(py, "clams"), SeuratObject::Embeddings(r, "clams"),
               tolerance = 1e-6)
  info_py <- SeuratObject::Misc(py, "clams")
  info_r <- SeuratObject::Misc(r, "clams")
  expect_identical(names(info_py), names(info_r))
  same <- setdiff(names(info_r), c("time", "device"))   # device: "auto" asked, "cpu" used
  expect_identical(info_py[same], info_r[same])
  expect_identical(names(py@commands), names(r@commands))
  cmd_py <- py@commands[["RunCLAMS.RNA.clams"]]
  cmd_r <- r@commands[["RunCLAMS.RNA.clams"]]
  expect_identical(names(cmd_py@params), names(cmd_r@params))
  expect_identical(cmd_py@params[names(cmd_py@params) != "device"],
                   cmd_r@params[names(cmd_r@params) != "device"])
})
