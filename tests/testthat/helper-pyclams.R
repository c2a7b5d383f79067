# Shared set-up for the tests: one CPU thread, the repository's .venv when present, tiny
# training settings and a model trained once per test run.

Sys.setenv(OMP_NUM_THREADS = "1", MKL_NUM_THREADS = "1")

# the repository root: the first of the working directory and its parents with a .venv
repo_root <- function() {
  d <- normalizePath(getwd())
  for (i in 1:4) {
    if (file.exists(file.path(d, "pyproject.toml")) && file.exists(file.path(d, "DESCRIPTION")))
      return(d)
    d <- dirname(d)
  }
  ""
}

local({
  venv <- file.path(repo_root(), ".venv")
  if (nzchar(repo_root()) && !nzchar(Sys.getenv("RETICULATE_PYTHON")) &&
      is.null(getOption("pyclams.python")) && file.exists(file.path(venv, "bin", "python"))) {
    options(pyclams.python = venv)
  }
})

skip_if_no_pyclams <- function() {
  testthat::skip_if_not(pyclams::pyclams_available(),
                        "the Python package pyclams is not available")
}

# Real data (README of /work/shared/data): PYCLAMS_SHARED_DATA or ../shared/data beside the
# repository.
shared_data <- function(file) {
  dirs <- c(Sys.getenv("PYCLAMS_SHARED_DATA"),
            if (nzchar(repo_root())) file.path(dirname(repo_root()), "shared", "data"),
            "/work/shared/data")
  for (d in dirs[nzchar(dirs)]) {
    p <- file.path(d, file)
    if (file.exists(p)) return(normalizePath(p))
  }
  ""
}

tiny_options <- function(...) {
  clams_options(n.top.genes = 200, max.epochs = 3, buffer.size = 200, sgld.steps = 5,
                network = list(widths = 32, blocks_per_stage = 1),
                train = list(min_epochs = 1, min_steps_per_epoch = 5), ...)
}

pbmc_ref <- function() {
  subset(SeuratObject::pbmc_small, cells = colnames(SeuratObject::pbmc_small)[
    SeuratObject::pbmc_small$RNA_snn_res.1 %in% c("0", "1")])
}

.test_cache <- new.env()

# A tiny model trained once on pbmc_small clusters 0 and 1.
tiny_model <- function() {
  if (is.null(.test_cache$model)) {
    .test_cache$model <- TrainCLAMS(pbmc_ref(), labels.by = "RNA_snn_res.1",
                                    path = file.path(tempdir(), "tiny_clams_model"),
                                    overwrite = TRUE, verbose = FALSE, device = "cpu",
                                    .options = tiny_options())
  }
  .test_cache$model
}
