# Hostile and careless inputs from R (issue 11): each gives one line, a `cli` error of class
# "pyclams_input_error" naming the problem and what to do, or works; the user's object, files
# and directories are left as they were (checksums) and nothing half-written is left behind.
# One test per case of the issue; the good cases that must stay good are at the end.

# The error of `expr`: of `class`, one line (no bullets, no Python traceback), matching each
# of `phrases` (fixed strings).
expect_one_line <- function(expr, ..., class = "pyclams_input_error") {
  err <- expect_error(expr, class = class)
  lines <- c(err$message, err$body)
  expect_length(lines, 1L)
  expect_false(grepl("\n|Traceback|py_last_error", lines[1]))
  for (p in c(...)) expect_match(lines[1], p, fixed = TRUE)
  invisible(err)
}

# Every file and directory under `dir` (hidden ones too) with its MD5.
snapshot <- function(dir) {
  f <- list.files(dir, all.files = TRUE, recursive = TRUE, include.dirs = TRUE,
                  no.. = TRUE)
  is_dir <- dir.exists(file.path(dir, f))
  sums <- rep("<directory>", length(f))
  sums[!is_dir] <- unname(tools::md5sum(file.path(dir, f[!is_dir])))
  stats::setNames(sums, f)
}

# The messages `expr` (an expectation) emits, muffled.
messages_of <- function(expr) {
  out <- character()
  withCallingHandlers(expr, message = function(m) {
    out <<- c(out, conditionMessage(m))
    invokeRestart("muffleMessage")
  })
  out
}

counts_of <- function(q = SeuratObject::pbmc_small) SeuratObject::GetAssayData(q, slot = "counts")

# A copy of the tiny model in `dir` whose config.json went through `edit` (a function of the
# parsed list).
edited_model <- function(dir, edit) {
  src <- tiny_model()$path
  d <- file.path(dir, "edited")
  dir.create(d)
  file.copy(file.path(src, c("model.safetensors", "config.json")), d)
  cfg <- jsonlite::read_json(file.path(d, "config.json"))
  jsonlite::write_json(edit(cfg), file.path(d, "config.json"), auto_unbox = TRUE,
                       null = "null", digits = NA)
  d
}

# LoadCLAMS() of an edited model fails with one line naming config.json and `phrase`, and
# leaves the directory as it was.
expect_refused_model <- function(edit, phrase) {
  d <- edited_model(withr::local_tempdir(), edit)
  before <- snapshot(d)
  expect_one_line(LoadCLAMS(d, device = "cpu"), "config.json", phrase)
  expect_one_line(RunCLAMS(SeuratObject::pbmc_small, model = d, verbose = FALSE),
                  "config.json", phrase)
  expect_identical(snapshot(d), before)
}

# ---------------------------------------------------------------------------- 6. messages
test_that("a transposed query (cells x genes) is said to be transposed, not empty", {
  skip_if_no_pyclams()
  x <- Matrix::t(counts_of())
  expect_one_line(RunCLAMS(x, model = tiny_model(), verbose = FALSE), "looks transposed",
                  "genes must be rows")
  # cell names that do not look like barcodes: the model's genes are among the column names
  colnames(x) <- rownames(counts_of())
  rownames(x) <- paste0("cell", seq_len(nrow(x)))
  expect_one_line(RunCLAMS(x, model = tiny_model(), verbose = FALSE), "looks transposed",
                  "genes of the model are among its column names")
  # and against a reference's genes, before training on it
  msgs <- messages_of(expect_one_line(
    RunCLAMS(x, reference = pbmc_ref(), labels.by = "RNA_snn_res.1",
             .options = tiny_options()),
    "looks transposed", "genes of the reference"))
  expect_false(any(grepl("Training", msgs)))
})

test_that("a transposed reference is said to be transposed before any training", {
  skip_if_no_pyclams()
  x <- Matrix::t(counts_of())
  labels <- as.character(SeuratObject::pbmc_small$RNA_snn_res.1)
  msgs <- messages_of(expect_one_line(
    TrainCLAMS(x, labels.by = labels, .options = tiny_options()),
    "The reference matrix looks transposed", "genes must be rows"))
  expect_false(any(grepl("Training", msgs)))
})

