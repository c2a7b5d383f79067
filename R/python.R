# Finding, checking and installing the Python side (the 'pyclams' Python package).

.state <- new.env(parent = emptyenv())

# Recorded when the package is installed from the repository (`R CMD INSTALL .`): the code in
# R/ is evaluated at install time with the working directory at the package source, so a
# `.venv` created there by scripts/setup.sh is found. Empty for installs from a tarball.
.install_source <- local({
  wd <- tryCatch(getwd(), error = function(e) "")
  if (nzchar(wd) && file.exists(file.path(wd, "pyproject.toml")) &&
      file.exists(file.path(wd, "pyclams", "__init__.py"))) {
    normalizePath(wd, winslash = "/")
  } else {
    ""
  }
})

.venv_python <- function(dir) {
  if (!nzchar(dir %||% "")) return("")
  for (p in c(file.path(dir, "bin", "python"), file.path(dir, "Scripts", "python.exe"))) {
    if (file.exists(p)) return(p)
  }
  ""
}

#' Which Python pyclams uses
#'
#' The R package calls the Python package `pyclams` through \pkg{reticulate}. The Python
#' interpreter is chosen once per R session, the first time a function needs it, in this order:
#' \enumerate{
#'   \item the environment variable `RETICULATE_PYTHON` (reticulate's own rule; it always wins);
#'   \item `options(pyclams.python = "...")`: a Python binary or a virtualenv directory;
#'   \item the `.venv` of the source tree the package was installed from, when it was installed
#'     with `R CMD INSTALL .` from the pyclams repository after `scripts/setup.sh`;
#'   \item the virtualenv `r-pyclams` created by [install_pyclams()];
#'   \item whatever reticulate finds by itself.
#' }
#' A path given by rule 1 or 2 that does not exist is an error (of class
#' `pyclams_python_error`). Once Python has started in an R session it cannot be changed
#' (restart R).
#'
#' `pyclams_python()` tells which interpreter will be (or is) used without starting it;
#' `pyclams_available()` tells whether the Python package can be imported (and starts Python).
#'
#' @return `pyclams_python()`: a list with `python` (path or `NA`), `source` (which rule chose
#'   it) and `initialized` (whether Python runs already). `pyclams_available()`: `TRUE` or
#'   `FALSE`.
#' @seealso [install_pyclams()]
#' @examples
#' pyclams_python()
#' @export
pyclams_python <- function() {
  if (reticulate::py_available(initialize = FALSE)) {
    return(list(python = reticulate::py_config()$python, source = "running",
                initialized = TRUE))
  }
  .configured_python()
}

# The rules of pyclams_python() before Python starts. A Python named by RETICULATE_PYTHON or
# options(pyclams.python) that does not exist is an error here, before reticulate tries it.
.configured_python <- function() {
  env <- Sys.getenv("RETICULATE_PYTHON")
  if (nzchar(env)) {
    if (!file.exists(env)) {
      .input_error("{.envvar RETICULATE_PYTHON} is {.path {env}}: that path does not exist; set it to a Python that has pyclams (or unset it) and restart R.",
                   class = "pyclams_python_error")
    }
    return(list(python = env, source = "RETICULATE_PYTHON", initialized = FALSE))
  }
  opt <- getOption("pyclams.python")
  if (!is.null(opt)) {
    if (!is.character(opt) || length(opt) != 1L || is.na(opt) || !nzchar(opt)) {
      .input_error("{.code options(pyclams.python = )} must be one path (a Python binary or a virtualenv).",
                   class = "pyclams_python_error")
    }
    if (!file.exists(opt)) {
      .input_error("{.code options(pyclams.python = {.str {opt}})}: that path does not exist; give a Python binary or a virtualenv directory (with bin/python).",
                   class = "pyclams_python_error")
    }
    py <- if (dir.exists(opt)) .venv_python(opt) else opt
    if (!nzchar(py)) {
      .input_error("{.code options(pyclams.python = {.str {opt}})} names no Python: give a Python binary or a virtualenv directory (with bin/python).",
                   class = "pyclams_python_error")
    }
    return(list(python = py, source = "options(pyclams.python)", initialized = FALSE))
  }
  py <- .venv_python(if (nzchar(.install_source)) file.path(.install_source, ".venv") else "")
  if (nzchar(py)) return(list(python = py, source = "installation .venv", initialized = FALSE))
  py <- .venv_python(.r_pyclams_venv())
  if (nzchar(py)) return(list(python = py, source = "virtualenv r-pyclams", initialized = FALSE))
  list(python = NA_character_, source = "reticulate default", initialized = FALSE)
}

