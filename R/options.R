#' Training options for CLAMS
#'
#' Collects and checks the settings of a CLAMS model; they become the Python configuration
#' (`CLAMS(preset, n_top_genes, network, train, sgld, generative)`). `NULL` keeps the Python
#' default (shown in brackets).
#'
#' @param preset `"clams"` (the default: generative loss with ELU clipping and a stochastic
#'   unit), `"jem"` (no regulariser) or `"classifier"` (no generative loss). The other EBMs of
#'   the paper's comparison live in the repository's `benchmarks/`, not in the package.
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
  .check_choice(preset, "preset", c("clams", "jem", "classifier"))
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
      .input_error("Extra options must be named: one of {.arg {groups}}.")
    }
    bad <- setdiff(nm, groups)
    if (length(bad)) {
      .input_error(c("Unknown {qty(length(bad))}option{?s} {.arg {bad}}.",
                     i = "Named options are those of {.fn clams_options}; expert settings go in the lists {.arg {groups}}."))
    }
    for (g in nm) {
      v <- extra[[g]]
      if (!is.list(v) || (length(v) && (is.null(names(v)) || any(!nzchar(names(v)))))) {
        .input_error("{.arg {g}} must be a named list of settings, e.g. {.code {g} = list(...)}.")
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
    .input_error("{.arg .options} must come from {.fn clams_options}, not {.cls {class(opts)}}.")
  }
  # named R lists become dicts; an empty list becomes [] and means "defaults" in Python
  list(preset = opts$preset, n_top_genes = as.integer(opts$n.top.genes),
       network = opts$network, train = opts$train, sgld = opts$sgld,
       generative = opts$generative)
}

# ---------------------------------------------------------------------------- OOD settings
# The settings of the OOD ("unknown") call, checked once; Python receives them as the dict of
# pyclams.ood.options.OODOptions (method, fdr, calibration, min_confidence, n_neighbors,
# label_mode).
.ood_options <- function(fdr = 0.05, method = "conformal", calibration = "query",
                         min.confidence = 0.5, n.neighbors = 10, label.mode = "auto") {
  .check_number(fdr, "ood.fdr", lower = 0, upper = 1, lower.open = TRUE, upper.open = TRUE)
  .check_choice(method, "ood.method", c("conformal", "max_prob"))
  .check_choice(calibration, "calibration", c("query", "class", "pooled"))
  .check_number(min.confidence, "min.confidence", lower = 0, upper = 1)
  .check_whole(n.neighbors, "n.neighbors", min = 0)
  .check_choice(label.mode, "label.mode", c("auto", "neighbourhood", "cell"))
  structure(list(method = method, fdr = fdr, calibration = calibration,
                 min_confidence = min.confidence, n_neighbors = as.integer(n.neighbors),
                 label_mode = label.mode),
            class = "clams_ood_options")
}

# Everything of a RunCLAMS call but the model, checked once: the query's layer and assay, the
# OOD settings (`ood.fdr` and, in `...`, `ood.method`, `calibration`, `min.confidence`,
# `n.neighbors`, `label.mode`), the
# share of the model's genes the query must have (`min.gene.overlap`), device and seed.
# Also called from Python (pyclams.r_bridge.annotate_rds) to record a run the same way.
.run_settings <- function(layer = "counts", ood.fdr = 0.05, device = "auto", seed = 0,
                          verbose = TRUE, assay = NULL, ...) {
  extra <- .known_dots(..., known = c("ood.method", "calibration", "min.confidence",
                                      "n.neighbors", "label.mode", "min.gene.overlap"))
  .check_string(layer, "layer")
  .check_string(assay, "assay", null.ok = TRUE)
  .check_string(device, "device")
  .check_whole(seed, "seed", min = 0)
  .check_flag(verbose, "verbose")
  .check_number(extra$min.gene.overlap, "min.gene.overlap", lower = 0, upper = 1)
  given <- list(fdr = ood.fdr, method = extra$ood.method, calibration = extra$calibration,
                min.confidence = extra$min.confidence, n.neighbors = extra$n.neighbors,
                label.mode = extra$label.mode)
  ood <- do.call(.ood_options, Filter(Negate(is.null), given))
  structure(list(layer = layer, assay = assay, ood = ood,
                 min.gene.overlap = extra$min.gene.overlap %||% 0.5, device = device,
                 seed = seed, verbose = verbose),
            class = "clams_run_settings")
}
