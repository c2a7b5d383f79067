#!/usr/bin/env bash
# Test the R package: R CMD build + R CMD check (no ERROR or WARNING allowed; the check runs the
# testthat suite through tests/testthat.R against the repository's .venv), install, then the
# rpy2 bridge tests. Run after scripts/setup.sh. Set PYCLAMS_SKIP_CHECK=1 to skip build and
# check and run the testthat suite on the source tree instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
if [ -x .venv/bin/python ]; then
  export RETICULATE_PYTHON=${RETICULATE_PYTHON:-$PWD/.venv/bin/python}
fi
version=$(sed -n 's/^Version: *//p' DESCRIPTION)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked=0

if [ "${PYCLAMS_SKIP_CHECK:-0}" != 1 ]; then
  echo "== R CMD build"
  # R 4.2's build copies the whole directory (2 GB of .venv) before applying .Rbuildignore:
  # stage only the R package's files
  mkdir -p "$work/src/pyclams/tests"
  cp -r DESCRIPTION NAMESPACE R man vignettes .Rbuildignore "$work/src/pyclams/"
  [ -f LICENSE ] && cp LICENSE "$work/src/pyclams/"
  cp -r tests/testthat "$work/src/pyclams/tests/"
  [ -f tests/testthat.R ] && cp tests/testthat.R "$work/src/pyclams/tests/"
  # builds (runs) the vignettes: a chunk that errors fails the build; PYCLAMS_REQUIRE_VIGNETTES
  # makes a missing Python side an error instead of unevaluated chunks
  (cd "$work" && PYCLAMS_REQUIRE_VIGNETTES=1 R CMD build src/pyclams >build.log 2>&1) \
    || { cat "$work/build.log"; exit 1; }
  grep -E "creating vignettes|building '.*\.Rmd'" "$work/build.log" || true
  # the vignettes ran in the build above; --no-vignettes spares running them twice more
  echo "== R CMD check --no-manual --no-vignettes"
  rout="$work/pyclams.Rcheck/tests/testthat.Rout"
  if ! (cd "$work" && _R_CHECK_FORCE_SUGGESTS_=false \
        R CMD check --no-manual --no-vignettes "pyclams_${version}.tar.gz" >check.log 2>&1); then
    cat "$work/check.log"; [ -f "$rout.fail" ] && tail -n 60 "$rout.fail"; exit 1
  fi
  grep -E "^Status:" "$work/check.log"
  if grep -qE "^Status:.*(ERROR|WARNING)" "$work/check.log"; then
    cat "$work/check.log"; exit 1
  fi
  grep -E "NOTE" "$work/check.log" || true
  echo "== testthat (run by R CMD check)"
  grep -E "^\[ FAIL|^Duration" "$rout" || { echo "no testthat summary in $rout"; exit 1; }
  checked=1
fi

echo "== R CMD INSTALL ."
R CMD INSTALL --no-multiarch . >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }

if [ "$checked" != 1 ]; then
  echo "== testthat"
  Rscript -e 'res <- testthat::test_local(".", reporter = testthat::ProgressReporter$new(show_praise = FALSE), stop_on_failure = TRUE); invisible(res)'
fi

if [ -x .venv/bin/python ]; then
  echo "== pytest tests/python/test_r_bridge.py"
  .venv/bin/python -m pytest tests/python/test_r_bridge.py -q
fi