.r_pyclams_venv <- function(envname = "r-pyclams") {
  root <- Sys.getenv("WORKON_HOME", unset = file.path(path.expand("~"), ".virtualenvs"))
  file.path(root, envname)
}

#' @rdname pyclams_python
#' @export
pyclams_available <- function() {
  isTRUE(tryCatch({
    .clams_py()
    TRUE
  }, error = function(e) FALSE))
}

.fix_command <- function(python = NULL) {
  if (nzchar(.install_source) && !is.null(python) && !is.na(python)) {
    sprintf("%s -m pip install -e \"%s\"", python, .install_source)
  } else {
    "pyclams::install_pyclams(package = \"/path/to/pyclams-repository\")"
  }
}

# The imported Python modules (pyclams, pyclams.r_bridge, pyclams.result, pyclams.io), cached
# for the session.
.clams_py <- function() {
  if (!is.null(.state$py)) return(.state$py)
  choice <- pyclams_python()
  if (!choice$initialized && !is.na(choice$python) && choice$source != "RETICULATE_PYTHON") {
    reticulate::use_python(choice$python, required = TRUE)
    # reticulate (1.28) takes a pyproject.toml at the project root (here::here()) for a
    # Poetry project before looking at use_python(): the pyclams repository has one
    if (is.null(getOption("reticulate.poetry.project"))) {
      old <- options(reticulate.poetry.project = tempdir())
      on.exit(options(old), add = TRUE)
    }
  }
  # before anything imports torch (py_module_available() imports the module it checks)
  .import_torch_deepbind()
  ok <- tryCatch(reticulate::py_module_available("pyclams"), error = function(e) e)
  python <- tryCatch(reticulate::py_config()$python, error = function(e) NA_character_)
  fix <- .fix_command(python)
  if (inherits(ok, "error") || !isTRUE(ok)) {
    why <- if (inherits(ok, "error")) conditionMessage(ok) else "the module is not installed there"
    cli::cli_abort(c(
      "The Python package {.pkg pyclams} is not available in Python {.path {python}}.",
      x = "{why}",
      i = "Fix: run {.code {fix}} (or set {.envvar RETICULATE_PYTHON} / {.code options(pyclams.python = )} to a Python that has it), then restart R.",
      i = if (nzchar(.install_source)) "Or create a new environment with {.code pyclams::install_pyclams()} and restart R."
    ), class = "pyclams_python_error", call = NULL)
  }
  mod <- tryCatch(reticulate::import("pyclams"), error = function(e) e)
  if (inherits(mod, "error")) {
    .python_error("The Python package {.pkg pyclams} failed to import in {.path {python}}.",
                  conditionMessage(mod), fix)
  }
  py_version <- as.character(mod$`__version__`)
  r_version <- as.character(utils::packageVersion("pyclams"))
  same <- function(v) paste(unlist(strsplit(v, ".", fixed = TRUE))[1:2], collapse = ".")
  if (!identical(same(py_version), same(r_version))) {
    cli::cli_abort(c(
      "Python package {.pkg pyclams} {py_version} (in {.path {python}}) does not match the R package {r_version}.",
      i = "Fix: run {.code {fix}} to install the matching Python package, then restart R."
    ), class = "pyclams_python_error", call = NULL)
  }
  bridge <- tryCatch(reticulate::import("pyclams.r_bridge"), error = function(e) e)
  if (inherits(bridge, "error")) {
    .python_error("The Python package {.pkg pyclams} in {.path {python}} lacks the R bridge.",
                  conditionMessage(bridge), fix)
  }
  .state$py <- list(pyclams = mod, bridge = bridge, result = reticulate::import("pyclams.result"),
                    io = reticulate::import("pyclams.io"), python = python,
                    version = py_version)
  .state$py
}

# The result schema, from Python (pyclams.result): the per-cell fields, in order (R's columns
# are `<prefix>_<field>`, as Python's are `<key_added>_<field>`), and the label of cells
# flagged OOD.
.schema <- function() {
  if (is.null(.state$schema)) {
    py <- .clams_py()
    .state$schema <- list(fields = as.character(unlist(py$result$RESULT_FIELDS)),
                          unknown = as.character(py$result$UNKNOWN))
  }
  .state$schema
}

.python_error <- function(what, why, fix) {
  cli::cli_abort(c(what, x = "{why}", i = "Fix: run {.code {fix}}, then restart R."),
                 class = "pyclams_python_error", call = NULL, .envir = parent.frame())
}