test_that("non-integer counts: R is told what to do in R (round, or layer = \"data\")", {
  skip_if_no_pyclams()
  q <- SeuratObject::pbmc_small
  q <- SeuratObject::SetAssayData(q, slot = "counts", new.data = counts_of(q) * 0.5)
  before <- q
  err <- expect_one_line(q <- RunCLAMS(q, model = tiny_model(), verbose = FALSE),
                         "neither integer counts nor log-normalised", "round",
                         'layer = "data"')
  expect_false(grepl("is_log", err$message))
  expect_identical(q, before)
})

test_that("a query logged twice is diagnosed in R's terms", {
  skip_if_no_pyclams()
  x <- log1p(log1p(counts_of()))
  err <- expect_one_line(RunCLAMS(x, model = tiny_model(), verbose = FALSE),
                         "log-transformed twice", 'layer = "data"')
  expect_false(grepl("is_log", err$message))
})

test_that("a Python path that does not exist is said not to exist", {
  # pyclams_python() reports the running Python once it has started: the rules it applies
  # before that are .configured_python()'s
  withr::with_envvar(c(RETICULATE_PYTHON = "/nonexistent/python"), {
    expect_one_line(pyclams:::.configured_python(), "RETICULATE_PYTHON",
                    "/nonexistent/python", "that path does not exist")
    expect_error(pyclams:::.configured_python(), class = "pyclams_python_error")
  })
  withr::with_envvar(c(RETICULATE_PYTHON = ""), withr::with_options(
    list(pyclams.python = "/nonexistent"),
    expect_one_line(pyclams:::.configured_python(), "/nonexistent",
                    "that path does not exist")))
  empty <- withr::local_tempdir()
  withr::with_envvar(c(RETICULATE_PYTHON = ""), withr::with_options(
    list(pyclams.python = empty),
    expect_one_line(pyclams:::.configured_python(), "names no Python")))
})

test_that("format_version given as a string: Python's one line", {
  skip_if_no_pyclams()
  expect_refused_model(function(cfg) {
    cfg$format_version <- "1"
    cfg
  }, "format_version must be an integer")
})

# ---------------------------------------------------------------------------- 2. config.json
test_that("classes reordered in config.json: refused, not silently swapped labels", {
  skip_if_no_pyclams()
  expect_refused_model(function(cfg) {
    cfg$classes <- rev(cfg$classes)
    cfg
  }, "classes are in another order")
})

test_that("a class deleted from config.json: refused (R's reader too, so print cannot show it)", {
  skip_if_no_pyclams()
  edit <- function(cfg) {
    cfg$classes <- cfg$classes[1]
    cfg
  }
  expect_refused_model(edit, "1 classes but the network has 2 outputs")
  d <- edited_model(withr::local_tempdir(), edit)
  expect_one_line(print(pyclams:::.new_clams_model(d)), "config.json", "1 classes")
})

test_that("a gene deleted from, or the genes reordered in, config.json: refused", {
  skip_if_no_pyclams()
  expect_refused_model(function(cfg) {
    cfg$preprocess$genes <- cfg$preprocess$genes[-1]
    cfg
  }, "genes but the network has")
  expect_refused_model(function(cfg) {
    cfg$preprocess$genes <- rev(cfg$preprocess$genes)
    cfg
  }, "genes are in another order")
})

test_that("a temperature of 0 in config.json: refused", {
  skip_if_no_pyclams()
  expect_refused_model(function(cfg) {
    cfg$calibration$temperature <- 0
    cfg
  }, "temperature must be a positive number")
})

# ---------------------------------------------------------------------------- 1, 3, 7. writes
test_that("SaveCLAMS gives the files the user's umask, not the source's 0600", {
  skip_if_no_pyclams()
  skip_on_os("windows")
  dir <- withr::local_tempdir()
  src <- SaveCLAMS(tiny_model(), file.path(dir, "private"))
  Sys.chmod(file.path(src$path, c("model.safetensors", "config.json")), "600",
            use_umask = FALSE)
  old <- Sys.umask("022")
  on.exit(Sys.umask(old), add = TRUE)
  out <- SaveCLAMS(src, file.path(dir, "shared"))
  modes <- file.info(file.path(out$path, c("model.safetensors", "config.json")))$mode
  expect_identical(format(modes), c("644", "644"))
  expect_identical(format(file.info(out$path)$mode), "755")
})

