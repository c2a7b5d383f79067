test_that("clams_options() has the Python defaults and converts names", {
  o <- clams_options()
  expect_s3_class(o, "clams_options")
  expect_equal(o$preset, "clams")
  expect_equal(o$n.top.genes, 2000)
  expect_length(o$train, 0)
  o <- clams_options(preset = "jem", n.top.genes = 500, max.epochs = 7, batch.size = 64,
                     sgld.steps = 10, sgld.step.size = 0.5, sgld.noise = 0, buffer.size = 300,
                     reinit.freq = 0.1, buffer.classes = "balanced", clip = "relu",
                     p.on = 0.5, threshold = -1,
                     train = list(min.epochs = 2, lr = 1e-3), network = list(widths = 64))
  py <- pyclams:::.options_to_py(o)
  expect_identical(py$n_top_genes, 500L)
  expect_equal(py$train, list(min_epochs = 2, lr = 1e-3, max_epochs = 7, batch_size = 64))
  expect_equal(py$sgld[c("n_steps", "step_size", "noise", "buffer_size", "reinit_freq",
                         "buffer_classes")],
               list(n_steps = 10, step_size = 0.5, noise = 0, buffer_size = 300,
                    reinit_freq = 0.1, buffer_classes = "balanced"))
  expect_equal(py$generative, list(clip = "relu", p_on = 0.5, threshold = -1))
  expect_equal(py$network, list(widths = 64))
  expect_output(print(o), "preset jem")
})

test_that("bad options give clear errors", {
  expect_error(clams_options(preset = "foo"), "preset")
  # the comparison EBMs left the package (issue 10): their presets are not options any more
  expect_error(clams_options(preset = "vera"), "preset", class = "pyclams_input_error")
  expect_error(clams_options(n.top.genes = 0), "n.top.genes")
  expect_error(clams_options(max.epochs = -1), "max.epochs")
  expect_error(clams_options(max.epochs = 2.5), "whole number")
  expect_error(clams_options(max.epochs = "10"), "max.epochs")
  expect_error(clams_options(batch.size = c(1, 2)), "batch.size")
  expect_error(clams_options(sgld.step.size = 0), "sgld.step.size")
  expect_error(clams_options(reinit.freq = 1.5), "reinit.freq")
  expect_error(clams_options(p.on = -0.1), "p.on")
  expect_error(clams_options(clip = "tanh"), "clip")
  expect_error(clams_options(buffer.classes = "equal"), "buffer.classes")
  expect_error(clams_options(threshold = NA_real_), "threshold")
  expect_error(clams_options(foo = 1), "Unknown option")
  expect_error(clams_options(train = list(1)), "named list")
  expect_error(do.call(clams_options, c(list("clams", 2000), rep(list(NULL), 11), list(1))),
               "must be named")
  expect_error(clams_options(train = 5), "named list")
  expect_error(clams_options(max.epochs = -1), class = "pyclams_input_error")
})

test_that("install_pyclams() builds the pip commands", {
  cmds <- install_pyclams(envname = file.path(tempdir(), "venv-x"), dry.run = TRUE,
                          torch.index = "https://download.pytorch.org/whl/cpu",
                          package = "pyclams==0.1.0")
  expect_true(any(grepl("-m' 'venv'", cmds)))
  expect_true(any(grepl("torch==2.13.0", cmds)))
  expect_true(any(grepl("whl/cpu", cmds)))
  expect_match(cmds[length(cmds)], "pyclams==0.1.0", fixed = TRUE)
})

test_that("pyclams_python() reports the choice without starting Python", {
  withr::with_envvar(c(RETICULATE_PYTHON = ""), withr::with_options(
    list(pyclams.python = file.path(tempdir(), "no-such-python")),
    if (!reticulate::py_available(initialize = FALSE)) {
      expect_error(pyclams_python(), "does not exist", class = "pyclams_python_error")
    }))
  p <- pyclams_python()
  expect_named(p, c("python", "source", "initialized"))
})

test_that("the OOD settings are one checked object, sent to Python as OODOptions' dict", {
  o <- pyclams:::.ood_options()
  expect_s3_class(o, "clams_ood_options")
  expect_identical(unclass(o), list(method = "conformal", fdr = 0.05, calibration = "query",
                                    min_confidence = 0.5, n_neighbors = 10L,
                                    label_mode = "auto"))
  s <- pyclams:::.run_settings("data", 0.2, "cpu", 1, FALSE, "RNA", ood.method = "max_prob",
                               min.confidence = 0.9, min.gene.overlap = 0.3, n.neighbors = 0,
                               label.mode = "cell")
  expect_s3_class(s, "clams_run_settings")
  expect_identical(unclass(s$ood), list(method = "max_prob", fdr = 0.2, calibration = "query",
                                        min_confidence = 0.9, n_neighbors = 0L,
                                        label_mode = "cell"))
  expect_identical(s[c("layer", "assay", "min.gene.overlap", "device", "seed")],
                   list(layer = "data", assay = "RNA", min.gene.overlap = 0.3, device = "cpu",
                        seed = 1))
  expect_identical(pyclams:::.run_settings(ood.fdr = NULL)$ood$fdr, 0.05)
  run <- function(...) pyclams:::.run_settings(...)
  expect_error(run(ood.fdr = 1.5), "ood.fdr", class = "pyclams_input_error")
  expect_error(run(ood.fdr = 0), "ood.fdr")
  expect_error(run(ood.method = "energy"), "ood.method")
  expect_error(run(calibration = "global"), "calibration")
  expect_error(run(n.neighbors = 2.5), "n.neighbors")
  expect_error(run(label.mode = "cluster"), "label.mode")
  expect_error(run(min.confidence = 2), "min.confidence")
  expect_error(run(min.gene.overlap = -1), "min.gene.overlap")
  expect_error(run(bogus = 1), "bogus")
  expect_error(run(1), "layer")
  expect_error(run(device = 3), "device")
  expect_error(run(seed = -1), "seed")
})