# R links the system BLAS into the process with global symbols; torch's own (MKL) BLAS
# symbols would then resolve to R's library (on Debian the slow reference BLAS): 15-35x
# slower training and results that differ from Python's. Importing torch with RTLD_DEEPBIND
# (Linux) makes torch use its own symbols. Opt out with options(pyclams.deepbind = FALSE).
.import_torch_deepbind <- function() {
  if (!isTRUE(getOption("pyclams.deepbind", TRUE))) return(invisible(FALSE))
  code <- paste(
    "import os as _os, sys as _sys",
    "_pyclams_db = False",
    "if hasattr(_os, 'RTLD_DEEPBIND') and 'torch' not in _sys.modules:",
    "    _f = _sys.getdlopenflags()",
    "    _sys.setdlopenflags(_f | _os.RTLD_DEEPBIND)",
    "    try:",
    "        import torch as _torch",
    "        _pyclams_db = True",
    "    finally:",
    "        _sys.setdlopenflags(_f)",
    sep = "\n")
  res <- tryCatch(reticulate::py_run_string(code, local = TRUE), error = function(e) NULL)
  invisible(isTRUE(res[["_pyclams_db"]]))
}

# Run a Python call; turn a Python exception into an R error with the Python message. A
# user's error (PyClamsInputError, ModelFormatError: one line in Python) stays one line,
# "<what>: <message>", in R's terms (.in_r_terms), of class "pyclams_input_error"; anything
# else keeps Python's message under "<what>.".
.py_try <- function(expr, what = NULL, call = NULL) {
  tryCatch(expr, error = function(e) {
    msg <- conditionMessage(e)
    msg <- sub("^Error in py_call_impl\\(.*?\\) *: *", "", msg)
    msg <- sub("\\s*Run `reticulate::py_last_error\\(\\)` for details\\.?\\s*$", "", msg)
    msg <- trimws(msg)
    if (grepl("^pyclams\\.errors\\.(PyClamsInputError|ModelFormatError): ", msg)) {
      msg <- .in_r_terms(sub("^pyclams\\.errors\\.[A-Za-z]+: ", "", msg))
      msg <- paste(c(what, msg), collapse = ": ")
      substr(msg, 1L, 1L) <- toupper(substr(msg, 1L, 1L))
      cli::cli_abort("{msg}", class = c("pyclams_input_error", "pyclams_error"), call = call,
                     parent = NA)
    }
    bullets <- c(x = "{msg}")
    if (!is.null(what)) bullets <- c(paste0(what, "."), bullets)
    cli::cli_abort(bullets, class = "pyclams_error", call = call, parent = NA)
  })
}

# What Python's messages tell a Python user to do, as an R user does it: Python's argument
# names and calls, in the order applied (the longer phrases first).
.r_terms <- c(
  "pass is_log=False if these are (non-integer) counts, is_log=True if already log-normalised" =
    'round non-integer counts first (round()), or pass layer = "data" if these are log-normalised values',
  "is_log=True" = 'layer = "data"',
  "overwrite=True" = "overwrite = TRUE",
  "min_gene_overlap" = "min.gene.overlap",
  "ood_fdr" = "ood.fdr",
  "key_added" = "prefix",
  "e.g. sc.pp.filter_cells(adata, min_counts=1)" = "e.g. with subset()",
  "adata.var_names_make_unique()" = "make.unique() on the gene names",
  "adata.obs_names_make_unique()" = "make.unique() on the cell names",
  "query X" = "the query",
  "adata.X" = "the matrix")

# One line (Python's input errors are one line; whitespace runs are collapsed), in R's terms.
.in_r_terms <- function(msg) {
  msg <- gsub("\\s+", " ", msg)
  for (k in seq_along(.r_terms)) msg <- gsub(names(.r_terms)[k], .r_terms[[k]], msg, fixed = TRUE)
  msg
}

# ---------------------------------------------------------------------------- data to Python
# Any genes x cells matrix as a dgCMatrix (sparse input stays sparse; no dense copy of
# sparse data is ever made).
.as_dgc <- function(m) {
  if (inherits(m, "dgCMatrix")) return(m)
  if (is.data.frame(m)) m <- as.matrix(m)
  out <- tryCatch({
    if (!methods::is(m, "Matrix")) {
      if (methods::is(m, "DelayedArray")) m <- methods::as(m, "dgCMatrix")
      else m <- Matrix::Matrix(m, sparse = TRUE)
    }
    methods::as(methods::as(methods::as(m, "CsparseMatrix"), "generalMatrix"), "dMatrix")
  }, error = function(e) {
    .input_error("Cannot use a {.cls {class(m)}} as an expression matrix: {conditionMessage(e)}")
  })
  if (!inherits(out, "dgCMatrix")) out <- methods::as(out, "dgCMatrix")
  out
}

