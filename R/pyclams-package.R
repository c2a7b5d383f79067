#' pyclams: energy-based cell-type annotation with out-of-distribution detection
#'
#' R interface to the Python package pyclams (CLAMS: energy-based modelling for single-cell
#' data annotation). Main functions: [RunCLAMS()] (annotate a Seurat object, a
#' SingleCellExperiment or a matrix, training on a reference or using a saved model),
#' [TrainCLAMS()], [LoadCLAMS()], [SaveCLAMS()] and [clams_options()]. The Python side is
#' found as described in [pyclams_python()] and installed by [install_pyclams()].
#'
#' @keywords internal
"_PACKAGE"

## usethis namespace: start
#' @importFrom methods is
#' @importFrom cli qty
## usethis namespace: end
NULL

.onLoad <- function(libname, pkgname) {
  # Nothing starts Python here: the Python package is imported on first use (see
  # pyclams_python()), so that options(pyclams.python = ) set after library(pyclams) count.
  invisible()
}
