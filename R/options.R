#' Training options for CLAMS
#'
#' Collects and checks the settings of a CLAMS model; they become the Python configuration
#' (`CLAMS(preset, n_top_genes, network, train, sgld, generative)`). `NULL` keeps the Python
#' default (shown in brackets).
#'
#' @param preset `"clams"` (the default: generative loss with ELU clipping and a stochastic
#'   unit), `"jem"` (no regulariser), `"classifier"` (no generative loss), or the other EBMs of
#'   the paper's comparison: `"vera"`, `"hdge"`, `"hdge_jem"`.
#' @param n.top.genes Highly variable genes chosen on the reference \[2000; all variable genes
#'   when there are fewer\].
#' @param max.epochs,batch.size Training epochs \[40\] and minibatch size \[128\].
#' @param sgld.steps,sgld.step.size,sgld.noise Langevin steps per update \[20\], step size
#'   \[automatic: min(1, 1 / the base measure's largest curvature)\] and noise sd \[0.01\].
#' @param buffer.size,reinit.freq,buffer.classes Replay buffer size \[10000\], restart
#'   probability \[0.05\] and class mix (`"proportional"` \[default\] or `"balanced"`).
#' @param clip,p.on,threshold Regulariser of the generative loss: clipping (`"none"`,
#'   `"elu"`, `"relu"`, `"leakyrelu"`), probability that it is back-propagated at a step, hard
#'   threshold (preset defaults).
#' @param ... Expert settings as named lists with the Python field names: `network`
#'   (e.g. `list(widths = c(256, 128), blocks_per_stage = 2, dropout = 0.1)`), `train`
#'   (`lr`, `weight_decay`, `patience`, `min_epochs`, `min_steps_per_epoch`, `val_fraction`,
#'   `test_fraction`, ...), `sgld` (`init_noise`, ...) and `generative` (`weight`, ...).
#'   The named arguments above take precedence.
#' @return A `clams_options` object (a list).
#' @examples
#' clams_options(max.epochs = 20, sgld.steps = 10)
#' # tiny settings for quick tests
#' clams_options(n.top.genes = 200, max.epochs = 3, buffer.size = 200, sgld.steps = 5,
#'               network = list(widths = 32, blocks_per_stage = 1),
#'               train = list(min_epochs = 1, min_steps_per_epoch = 5))
#' @export
clams_options <- function(preset = "clams", n.top.genes = 2000, max.epochs = NULL,
                          batch.size = NULL, sgld.steps = NULL, sgld.step.size = NULL,
                          sgld.noise = NULL, buffer.size = NULL, reinit.freq = NULL,
                          buffer.classes = NULL, clip = NULL, p.on = NULL, threshold = NULL,
                          ...) {
  .check_choice(preset, "preset", c("clams", "jem", "classifier", "vera", "hdge", "hdge_jem"))
  .check_whole(n.top.genes, "n.top.genes", min = 1)
  .check_whole(max.epochs, "max.epochs", min = 1)
  .check_whole(batch.size, "batch.size", min = 2)
  .check_whole(sgld.steps, "sgld.steps", min = 1)
  .check_number(sgld.step.size, "sgld.step.size", lower = 0, lower.open = TRUE)
  .check_number(sgld.noise, "sgld.noise", lower = 0)
  .check_whole(buffer.size, "buffer.size", min = 1)
  .check_number(reinit.freq, "reinit.freq", lower = 0, upper = 1)
  .check_choice(buffer.classes, "buffer.classes", c("proportional", "balanced"))
  .check_choice(clip, "clip", c("none", "elu", "relu", "leakyrelu"))
  .check_number(p.on, "p.on", lower = 0, upper = 1)
  .check_number(threshold, "threshold")
  extra <- list(...)
  groups <- c("network", "train", "sgld", "generative")
  if (length(extra)) {
    nm <- names(extra)
    if (is.null(nm) || any(!nzchar(nm))) {
      cli::cli_abort("Extra options must be named: one of {.arg {groups}}.", call = NULL)
    }
    bad <- setdiff(nm, groups)
    if (length(bad)) {
      cli::cli_abort(c("Unknown {qty(length(bad))}option{?s} {.arg {bad}}.",
                       i = "Named options are those of {.fn clams_options}; expert settings go in the lists {.arg {groups}}."),
                     call = NULL)
    }
    for (g in nm) {
      v <- extra[[g]]
      if (!is.list(v) || (length(v) && (is.null(names(v)) || any(!nzchar(names(v)))))) {
        cli::cli_abort("{.arg {g}} must be a named list of settings, e.g. {.code {g} = list(...)}.",
                       call = NULL)
      }
      names(v) <- gsub(".", "_", names(v), fixed = TRUE)
      extra[[g]] <- v
    }
  }
  pick <- function(x) Filter(Negate(is.null), x)
  train <- utils::modifyList(extra$train %||% list(),
                             pick(list(max_epochs = max.epochs, batch_size = batch.size)))
  sgld <- utils::modifyList(extra$sgld %||% list(),
                            pick(list(n_steps = sgld.steps, step_size = sgld.step.size,
                                      noise = sgld.noise, buffer_size = buffer.size,
                                      reinit_freq = reinit.freq,
                                      buffer_classes = buffer.classes)))
  generative <- utils::modifyList(extra$generative %||% list(),
                                  pick(list(clip = clip, p_on = p.on, threshold = threshold)))
  structure(list(preset = preset, n.top.genes = n.top.genes,
                 network = extra$network %||% list(), train = train, sgld = sgld,
                 generative = generative),
            class = "clams_options")
}