test_that("a failed SaveCLAMS leaves the previous model intact and nothing half-written", {
  skip_if_no_pyclams()
  dir <- withr::local_tempdir()
  target <- SaveCLAMS(tiny_model(), file.path(dir, "target"))
  broken <- SaveCLAMS(tiny_model(), file.path(dir, "broken"))
  # other weights (copied first), and a config.json that cannot be copied: a copy in place
  # would change the target's weights before failing
  w <- file.path(broken$path, "model.safetensors")
  bytes <- readBin(w, "raw", file.size(w))
  bytes[length(bytes)] <- as.raw(bitwXor(as.integer(bytes[length(bytes)]), 1L))
  writeBin(bytes, w)
  unlink(file.path(broken$path, "config.json"))
  dir.create(file.path(broken$path, "config.json"))
  before <- snapshot(dir)
  expect_one_line(SaveCLAMS(broken, target$path, overwrite = TRUE),
                  "Cannot write the model to", "nothing was changed there")
  expect_identical(snapshot(dir), before)   # the target as it was, no .tmp / .old left
})

test_that("SaveCLAMS to a file, a non-model directory or a model without overwrite: refused", {
  skip_if_no_pyclams()
  dir <- withr::local_tempdir()
  writeLines("mine", file.path(dir, "a_file"))
  dir.create(file.path(dir, "notes"))
  writeLines("mine", file.path(dir, "notes", "todo.txt"))
  model <- SaveCLAMS(tiny_model(), file.path(dir, "model"))
  before <- snapshot(dir)
  expect_one_line(SaveCLAMS(tiny_model(), file.path(dir, "a_file")),
                  "exists and is not a directory")
  expect_one_line(SaveCLAMS(tiny_model(), file.path(dir, "notes")),
                  "holds no model", "choose an empty or new directory")
  expect_one_line(SaveCLAMS(tiny_model(), model$path), "already holds a model",
                  "overwrite = TRUE")
  expect_identical(snapshot(dir), before)
})

test_that("TrainCLAMS checks its path before training (a file, unwritable, a model)", {
  skip_if_no_pyclams()
  dir <- withr::local_tempdir()
  writeLines("mine", file.path(dir, "a_file"))
  model <- SaveCLAMS(tiny_model(), file.path(dir, "model"))
  before <- snapshot(dir)
  train <- function(path) {
    TrainCLAMS(pbmc_ref(), labels.by = "RNA_snn_res.1", path = path, device = "cpu",
               .options = tiny_options())
  }
  no_training <- function(msgs) expect_false(any(grepl("Training", msgs)))
  no_training(messages_of(expect_one_line(train(file.path(dir, "a_file")),
                                          "exists and is not a directory")))
  no_training(messages_of(expect_one_line(train(model$path), "already holds a model",
                                          "overwrite = TRUE")))
  if (dir.exists("/proc") && !file.exists("/proc/pyclams_model")) {
    no_training(messages_of(expect_one_line(train("/proc/pyclams_model"),
                                            "Cannot write the model to /proc/pyclams_model")))
  }
  expect_identical(snapshot(dir), before)
})

# ---------------------------------------------------------------------------- 4. arguments
test_that("ood.fdr as a string or 0: one line, the object unchanged", {
  skip_if_no_pyclams()
  q <- SeuratObject::pbmc_small
  before <- q
  expect_one_line(q <- RunCLAMS(q, model = tiny_model(), ood.fdr = "0.1"), "ood.fdr",
                  "must be a number in (0, 1)")
  expect_one_line(q <- RunCLAMS(q, model = tiny_model(), ood.fdr = 0), "ood.fdr",
                  "must be a number in (0, 1)")
  expect_identical(q, before)
})

test_that("prefix \"\" or NA: one line, the object unchanged", {
  skip_if_no_pyclams()
  q <- SeuratObject::pbmc_small
  before <- q
  expect_one_line(q <- RunCLAMS(q, model = tiny_model(), prefix = ""), "prefix",
                  "single non-empty string")
  expect_one_line(q <- RunCLAMS(q, model = tiny_model(), prefix = NA), "prefix",
                  "single non-empty string")
  expect_identical(q, before)
})

