# Argument checks. Each aborts with class "pyclams_input_error" and names the argument; a NULL
# value passes (it means "the default") unless the check says otherwise.

`%||%` <- function(x, y) if (is.null(x)) y else x

.input_error <- function(message, ..., class = NULL) {
  cli::cli_abort(message, ..., class = c(class, "pyclams_input_error"), call = NULL,
                 .envir = parent.frame())
}

.check_whole <- function(x, name, min = -Inf) {
  if (is.null(x)) return(invisible())
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || !is.finite(x) || x != round(x) ||
      x < min) {
    .input_error("{.arg {name}} must be a whole number >= {min}, not {.val {format(x)}}.")
  }
  invisible()
}

.check_number <- function(x, name, lower = -Inf, upper = Inf, lower.open = FALSE,
                          upper.open = FALSE) {
  if (is.null(x)) return(invisible())
  ok <- is.numeric(x) && length(x) == 1L && !is.na(x) && is.finite(x) &&
    (if (lower.open) x > lower else x >= lower) && (if (upper.open) x < upper else x <= upper)
  if (!ok) {
    range <- sprintf("%s%s, %s%s", if (lower.open) "(" else "[", lower, upper,
                     if (upper.open) ")" else "]")
    .input_error("{.arg {name}} must be a number in {range}, not {.val {format(x)}}.")
  }
  invisible()
}

.check_choice <- function(x, name, choices) {
  if (is.null(x)) return(invisible())
  if (!is.character(x) || length(x) != 1L || is.na(x) || !x %in% choices) {
    .input_error("{.arg {name}} must be one of {.val {choices}}, not {.val {format(x)}}.")
  }
  invisible()
}

.check_flag <- function(x, name) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    .input_error("{.arg {name}} must be TRUE or FALSE.")
  }
  invisible()
}

.check_string <- function(x, name, null.ok = FALSE) {
  if (is.null(x) && null.ok) return(invisible())
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    .input_error("{.arg {name}} must be a single non-empty string.")
  }
  invisible()
}

# `prefix` names the columns, the reduction and the Misc entry: it must make syntactic names.
.check_prefix <- function(prefix) {
  .check_string(prefix, "prefix")
  if (!grepl("^[A-Za-z][A-Za-z0-9._]*$", prefix)) {
    .input_error("{.arg prefix} must start with a letter and hold only letters, digits, '.' and '_', not {.val {prefix}}.")
  }
  invisible()
}

# No argument may be left in `...` (methods take `...` only to match the generic).
.check_dots <- function(...) {
  if (...length()) {
    nm <- names(list(...)) %||% rep("", ...length())
    nm[!nzchar(nm)] <- "<unnamed>"
    .input_error("Unknown {qty(length(nm))}argument{?s} {.arg {nm}}.")
  }
}

# Named arguments of `...` that must all be among `known`; returns them as a list.
.known_dots <- function(..., known) {
  extra <- list(...)
  nm <- names(extra) %||% rep("", length(extra))
  bad <- nm[!nm %in% known]
  if (length(bad)) {
    bad[!nzchar(bad)] <- "<unnamed>"
    .input_error(c("Unknown {qty(length(bad))}argument{?s} {.arg {bad}}.",
                   i = "Further settings are {.arg {known}}."))
  }
  extra
}

# The one check of an expression matrix given to RunCLAMS / TrainCLAMS (`what` names it in
# the messages): cells and genes, names on both sides, unique cell names, and genes as rows.
# `genes`: gene names it should hold (a model's genes, a reference's rows; `genes.of` says
# whose), to tell a transposed matrix; `n.labels`: the number of labels given for its cells.
.check_matrix <- function(m, what = "The expression matrix", genes = NULL, n.labels = NULL,
                          genes.of = "the model") {
  if (ncol(m) == 0L) .input_error("{what} has 0 cells: there is nothing to work on.")
  if (nrow(m) == 0L) .input_error("{what} has 0 genes: there is nothing to work on.")
  if (is.null(rownames(m)) || is.null(colnames(m))) {
    .input_error("{what} needs gene names (rows) and cell names (columns); set {.code rownames()} and {.code colnames()}.")
  }
  why <- .looks_transposed(m, genes, n.labels, genes.of)
  if (!is.null(why)) {
    .input_error("{what} looks transposed ({nrow(m)} rows x {ncol(m)} columns; {why}): genes must be rows and cells columns; pass its transpose {.code t()}.")
  }
  dup <- anyDuplicated(colnames(m))
  if (dup) {
    .input_error("{what} has duplicated cell names (e.g. {.val {colnames(m)[dup]}}); make them unique first, e.g. with {.code make.unique()}.")
  }
  invisible(m)
}

# A cells x genes matrix given for a genes x cells one: the expected genes are found among
# the column names rather than the row names, or the labels count the rows, or the row names
# look like cell barcodes (runs of 8 or more A/C/G/T) and the column names do not. Returns
# the reason, or NULL.
.looks_transposed <- function(m, genes = NULL, n.labels = NULL, genes.of = "the model") {
  if (length(genes)) {
    in_rows <- sum(rownames(m) %in% genes)
    in_cols <- sum(colnames(m) %in% genes)
    if (in_cols > in_rows) {
      return(sprintf("%d genes of %s are among its column names, %d among its row names",
                     in_cols, genes.of, in_rows))
    }
    if (in_rows > 0L) return(NULL)
  }
  if (!is.null(n.labels) && n.labels == nrow(m) && n.labels != ncol(m)) {
    return(sprintf("%d labels, one per row", n.labels))
  }
  barcodes <- function(x) mean(grepl("[ACGT]{8,}", utils::head(x, 1000L)))
  if (barcodes(rownames(m)) > 0.5 && barcodes(colnames(m)) < 0.5) {
    return("its row names look like cell barcodes")
  }
  NULL
}

# Refuse (before anything is computed) to replace the columns `<prefix>_<field>` or a
# reduction named `prefix`, unless `overwrite`. `fields`: the result fields (by default from
# Python's schema, pyclams.result.RESULT_FIELDS); `where`: what holds the columns.
.check_clash <- function(columns, reductions, prefix, overwrite, reduction, fields, where) {
  .check_prefix(prefix)
  .check_flag(overwrite, "overwrite")
  .check_flag(reduction, "reduction")
  if (overwrite) return(invisible())
  clash <- intersect(paste0(prefix, "_", fields %||% .schema()$fields), columns)
  if (length(clash)) {
    .input_error("The {where} already has {qty(length(clash))}column{?s} {.val {clash}}: pass {.code overwrite = TRUE} to replace {qty(length(clash))}{?it/them}, or choose another {.arg prefix}.")
  }
  if (reduction && prefix %in% reductions) {
    .input_error("A reduction named {.val {prefix}} exists already: pass {.code overwrite = TRUE}, {.code reduction = FALSE} or another {.arg prefix}.")
  }
  invisible()
}

.need <- function(pkg) {
  if (!requireNamespace(pkg, quietly = TRUE)) {
    cli::cli_abort("This needs the R package {.pkg {pkg}} (Debian: r-bioc-{tolower(pkg)}).",
                   call = NULL)
  }
}