# A genes x cells matrix (checked by .check_matrix) -> AnnData (cells x genes, CSR) in
# Python, through the three slots of the dgCMatrix. `obs`: optional named list of per-cell
# vectors (NA -> None).
.to_anndata <- function(m, obs = NULL) {
  m <- .as_dgc(m)
  py <- .clams_py()
  obs_py <- lapply(obs, function(v) {
    v <- as.character(v)
    out <- as.list(v)
    out[is.na(v)] <- list(NULL)
    out
  })
  .py_try(py$bridge$anndata_from_csc(
    reticulate::np_array(m@x, dtype = "float64"),
    reticulate::np_array(m@i, dtype = "int32"),
    reticulate::np_array(m@p, dtype = "int64"),
    nrow(m), ncol(m), as.list(rownames(m)), as.list(colnames(m)),
    if (length(obs_py)) obs_py))
}

#' Install the Python side of pyclams
#'
#' Creates a Python virtualenv (by default `r-pyclams`, where [pyclams_python()] looks for
#' it), installs `torch` and then the Python package `pyclams` into it.
#'
#' @param envname Name of the virtualenv (under `WORKON_HOME`, default `~/.virtualenvs`) or a
#'   path.
#' @param torch Version of `torch` to install first (`NULL`: let pip choose, or keep what is
#'   there). On Linux the default wheel from PyPI pulls CUDA libraries (several GB); pass
#'   `torch.index = "https://download.pytorch.org/whl/cpu"` for the CPU build.
#' @param torch.index Optional pip index URL for torch.
#' @param package What pip installs for pyclams: the repository (a path), a wheel or a pip
#'   requirement. Default: the source tree the R package was installed from (editable), when
#'   it was installed with `R CMD INSTALL .` from the repository.
#' @param extras Extras of the Python package (e.g. `"r"` adds rpy2 and anndata2ri).
#' @param python Python used to create the virtualenv (default: `python3` on the `PATH`).
#' @param pip.options Further options for `pip install` (e.g. `"--no-deps"`).
#' @param dry.run Only return the commands.
#' @return The commands run (invisibly).
#' @examples
#' install_pyclams(package = "/path/to/pyclams", dry.run = TRUE)
#' @export
install_pyclams <- function(envname = "r-pyclams", torch = "2.13.0", torch.index = NULL,
                            package = NULL, extras = NULL, python = NULL,
                            pip.options = character(), dry.run = FALSE) {
  dir <- if (grepl("[/\\\\]", envname)) envname else .r_pyclams_venv(envname)
  python <- python %||% Sys.which("python3")
  if (!nzchar(python)) cli::cli_abort("No {.code python3} on the PATH: pass {.arg python}.")
  if (is.null(package)) {
    if (!nzchar(.install_source)) {
      cli::cli_abort(c("Where is the Python package? This R package was not installed from the pyclams repository.",
                       i = "Pass {.arg package}: the repository (e.g. {.code package = \"/path/to/pyclams\"}), a wheel, or a pip requirement."),
                     call = NULL)
    }
    package <- c("-e", .install_source)
  }
  if (length(extras)) {
    n <- length(package)
    package[n] <- sprintf("%s[%s]", package[n], paste(extras, collapse = ","))
  }
  vpy <- file.path(dir, "bin", "python")
  cmds <- list(
    if (!file.exists(vpy)) c(python, "-m", "venv", dir),
    c(vpy, "-m", "pip", "install", "--upgrade", "pip"),
    if (!is.null(torch)) c(vpy, "-m", "pip", "install", pip.options,
                           if (!is.null(torch.index)) c("--index-url", torch.index),
                           sprintf("torch==%s", torch)),
    c(vpy, "-m", "pip", "install", pip.options, package)
  )
  cmds <- Filter(Negate(is.null), cmds)
  shown <- vapply(cmds, function(x) paste(shQuote(x), collapse = " "), "")
  if (dry.run) return(invisible(shown))
  for (k in seq_along(cmds)) {
    cli::cli_inform("Running {.code {shown[k]}}")
    status <- system2(cmds[[k]][1], cmds[[k]][-1])
    if (!identical(as.integer(status), 0L)) {
      cli::cli_abort("{.code {shown[k]}} failed (exit status {status}).")
    }
  }
  found <- normalizePath(dir, mustWork = FALSE) ==
    normalizePath(.r_pyclams_venv(), mustWork = FALSE)
  cli::cli_inform(c(v = "pyclams installed in {.path {dir}}.",
                    i = if (found) "Restart R: pyclams finds this environment by itself."
                        else "Restart R and set {.code options(pyclams.python = {.str {dir}})}."))
  invisible(shown)
}