test_that("a query with 0 cells (Seurat, matrix, SingleCellExperiment): one line", {
  skip_if_no_pyclams()
  empty <- counts_of()[, 0]
  q <- SeuratObject::CreateSeuratObject(empty)
  before <- q
  expect_one_line(q <- RunCLAMS(q, model = tiny_model(), verbose = FALSE), "0 cells")
  expect_identical(q, before)
  expect_one_line(RunCLAMS(empty, model = tiny_model(), verbose = FALSE),
                  "The query matrix has 0 cells")
  skip_if_not_installed("SingleCellExperiment")
  sce <- SingleCellExperiment::SingleCellExperiment(list(counts = empty))
  before <- sce
  expect_one_line(sce <- RunCLAMS(sce, model = tiny_model(), verbose = FALSE), "0 cells")
  expect_identical(sce, before)
})

test_that("a matrix without dimnames: one line", {
  skip_if_no_pyclams()
  x <- as.matrix(counts_of())
  dimnames(x) <- NULL
  expect_one_line(RunCLAMS(x, model = tiny_model(), verbose = FALSE),
                  "needs gene names (rows) and cell names (columns)")
  expect_one_line(TrainCLAMS(x, labels.by = rep(c("a", "b"), 40)),
                  "needs gene names (rows) and cell names (columns)")
})

test_that("max.epochs 0 or -1, batch.size 0: one line each", {
  expect_one_line(clams_options(max.epochs = 0), "max.epochs", "whole number >= 1")
  expect_one_line(clams_options(max.epochs = -1), "max.epochs", "whole number >= 1")
  expect_one_line(clams_options(batch.size = 0), "batch.size", "whole number >= 2")
})

test_that("duplicated cell names: one line", {
  skip_if_no_pyclams()
  x <- counts_of()
  colnames(x)[2] <- colnames(x)[1]
  expect_one_line(RunCLAMS(x, model = tiny_model(), verbose = FALSE),
                  "duplicated cell names", colnames(x)[1])
})

# ---------------------------------------------------------------------------- good cases
test_that("legitimate: a class renamed in config.json loads and labels with the new name", {
  skip_if_no_pyclams()
  d <- edited_model(withr::local_tempdir(), function(cfg) {
    cfg$classes[[1]]$name <- "renamed"
    cfg
  })
  m <- LoadCLAMS(d, device = "cpu")
  expect_identical(m$classes, c("renamed", "1"))
  res <- suppressWarnings(RunCLAMS(counts_of(), model = m, verbose = FALSE))
  expect_true("renamed" %in% levels(res$label_raw))
})

test_that("good: RunCLAMS twice needs overwrite = TRUE; without it the object is unchanged", {
  skip_if_no_pyclams()
  q <- suppressWarnings(RunCLAMS(SeuratObject::pbmc_small, model = tiny_model(),
                                 verbose = FALSE))
  before <- q
  expect_one_line(q <- RunCLAMS(q, model = tiny_model(), verbose = FALSE),
                  "already has", "overwrite = TRUE")
  expect_identical(q, before)
  q2 <- suppressWarnings(RunCLAMS(q, model = tiny_model(), overwrite = TRUE, ood.fdr = 0.2,
                                  verbose = FALSE))
  expect_equal(SeuratObject::Misc(q2, "clams")$ood.fdr, 0.2)
  expect_identical(q2$clams_label_raw, q$clams_label_raw)
})

test_that("good: a model saved by Python loads in R, one saved by SaveCLAMS in Python", {
  skip_if_no_pyclams()
  dir <- withr::local_tempdir()
  py <- reticulate::import("pyclams")
  py$load(tiny_model()$path, device = "cpu")$save(file.path(dir, "from_python"))
  m <- LoadCLAMS(file.path(dir, "from_python"), device = "cpu")
  expect_identical(m$model.id, tiny_model()$model.id)
  expect_identical(m$classes, tiny_model()$classes)
  saved <- SaveCLAMS(m, file.path(dir, "from_r"))
  back <- py$load(saved$path, device = "cpu")
  expect_identical(as.character(unlist(back$classes)), m$classes)
  expect_identical(as.character(back$model_id), m$model.id)
  expect_identical(sort(list.files(dir, all.files = TRUE, no.. = TRUE)),
                   c("from_python", "from_r"))
})
