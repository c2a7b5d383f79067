#!/usr/bin/env bash
# Set up pyclams on a fresh Debian/Ubuntu machine: R from Debian (for the R package and the R
# baselines), a virtualenv at .venv with CPU torch, and pyclams with its extras.
# Users with a GPU: install their own CUDA torch into .venv first (pip install torch), then run
# this script with PYCLAMS_KEEP_TORCH=1.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if [ "${PYCLAMS_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  need=""
  for pkg in python3-venv python3-dev build-essential r-base-core r-base-dev r-cran-seurat \
             r-cran-seuratobject r-cran-reticulate r-bioc-singlecellexperiment r-bioc-singler \
             r-bioc-scran r-cran-testthat r-cran-jsonlite r-cran-matrix r-cran-cli \
             r-cran-e1071 r-cran-kernlab r-cran-caret r-cran-knitr r-cran-rmarkdown r-cran-withr \
             pandoc; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    echo "setup: installing Debian packages:$need"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "${PYCLAMS_KEEP_TORCH:-0}" != 1 ]; then
  # CPU build; a plain `pip install torch` would pull several GB of CUDA packages
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
extras="dev,bench"
command -v R >/dev/null && extras="dev,bench,r"
.venv/bin/python -m pip install -q -e ".[$extras]"
if command -v R >/dev/null && [ "${PYCLAMS_SKIP_R:-0}" != 1 ]; then
  # the R package at the repository root; installed from here it records ./.venv as its Python
  lib=$(Rscript -e 'cat(.libPaths()[1])')
  if [ ! -w "$lib" ]; then
    lib=$(Rscript -e 'cat(path.expand(Sys.getenv("R_LIBS_USER")))')
    mkdir -p "$lib"
  fi
  R CMD INSTALL -l "$lib" . >.venv/r-install.log 2>&1 \
    || { cat .venv/r-install.log; echo "setup: R CMD INSTALL failed" >&2; exit 1; }
  echo "setup: R package pyclams installed in $lib (Python: $PWD/.venv)"
fi
echo "setup: done (.venv, extras: $extras)"
