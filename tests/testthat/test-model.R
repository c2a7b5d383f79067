# config.json, read by R through one helper (no Python needed)

no_value <- function(x) is.null(x) || isTRUE(is.na(x))

write_config <- function(dir, txt) {
  dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  writeLines(txt, file.path(dir, "config.json"))
  dir
}

good_config <- '{"format": "pyclams-model", "format_version": 1, "pyclams_version": "0.1.0",
  "model_id": "0123456789abcdef", "preset": "clams",
  "classes": [{"name": "B", "n_cells": 10}, {"name": "T", "n_cells": 20}],
  "preprocess": {"genes": ["G1", "G2", "G3"], "input_kind": "counts"},
  "calibration": {"temperature": 1.5, "n_scores": 6},
  "metrics": {"test_accuracy": %s, "test_ece": null, "note": "NaN in a string"}}'

test_that("config.json: strict JSON, and NaN / Infinity of older files, are read", {
  d <- write_config(withr::local_tempdir(), sprintf(good_config, "0.9"))
  m <- pyclams:::.new_clams_model(d)
  expect_s3_class(m, "clams_model")
  expect_identical(m$classes, c("B", "T"))
  expect_identical(m$class.counts, c(B = 10L, T = 20L))
  expect_identical(m$genes, c("G1", "G2", "G3"))
  expect_identical(m[c("model.id", "preset", "pyclams.version")],
                   list(model.id = "0123456789abcdef", preset = "clams",
                        pyclams.version = "0.1.0"))
  expect_true(no_value(m$config$metrics$test_ece))
  old <- pyclams:::.read_config(write_config(withr::local_tempdir(),
                                             sprintf(good_config, "NaN")))
  expect_true(no_value(old$metrics$test_accuracy))
  expect_identical(old$metrics$note, "NaN in a string")     # strings are left alone
  inf <- pyclams:::.read_config(write_config(withr::local_tempdir(),
                                             sprintf(good_config, "-Infinity")))
  expect_true(no_value(inf$metrics$test_accuracy))
  out <- capture.output(print(m))
  expect_true(any(grepl("B  10", out, fixed = TRUE)))
  expect_true(any(grepl("held-out accuracy 0.900", out, fixed = TRUE)))
})

test_that("config.json: missing or malformed fields are named", {
  read <- function(txt) pyclams:::.read_config(write_config(withr::local_tempdir(), txt))
  expect_error(pyclams:::.read_config(withr::local_tempdir()), "config.json",
               class = "pyclams_input_error")
  expect_error(read("{not json"), "not valid JSON", class = "pyclams_input_error")
  expect_error(read('{"format": "other"}'), "not a pyclams model")
  cfg <- jsonlite::fromJSON(sprintf(good_config, "1"), simplifyVector = FALSE)
  drop <- function(...) {
    x <- cfg
    for (k in list(...)) x[[k]] <- NULL
    jsonlite::toJSON(x, auto_unbox = TRUE, null = "null")
  }
  expect_error(read(drop("classes")), "classes", class = "pyclams_input_error")
  expect_error(read(drop("model_id", "preset")), "model_id.*preset")
  expect_error(read(drop("pyclams_version")), "pyclams_version")
  no_genes <- cfg
  no_genes$preprocess$genes <- NULL
  expect_error(read(jsonlite::toJSON(no_genes, auto_unbox = TRUE)), "preprocess\\$genes")
  bad_classes <- cfg
  bad_classes$classes <- list(list(label = "B"))
  expect_error(read(jsonlite::toJSON(bad_classes, auto_unbox = TRUE)), "classes")
})
