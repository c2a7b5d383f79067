#!/usr/bin/env bash
# Build every vignette into vignettes/rendered/: the R Markdown ones (rmarkdown::render, HTML)
# and the Jupyter notebooks (executed by scripts/run_vignettes.py, kept with their outputs and
# as HTML). Run after scripts/setup.sh. A chunk or cell that errors stops the build (exit 1).
# ../shared/data beside the repository (or PYCLAMS_SHARED_DATA) enables the live benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
export RETICULATE_PYTHON=${RETICULATE_PYTHON:-$PWD/.venv/bin/python}
export PYCLAMS_REQUIRE_VIGNETTES=1
out=vignettes/rendered
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for rmd in vignettes/*.Rmd; do
  name=$(basename "$rmd" .Rmd)
  echo "== $rmd"
  # rendered in a scratch folder (knitr's intermediates), then moved into place
  cp "$rmd" "$work/"
  Rscript -e "rmarkdown::render('$work/$name.Rmd', output_dir = '$work', quiet = TRUE)" \
    || { echo "build_vignettes: $rmd failed" >&2; exit 1; }
  mv "$work/$name.html" "$out/$name.html"
done
if compgen -G "vignettes/*.ipynb" >/dev/null; then
  .venv/bin/python scripts/run_vignettes.py --out-dir "$out"
fi
ls -l "$out"