#' @export
print.clams_options <- function(x, ...) {
  cat("<clams_options> preset ", x$preset, ", ", x$n.top.genes, " top genes\n", sep = "")
  for (g in c("network", "train", "sgld", "generative")) {
    v <- x[[g]]
    if (length(v)) {
      txt <- vapply(v, function(e) paste(format(e), collapse = ","), "")
      cat("  ", g, ": ", paste(names(v), txt, sep = " = ", collapse = ", "), "\n", sep = "")
    }
  }
  invisible(x)
}

# The Python dict for pyclams.r_bridge.new_model(): whole numbers become integers there.
.options_to_py <- function(opts) {
  if (is.null(opts)) opts <- clams_options()
  if (!inherits(opts, "clams_options")) {
    cli::cli_abort("{.arg .options} must come from {.fn clams_options}, not {.cls {class(opts)}}.",
                   call = NULL)
  }
  # named R lists become dicts; an empty list becomes [] and means "defaults" in Python
  list(preset = opts$preset, n_top_genes = as.integer(opts$n.top.genes),
       network = opts$network, train = opts$train, sgld = opts$sgld,
       generative = opts$generative)
}

# ---------------------------------------------------------------------------- checks
.check_whole <- function(x, name, min = -Inf) {
  if (is.null(x)) return(invisible())
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || !is.finite(x) || x != round(x) ||
      x < min) {
    cli::cli_abort("{.arg {name}} must be a whole number >= {min}, not {.val {format(x)}}.",
                   class = "pyclams_input_error", call = NULL)
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
    cli::cli_abort("{.arg {name}} must be a number in {range}, not {.val {format(x)}}.",
                   class = "pyclams_input_error", call = NULL)
  }
  invisible()
}

.check_choice <- function(x, name, choices) {
  if (is.null(x)) return(invisible())
  if (!is.character(x) || length(x) != 1L || is.na(x) || !x %in% choices) {
    cli::cli_abort("{.arg {name}} must be one of {.val {choices}}, not {.val {format(x)}}.",
                   class = "pyclams_input_error", call = NULL)
  }
  invisible()
}

.check_flag <- function(x, name) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    cli::cli_abort("{.arg {name}} must be TRUE or FALSE.", class = "pyclams_input_error",
                   call = NULL)
  }
  invisible()
}

.check_string <- function(x, name, null.ok = FALSE) {
  if (is.null(x) && null.ok) return(invisible())
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    cli::cli_abort("{.arg {name}} must be a single non-empty string.",
                   class = "pyclams_input_error", call = NULL)
  }
  invisible()
}
